"""The first minute with the command line (issue 29): help and input mistakes answer without loading
torch, an error is one line even when a native library has something to say, each error says what
to change, wrong usage exits 2 and Ctrl-C 130, and every command's help reads alike."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data
from typer.testing import CliRunner

from magicpose_cli.cli import app
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.synthetic.datasets import write_dataset
from magicpose_cli.ui.server import check_port

COMMANDS = sorted(command.name for command in app.registered_commands)
ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "300"}
NOT_A_VIDEO = "not a video that ffmpeg can decode; give a video file (mp4, mov, webm, ...) or a folder of images"
HEAVY = ("torch", "diffusers", "mediapipe", "cv2", "gradio", "decord", "onnxruntime", "transformers")

STARTUP = f"""
import sys
from magicpose_cli.cli import app
open("ref.png", "w").close(), open("dance.mp4", "w").close()  # there, but never read: --size is refused first
codes = []
for arguments in [["--help"], ["--version"], *[[name, "--help"] for name in {COMMANDS!r}],
                  ["retarget", "absent.png", "absent.mp4", "-o", "out.mp4"], ["extract-pose", "absent.mp4", "-o", "poses"],
                  ["batch", "absent.toml"], ["train", "--data", "absent", "--stage", "pose", "--model", "m", "-o", "run"],
                  ["retarget", "--size"], ["evaluate"], ["retarget", "ref.png", "dance.mp4", "-o", "out.mp4", "--size", "100"]]:
    try:
        app(arguments, prog_name="magicpose")
    except SystemExit as end:
        codes.append(end.code or 0)
print(codes)
print(sorted(name for name in {HEAVY!r} if name in sys.modules))
"""


def test_help_and_input_mistakes_load_no_heavy_library(tmp_path):
    """`--help` of every command, `--version`, missing inputs and usage errors: none imports torch & co."""
    done = subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, text=True, cwd=tmp_path, env=ENVIRONMENT, timeout=120)
    codes, loaded = done.stdout.strip().splitlines()[-2:]
    assert loaded == "[]", done.stdout
    assert codes == str([0, 0, *[0] * len(COMMANDS), 1, 1, 1, 1, 2, 2, 1]), done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors[:4] == [
        "error: reference image not found: absent.png (check the path)",
        "error: input not found: absent.mp4 (check the path)",
        "error: jobs file not found: absent.toml (check the path)",
        "error: training data folder not found: absent (check the path)",
    ]
    assert errors[-2:] == [
        "error: give GENERATED and GROUND_TRUTH (frame folders or videos), or --dataset DIR -o RUN",
        "error: --size must be a positive multiple of 64, got 100; try --size 128",
    ]


@pytest.fixture(scope="module")
def text_as_video(tmp_path_factory) -> Path:
    """A text file renamed .mp4 beside a photo of a person: what a user's mistaken download looks like."""
    folder = tmp_path_factory.mktemp("text_as_video")
    (folder / "dance.mp4").write_text("this is not a video\n")
    Image.fromarray(skimage_data.astronaut()).resize((128, 128)).save(folder / "ref.png")
    return folder


def test_a_text_file_named_mp4_is_one_line_from_extract_pose(text_as_video):
    """ffmpeg's `moov atom not found` and decord's `video_reader.cc: ERROR` are not shown; -v shows them."""
    command = [sys.executable, "-m", "magicpose_cli", "extract-pose", "dance.mp4", "-o", "poses"]
    quiet = subprocess.run([*command, "-q"], capture_output=True, text=True, cwd=text_as_video, env=ENVIRONMENT, timeout=120)
    assert quiet.returncode == 1
    assert quiet.stderr == f"error: cannot read video dance.mp4: {NOT_A_VIDEO}\n"
    verbose = subprocess.run([*command, "-v"], capture_output=True, text=True, cwd=text_as_video, env=ENVIRONMENT, timeout=120)
    assert verbose.returncode == 1 and "moov atom not found" in verbose.stderr


