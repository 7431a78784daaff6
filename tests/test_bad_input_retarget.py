"""Bad and unusual input to `retarget`, as a user meets it.

Failures: exit code 1, exactly one `error:` line, no traceback, and the folder the command ran in
holds exactly what it held before (no OUT, no temporary file beside it, no folder made for it).
Unusual but valid input (image modes, EXIF rotation, huge and odd-sized photos, a missing output
folder) runs to a playable mp4. Ctrl-C halfway stops with one line and resumes on the next run.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skimage_data
from test_encode import probe_video
from test_retarget import waving_poses
from typer.testing import CliRunner

from magicpose_cli.cli import app
from magicpose_cli.encode import ffmpeg_exe
from magicpose_cli.models import MagicPosePipeline, tiny_components
from magicpose_cli.pose.render import render_pose

QUICK = ["--width", "64", "--steps", "1", "--batch-size", "2", "--no-audio"]
MARKER = "code_ran.txt"


class CodeExecutingPickle:
    """Unpickling this creates MARKER in the current folder: what a malicious checkpoint would do."""

    def __reduce__(self):
        return (Path.touch, (Path(MARKER),))


def astronaut(size: tuple[int, int] | None = None) -> Image.Image:
    photo = Image.fromarray(skimage_data.astronaut())
    return photo.resize(size, Image.LANCZOS) if size else photo


def write_references(root: Path) -> None:
    """The same photo of a person in the forms cameras, editors and phones write it, and broken copies."""
    photo = astronaut((160, 160))
    photo.save(root / "ref.png")
    photo.save(root / "ref.jpg", quality=90)
    photo.convert("RGBA").save(root / "rgba.png")
    photo.convert("LA").save(root / "la.png")
    photo.convert("P", palette=Image.ADAPTIVE).save(root / "palette.png")
    grey16 = (np.asarray(photo.convert("L"), np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(root / "grey16.png")
    assert Image.open(root / "grey16.png").mode == "I;16"
    photo.convert("CMYK").save(root / "cmyk.jpg")
    portrait = astronaut((120, 160))  # upright: 120 wide, 160 high; stored turned on its side, as phones do
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to show
    portrait.transpose(Image.Transpose.ROTATE_90).save(root / "phone.jpg", exif=exif, quality=90)
    astronaut((6000, 4000)).save(root / "huge.jpg", quality=85)
    astronaut((333, 517)).save(root / "odd.png")
    Image.new("RGB", (128, 128), (120, 160, 200)).save(root / "nobody.png")
    (root / "empty.png").write_bytes(b"")
    (root / "corrupt.png").write_bytes(np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    jpeg = (root / "ref.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "photos").mkdir()


def write_driving(root: Path) -> None:
    """Driving inputs good and bad: OpenPose JSON, pose maps, videos, folders of other things."""
    (root / "poses").mkdir()
    for index, pose in enumerate(waving_poses(2)):
        pose.save(root / "poses" / f"{index:05d}.json")
    (root / "mixed_maps").mkdir()
    for index, (width, height) in enumerate([(320, 180), (256, 256)]):
        Image.fromarray(render_pose(waving_poses(1, width, height)[0])).save(root / "mixed_maps" / f"{index:05d}.png")
    (root / "empty_folder").mkdir()
    (root / "documents").mkdir()
    (root / "documents" / "notes.txt").write_text("not a pose")
    (root / "documents" / "table.csv").write_text("a,b\n1,2\n")
    imageio.mimwrite(root / "blank.mp4", [np.zeros((64, 64, 3), np.uint8)] * 3, fps=10, macro_block_size=16)
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "0",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(root / "zero_frames.mp4")],
        check=True,
    )  # fmt: skip
    (root / "empty.mp4").write_bytes(b"")
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def write_models(root: Path) -> None:
    MagicPosePipeline(**tiny_components(seed=0)).save_pretrained(root / "model")
    shutil.copytree(root / "model", root / "incomplete_model")
    shutil.rmtree(root / "incomplete_model" / "controlnet")
    torch.save({"state_dict": CodeExecutingPickle()}, root / "evil.ckpt")
    with open(root / "evil.pth", "wb") as handle:
        pickle.dump(CodeExecutingPickle(), handle)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A user's folder: photos, driving inputs, models and things that are none of these."""
    root = tmp_path_factory.mktemp("workspace")
    write_references(root)
    write_driving(root)
    write_models(root)
    (root / "a_file").write_text("")
    (root / "existing.mp4").write_bytes(b"keep me")
    (root / "out_folder").mkdir()
    return root


def snapshot(root: Path) -> dict[str, int]:
    """Every path under ``root`` with its size (folders: -1), to see that nothing was added or changed."""
    return {str(path.relative_to(root)): path.stat().st_size if path.is_file() else -1 for path in root.rglob("*")}


def run_in(root: Path, monkeypatch, tmp_path: Path, arguments: list[str]):
    """Run `retarget` in ``root`` with relative paths, as typed; caches go to a folder outside it."""
    monkeypatch.chdir(root)
    monkeypatch.setenv("MAGICPOSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MAGICPOSE_MODEL", raising=False)
    before = snapshot(root)
    result = CliRunner().invoke(app, ["retarget", *arguments])
    return result, before, snapshot(root)


def assert_one_error_line(output: str, message: str) -> None:
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], output
    assert "Traceback" not in output and "Warning" not in output, output


GOOD = ["ref.png", "poses", "-o", "out.mp4", "--model", "model"]
FAILURE_CASES = {
    # reference
    "missing reference": (["missing.png", *GOOD[1:]], "reference image not found: missing.png"),
    "empty reference": (["empty.png", *GOOD[1:]], "cannot read reference image empty.png"),
    "corrupt reference": (["corrupt.png", *GOOD[1:]], "cannot read reference image corrupt.png"),
    "truncated reference": (["truncated.jpg", *GOOD[1:]], "cannot read reference image truncated.jpg"),
    "reference is a folder": (["photos", *GOOD[1:]], "reference image not found: photos is a folder, not an image file"),
    "no person in the reference": (["nobody.png", *GOOD[1:]], "no person found"),
    # driving
    "missing driving": (["ref.png", "missing.mp4", *GOOD[2:]], "driving input not found: missing.mp4"),
    "empty driving folder": (["ref.png", "empty_folder", *GOOD[2:]], "no images or OpenPose JSON files in folder empty_folder"),
    "folder of unrelated files": (["ref.png", "documents", *GOOD[2:]], "no images or OpenPose JSON files in folder documents"),
    "zero-frame video": (["ref.png", "zero_frames.mp4", *GOOD[2:]], "cannot read video zero_frames.mp4"),
    "empty video": (["ref.png", "empty.mp4", *GOOD[2:]], "video file is empty"),
    "corrupt video": (["ref.png", "corrupt.mp4", *GOOD[2:]], "cannot read video corrupt.mp4"),
    "video with no person": (["ref.png", "blank.mp4", *GOOD[2:]], "no person found in any frame"),
    "pose maps of mixed sizes": (["ref.png", "mixed_maps", *GOOD[2:]], "the pose maps in mixed_maps differ in size"),
    # output
    "existing output": (["ref.png", "poses", "-o", "existing.mp4", "--model", "model"], "existing.mp4 already exists; pass --overwrite"),
    "output is a folder": (["ref.png", "poses", "-o", "out_folder", "--model", "model"], "output path out_folder is a folder"),
    "output under a file": (["ref.png", "poses", "-o", "a_file/out.mp4", "--model", "model"], "a_file is a file, not a folder"),
    "missing output folder, bad reference": (["missing.png", "poses", "-o", "new/deeper/out.mp4", "--model", "model"], "reference image not found"),
    # model
    "missing model": ([*GOOD[:4], "--model", "no_such_model"], "model not found: no_such_model"),
    "incomplete model folder": ([*GOOD[:4], "--model", "incomplete_model"], "incomplete_model is incomplete: missing controlnet/"),
    "code-executing torch checkpoint": ([*GOOD[:4], "--model", "evil.ckpt"], "refusing to load evil.ckpt: loading it would run code"),
    "code-executing pickle": ([*GOOD[:4], "--model", "evil.pth"], "evil.pth is not a readable checkpoint"),
    "model is a text file": ([*GOOD[:4], "--model", "a_file"], "neither a converted model folder nor a checkpoint"),
    # options
    "width not a multiple of 64": ([*GOOD, "--width", "100"], "--width must be a positive multiple of 64, got 100"),
    "width zero": ([*GOOD, "--width", "0"], "--width must be a positive multiple of 64, got 0"),
    "zero steps": ([*GOOD, "--steps", "0"], "--steps must be at least 1"),
    "zero batch size": ([*GOOD, "--batch-size", "0"], "--batch-size must be at least 1"),
    "negative fps": ([*GOOD, "--fps", "-5"], "--fps must be positive"),
    "zero max frames": ([*GOOD, "--max-frames", "0"], "--max-frames must be at least 1"),
    "cache folder is a file": ([*GOOD, "--cache-dir", "a_file"], "cache folder a_file is a file, not a folder"),
}


@pytest.mark.parametrize("case", FAILURE_CASES)
def test_bad_input_is_one_line_and_leaves_nothing(case, workspace, monkeypatch, tmp_path):
    arguments, message = FAILURE_CASES[case]
    result, before, after = run_in(workspace, monkeypatch, tmp_path, [*QUICK, *arguments])  # the case's options win
    assert result.exit_code == 1, result.output
    assert_one_error_line(result.output, message)
    assert after == before  # no OUT, no temporary file, no folder made for OUT, nothing overwritten
    assert not (workspace / MARKER).exists()  # a checkpoint never runs code