def test_a_text_file_named_mp4_is_one_line_from_retarget(text_as_video, monkeypatch, capfd):
    """In this process (torch is loaded already): the native messages go nowhere, not to descriptor 2."""
    monkeypatch.chdir(text_as_video)
    monkeypatch.setenv("MAGICPOSE_CACHE", str(text_as_video / "cache"))
    monkeypatch.delenv("MAGICPOSE_MODEL", raising=False)
    result = CliRunner().invoke(app, ["retarget", "ref.png", "dance.mp4", "-o", "out.mp4", "-q"])
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot read video dance.mp4: {NOT_A_VIDEO}\n"
    assert "moov atom" not in capfd.readouterr().err


def test_options_are_checked_before_the_driving_video_is_read(text_as_video, monkeypatch):
    """--size 100 is refused before pose extraction would fail on the broken video, and says what to pass."""
    monkeypatch.chdir(text_as_video)
    monkeypatch.setenv("MAGICPOSE_CACHE", str(text_as_video / "cache"))
    result = CliRunner().invoke(app, ["retarget", "ref.png", "dance.mp4", "-o", "out.mp4", "--size", "100"])
    assert (result.exit_code, result.stderr) == (1, "error: --size must be a positive multiple of 64, got 100; try --size 128\n")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_answers_wrong_usage_with_2(name):
    result = CliRunner().invoke(app, [name, "--no-such-option"])
    assert result.exit_code == 2 and "No such option: --no-such-option" in result.output, result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_follows_one_convention(name):
    """Upper-case arguments without braces, flags without a value placeholder, --debug everywhere."""
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "300", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    for argument in re.findall(r"\[OPTIONS\](.*)", usage)[0].split():
        assert re.fullmatch(r"\[?[A-Z][A-Z_]*\]?", argument), (name, usage)
    assert "<bool>" not in result.output and "{" not in usage, result.output
    assert "--debug" in result.output


@pytest.mark.parametrize(
    ("name", "choices"), [("cache", "frames|poses|models|all"), ("train", "appearance|pose|motion"), ("convert", "auto|fp16|bf16|fp32")]
)
def test_choices_are_shown(name, choices):
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "300", "NO_COLOR": "1"})
    assert choices in result.output


def test_the_main_help_has_no_placeholders():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "300", "NO_COLOR": "1"})
    assert result.exit_code == 0 and "<bool>" not in result.output


def test_cache_says_one_entry(tmp_path):
    frames = tmp_path / "frames" / "one"
    frames.mkdir(parents=True)
    (frames / "00000.png").write_bytes(b"x")
    result = CliRunner().invoke(app, ["cache", "--cache-dir", str(tmp_path), "--clear", "frames"])
    assert result.exit_code == 0 and "deleted 1 entry (" in result.output, result.output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_address_this_machine_lacks_blames_the_host():
    with pytest.raises(MagicPoseError, match=r"10\.255\.255\.1 is not an address of this machine: pass --host 127\.0\.0\.1"):
        check_port("10.255.255.1", free_port())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(MagicPoseError, match="another program listens there: pass another --port"):
            check_port("127.0.0.1", taken.getsockname()[1])