SUCCESS_CASES = {
    "RGBA": ("rgba.png", (160, 160)),
    "LA": ("la.png", (160, 160)),
    "palette": ("palette.png", (160, 160)),
    "16-bit grey": ("grey16.png", (160, 160)),
    "CMYK JPEG": ("cmyk.jpg", (160, 160)),
    "EXIF-rotated phone photo": ("phone.jpg", (120, 160)),
    "odd size 333x517": ("odd.png", (333, 517)),
}


def output_size(reference_size: tuple[int, int], canvas: int = 64) -> tuple[int, int]:
    """The mp4's size when aligned: the reference's shape fitted into the canvas, in even pixels."""
    width, height = reference_size
    scale = canvas / max(width, height)
    return tuple(max(2, 2 * round(side * scale / 2)) for side in (width, height))


@pytest.mark.parametrize("case", SUCCESS_CASES)
def test_unusual_references_work(case, workspace, monkeypatch, tmp_path):
    reference, size = SUCCESS_CASES[case]
    out = tmp_path / "out.mp4"
    result, before, after = run_in(workspace, monkeypatch, tmp_path, [reference, "poses", "-o", str(out), "--model", "model", *QUICK])
    assert result.exit_code == 0, result.output
    assert after == before
    info = probe_video(out)
    assert len(info["frames"]) == 2 and info["size"] == output_size(size)  # aligned: the upright reference's shape


def test_reference_without_a_person_works_without_alignment(workspace, monkeypatch, tmp_path):
    out = tmp_path / "out.mp4"
    result, _, _ = run_in(workspace, monkeypatch, tmp_path, ["nobody.png", "poses", "-o", str(out), "--model", "model", "--no-align", *QUICK])
    assert result.exit_code == 0, result.output
    assert probe_video(out)["size"] == (64, 36)  # not aligned: the 320x180 driving shape


def test_a_huge_reference_is_resized_not_held_at_full_size(workspace, monkeypatch, tmp_path):
    """6000x4000 (72 MB as RGB) is resized early: the numpy arrays alive at once (what tracemalloc sees; PIL's own
    buffers it does not) stay under three full-size RGB copies. Measured here: 145 MB, the read plus one copy."""
    out = tmp_path / "out.mp4"
    tracemalloc.start()
    try:
        result, _, _ = run_in(workspace, monkeypatch, tmp_path, ["huge.jpg", "poses", "-o", str(out), "--model", "model", *QUICK])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert probe_video(out)["size"] == output_size((6000, 4000))
    assert peak < 3 * 6000 * 4000 * 3, f"peak {peak / 1e6:.0f} MB"


def test_a_missing_output_folder_is_made(workspace, monkeypatch, tmp_path):
    out = tmp_path / "new" / "deeper" / "out.mp4"
    result, _, _ = run_in(workspace, monkeypatch, tmp_path, [*GOOD[:2], "-o", str(out), "--model", "model", "--no-align", *QUICK])
    assert result.exit_code == 0, result.output
    assert len(probe_video(out)["frames"]) == 2


def test_overwrite_replaces_an_existing_output(workspace, monkeypatch, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    result, _, _ = run_in(workspace, monkeypatch, tmp_path, [*GOOD[:2], "-o", str(out), "--model", "model", "--no-align", "--overwrite", *QUICK])
    assert result.exit_code == 0, result.output
    assert len(probe_video(out)["frames"]) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cache", "out.mp4"]


def test_ctrl_c_halfway_stops_cleanly_and_the_rerun_resumes(tmp_path):
    """A real process, a real SIGINT to its process group (what Ctrl-C sends) once the first batch is cached."""
    poses, run = tmp_path / "poses", tmp_path / "run"
    poses.mkdir(), run.mkdir()
    cycle = waving_poses(5)
    for index in range(40):
        cycle[index % 5].save(poses / f"{index:05d}.json")
    MagicPosePipeline(**tiny_components(seed=0)).save_pretrained(tmp_path / "model")
    astronaut((96, 96)).save(tmp_path / "ref.png")
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "magicpose_cli", "retarget", str(tmp_path / "ref.png"), str(poses), "-o", str(run / "out.mp4"),
               "--model", str(tmp_path / "model"), "--no-align", "--width", "64", "--steps", "4", "--batch-size", "2",
               "--cache-dir", str(cache)]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    # A terminal's Ctrl-C reaches a process whose SIGINT is at its default. A shell's background job (CI
    # started with `&`) ignores SIGINT, and the child would inherit that: restore the default.
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(cache.glob("frames/*/00001.png")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=240)  # a deadline, not a speed check
    assert process.returncode == 130, output
    assert_one_error_line(output, "interrupted (Ctrl-C); the finished frames are kept: the same command resumes")
    assert list(run.iterdir()) == []  # no OUT, no temporary file beside it
    cached = len(list(cache.glob("frames/*/*.png")))
    assert 2 <= cached < 40

    rerun = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    hits = next(line.split()[2] for line in rerun.stderr.splitlines() if line.split()[:2] == ["cache", "hits"])
    assert int(hits) == cached
    assert len(probe_video(run / "out.mp4")["frames"]) == 40