def test_ctrl_c_stops_the_app_with_130(tmp_path):
    """A real `magicpose ui`, a real SIGINT once it serves: exit code 130, as every command's Ctrl-C."""
    pytest.importorskip("gradio")
    process = subprocess.Popen(
        [sys.executable, "-m", "magicpose_cli", "ui", "-q", "--port", str(free_port()), "--output-dir", str(tmp_path / "out"),
         "--cache-dir", str(tmp_path / "cache")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENVIRONMENT, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    ready = process.stdout.readline()  # its URL on stdout (-q) once it serves
    assert ready.startswith("http://"), process.communicate(timeout=60)
    time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 130, errors
    assert "Traceback" not in errors


def test_the_settings_line_names_the_canvas_the_poses_are_on():
    """384x384 driving poses fitted to a 512x512 photo live on the photo's canvas: the line says so."""
    from test_retarget import waving_poses

    from magicpose_cli.driving import DrivingPoses
    from magicpose_cli.models.settings import RecommendedSettings
    from magicpose_cli.retarget import RetargetOptions
    from magicpose_cli.retarget.options import generation_canvas

    photo = np.asarray(Image.fromarray(skimage_data.astronaut()))  # 512x512
    driving = DrivingPoses(30.0, 384, 384, keypoints=waving_poses(2, 384, 384))
    _, _, as_driven = generation_canvas(RetargetOptions(), RecommendedSettings(), driving, photo.shape)
    assert as_driven == "short side 512: default; shaped like the 384x384 poses"
    _, _, aligned = generation_canvas(RetargetOptions(), RecommendedSettings(), driving.aligned_to(photo), photo.shape)
    assert aligned == "short side 512: default; shaped like the 512x512 reference (the poses fitted to it)"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["convert", "x.th", "-o", "out", "--dtype", "int8"], "'int8' is not one of 'auto', 'fp16', 'bf16', 'fp32'"),
     (["cache", "--clear", "frame"], "'frame' is not one of 'frames', 'poses', 'models', 'all'")],
)  # fmt: skip
def test_a_value_outside_the_choices_is_wrong_usage(arguments, message):
    result = CliRunner().invoke(app, arguments, env={"COLUMNS": "300"})
    assert result.exit_code == 2 and f"Invalid value for '{arguments[-2]}'" in result.output and message in result.output, result.output


CTRL_C_EVERY_COMMAND = """
import os, signal, sys
from magicpose_cli.cli import app

signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGINT))  # a real SIGINT, mid-work
signal.setitimer(signal.ITIMER_REAL, 0.5)
app([*sys.argv[1:], "-q"], prog_name="magicpose")
"""


def test_ctrl_c_in_every_working_command_exits_130_with_one_line(tmp_path):
    """A real SIGINT half a second into each command that works for long (retarget and ui have their own
    tests above and in test_bad_input_retarget), each in its own process as a user runs it: exit code 130
    and the one `interrupted` line, no traceback, also when the SIGINT lands while torch is loading."""
    photo = skimage_data.astronaut()
    frames = [np.asarray(Image.fromarray(photo).rotate(angle).resize((256, 256))) for angle in np.linspace(-10, 10, 48)]
    imageio.mimwrite(tmp_path / "dance.mp4", frames, fps=12)
    videos = write_dataset(tmp_path / "videos", num_videos=2, frames_per_video=4, size=64, progress=False)
    reference = (videos[0] / "frames" / "00000.png").relative_to(tmp_path)
    (tmp_path / "jobs.toml").write_text(f'[[job]]\nreference = "{reference}"\ndriving = "dance.mp4"\noutput = "batch.mp4"\n')
    demo_model = str(ROOT / "magicpose_cli" / "demo_model")
    for arguments in [["extract-pose", "dance.mp4", "-o", "poses"], ["demo", "-o", "demo.mp4"], ["evaluate", "dance.mp4", "dance.mp4"],
                      ["batch", "jobs.toml"], ["train", "--stage", "pose", "--data", "videos", "--model", demo_model, "-o", "run"]]:
        result = subprocess.run(
            [sys.executable, "-c", CTRL_C_EVERY_COMMAND, *arguments], capture_output=True, text=True, cwd=tmp_path, env=ENVIRONMENT,
            timeout=300,
        )  # fmt: skip
        assert result.returncode == 130, (arguments[0], result.stderr[-3000:])
        assert result.stderr.startswith("error: interrupted (Ctrl-C)"), (arguments[0], result.stderr[-3000:])
        assert "Traceback" not in result.stderr
