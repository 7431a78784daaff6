"""End-to-end `magicpose retarget` on a tiny model: inputs, framing, audio, grid, resume, failures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut
from test_encode import make_video, probe_video
from typer.testing import CliRunner

from magicpose_cli.cli import app
from magicpose_cli.encode import ffmpeg_exe
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.model_store import check_model_folder
from magicpose_cli.pose.keypoints import BODY, FramePose, PersonPose
from magicpose_cli.pose.render import render_pose
from magicpose_cli.retarget import RetargetOptions, retarget

QUICK = ["--width", "64", "--steps", "2", "--batch-size", "2"]


def waving_poses(count: int, width: int = 320, height: int = 180) -> list[FramePose]:
    """A constructed skeleton in a 16:9 frame whose left arm rises frame by frame."""
    poses = []
    for index in range(count):
        body = np.zeros((18, 3), np.float32)
        points = {
            "nose": (160, 40), "neck": (160, 70), "right_shoulder": (130, 70), "left_shoulder": (190, 70),
            "right_elbow": (120, 105), "right_wrist": (115, 140), "left_elbow": (205, 95 - 8 * index),
            "left_wrist": (215, 70 - 15 * index), "right_hip": (145, 140), "left_hip": (175, 140),
            "right_eye": (154, 35), "left_eye": (166, 35),
        }  # fmt: skip
        for name, (x, y) in points.items():
            body[BODY[name]] = (x * width / 320, y * height / 180, 1.0)
        poses.append(FramePose(width, height, [PersonPose(body=body)]))
    return poses


@pytest.fixture(scope="module")
def json_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("json_poses")
    for index, pose in enumerate(waving_poses(5)):
        pose.save(folder / f"{index:05d}.json")
    return folder


def run_cli(*arguments: str):
    return CliRunner().invoke(app, ["retarget", *map(str, arguments)])


def test_json_folder_gives_driving_shaped_frames_at_the_asked_fps(tiny_model_dir, reference_png, json_folder, tmp_path):
    out = tmp_path / "out.mp4"
    arguments = [reference_png, json_folder, "-o", out, "--model", tiny_model_dir, "--no-align", "--fps", 12]
    result = run_cli(*arguments, *QUICK, "--cache-dir", tmp_path / "cache", "--frames-dir", tmp_path / "frames")
    assert result.exit_code == 0, result.output
    info = probe_video(out)
    assert (info["codec"], info["pix_fmt"], info["fps"], len(info["frames"])) == ("h264", "yuv420p", 12.0, 5)  # a folder has no rate: played at --fps
    assert info["size"] == (64, 36)  # the 320x180 driving shape, letterboxed into 64x64 and cut back out
    assert info["audio_codec"] is None
    kept = sorted((tmp_path / "frames").glob("*.png"))
    assert len(kept) == 5 and Image.open(kept[0]).size == (64, 36)
    assert "cache hits" in result.output and "5" in result.output

    again = run_cli(*arguments, *QUICK, "--cache-dir", tmp_path / "cache", "--overwrite")
    assert again.exit_code == 0, again.output
    assert any(line.split()[:3] == ["cache", "hits", "5"] for line in again.output.splitlines())


def test_pose_map_folder_and_grid(tiny_model_dir, reference_png, tmp_path):
    maps = tmp_path / "maps"
    maps.mkdir()
    for index, pose in enumerate(waving_poses(3, 640, 480)):
        Image.fromarray(render_pose(pose)).save(maps / f"{index:05d}.png")
    out = tmp_path / "grid.mp4"
    result = run_cli(reference_png, maps, "-o", out, "--model", tiny_model_dir, "--grid", *QUICK, "--cache-dir", tmp_path / "c")
    assert result.exit_code == 0, result.output
    info = probe_video(out)
    assert len(info["frames"]) == 3
    assert info["size"] == (48 + 64 + 64, 48)  # reference (square) | pose (4:3) | result (4:3), all 48 high
    frame = info["frames"][0].astype(float)
    reference_panel = np.asarray(Image.open(reference_png).resize((48, 48))).astype(float)
    assert np.abs(frame[:, :48] - reference_panel).mean() < 12
    first_map = np.asarray(Image.open(maps / "00000.png").resize((64, 48), Image.LANCZOS)).astype(float)
    assert (first_map.max(axis=-1) > 100).sum() > 30  # the limbs survive the downscale
    assert np.abs(frame[:, 48:112] - first_map).mean() < 8
    assert np.abs(frame[:, 48:112] - first_map).mean() < np.abs(frame[:, 112:] - first_map).mean()


@pytest.fixture(scope="module")
def converted_with_prompt(converted_tiny_dir, original_tiny, tmp_path_factory) -> Path:
    """The converted original checkpoint plus the fixture's text context as its empty-prompt embedding
    (the part the real checkpoint's CLIP text encoder provides)."""
    from magicpose_cli.models import MagicPosePipeline, PromptEmbedding

    pipe = MagicPosePipeline.from_pretrained(converted_tiny_dir)
    text_context = original_tiny["text_context"]
    pipe.register_modules(empty_prompt=PromptEmbedding(*text_context.shape[1:]))
    pipe.empty_prompt.embeds.data.copy_(text_context)
    folder = tmp_path_factory.mktemp("converted_with_prompt") / "model"
    pipe.save_pretrained(folder)
    return folder


def test_the_converted_checkpoint_without_text_is_refused(converted_tiny_dir):
    with pytest.raises(MagicPoseError, match="missing a text conditioning"):
        check_model_folder(converted_tiny_dir)


def test_converted_original_checkpoint_runs(converted_with_prompt, reference_png, json_folder, tmp_path):
    out = tmp_path / "out.mp4"
    result = run_cli(
        reference_png, json_folder, "-o", out, "--model", converted_with_prompt, "--no-align", "--max-frames", 2,
        "--width", 64, "--steps", 2, "--cache-dir", tmp_path / "cache",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(probe_video(out)["frames"]) == 2


def test_real_video_with_audio_is_extracted_aligned_and_keeps_its_sound(tiny_model_dir, reference_png, tmp_path):
    photo = astronaut()[:, 64:448]  # 512x384: a portrait crop
    frames = []
    for shift in range(0, 24, 6):  # the person slides right inside a 4:3 frame
        canvas = np.full((240, 320, 3), 230, np.uint8)
        person = np.asarray(Image.fromarray(photo).resize((180, 240)))
        canvas[:, 40 + shift : 220 + shift] = person
        frames.append(canvas)
    driving = make_video(tmp_path / "dance.mp4", frames, fps=8, audio=True)
    out = tmp_path / "out.mp4"
    summary = retarget(
        reference_png,
        driving,
        out,
        RetargetOptions(model=tiny_model_dir, width=64, steps=2, batch_size=2, cache_root=tmp_path / "cache"),
    )
    info = probe_video(out)
    assert summary.frames == len(info["frames"]) == 4 and summary.generated == 4
    assert info["fps"] == 8.0 and info["audio_codec"] == "aac" and summary.audio_codec == "aac"
    assert info["size"] == (64, 64)  # aligned poses live on the (square) reference's canvas

    silent = retarget(
        reference_png,
        driving,
        tmp_path / "silent.mp4",
        RetargetOptions(model=tiny_model_dir, width=64, steps=2, batch_size=2, cache_root=tmp_path / "cache", audio=False),
    )
    assert probe_video(tmp_path / "silent.mp4")["audio_codec"] is None and silent.cache_hits == 4


def test_an_interrupted_run_resumes_to_the_same_bytes(tiny_model_dir, reference_png, json_folder, tmp_path):
    def options(cache: str, **extra) -> RetargetOptions:
        return RetargetOptions(
            model=tiny_model_dir, width=64, steps=2, batch_size=2, max_frames=3, align=False,
            cache_root=tmp_path / cache, **extra,
        )  # fmt: skip

    whole = retarget(reference_png, json_folder, tmp_path / "whole.mp4", options("whole"))

    def stop_after_first_batch(batch_index: int, num_batches: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        retarget(reference_png, json_folder, tmp_path / "resumed.mp4", options("resumed"), on_batch_saved=stop_after_first_batch)
    assert not (tmp_path / "resumed.mp4").exists()
    partial = sorted((tmp_path / "resumed" / "frames").glob("*/*.png"))
    assert [path.name for path in partial] == ["00000.png", "00001.png"]

    resumed = retarget(reference_png, json_folder, tmp_path / "resumed.mp4", options("resumed"))
    assert (resumed.generated, resumed.cache_hits, whole.generated) == (1, 2, 3)
    whole_frames = sorted((tmp_path / "whole" / "frames").glob("*/*.png"))
    resumed_frames = sorted((tmp_path / "resumed" / "frames").glob("*/*.png"))
    assert len(whole_frames) == len(resumed_frames) == 3
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(whole_frames, resumed_frames))

    forced = retarget(reference_png, json_folder, tmp_path / "forced.mp4", options("resumed", force=True))
    assert (forced.generated, forced.cache_hits) == (3, 0)


@pytest.fixture
def failure_inputs(tmp_path, tiny_model_dir, reference_png, json_folder) -> dict[str, Path]:
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (96, 96), (120, 160, 200)).save(blank)
    empty_video = tmp_path / "empty.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "0",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(empty_video)],
        check=True,
    )  # fmt: skip
    incomplete = tmp_path / "incomplete_model"
    incomplete.mkdir()
    (incomplete / "model_index.json").write_text((tiny_model_dir / "model_index.json").read_text())
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    return {
        "model": tiny_model_dir, "reference": reference_png, "poses": json_folder, "garbage": garbage,
        "blank": blank, "empty_video": empty_video, "incomplete": incomplete, "blocker": blocker,
    }  # fmt: skip


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_reference", "reference image not found"),
        ("unreadable_reference", "cannot read reference image"),
        ("missing_driving", "driving input not found"),
        ("no_person", "no person found"),
        ("empty_video", "cannot read video"),
        ("incomplete_model", "is incomplete: missing"),
        ("unwritable_output", "cannot write the output file"),
        ("existing_output", "already exists; pass --overwrite"),
    ],
)
def test_failures_are_one_clear_line(case, expected, failure_inputs, tmp_path):
    paths = failure_inputs
    reference, driving, model, out = paths["reference"], paths["poses"], paths["model"], tmp_path / "out.mp4"
    align = "--no-align"
    if case == "missing_reference":
        reference = tmp_path / "nope.png"
    elif case == "unreadable_reference":
        reference = paths["garbage"]
    elif case == "missing_driving":
        driving = tmp_path / "nope.mp4"
    elif case == "no_person":
        reference, align = paths["blank"], "--align"
    elif case == "empty_video":
        driving = paths["empty_video"]
    elif case == "incomplete_model":
        model = paths["incomplete"]
    elif case == "unwritable_output":
        out = paths["blocker"] / "out.mp4"
    elif case == "existing_output":
        out.write_bytes(b"keep me")
    result = run_cli(reference, driving, "-o", out, "--model", model, align, *QUICK, "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [lines[-1]] and expected in errors[0], result.output  # progress bars may precede it
    assert "Traceback" not in result.output
    if case == "existing_output":
        assert out.read_bytes() == b"keep me"
    else:
        assert not out.exists()
    assert not list(out.parent.glob(".out.*")) if out.parent.is_dir() else True


def test_debug_shows_the_underlying_exception(failure_inputs, tmp_path):
    result = run_cli(failure_inputs["garbage"], failure_inputs["poses"], "-o", tmp_path / "o.mp4", "--debug")
    assert result.exit_code != 0 and isinstance(result.exception, MagicPoseError)


@pytest.mark.parametrize("scheduler", ["dpm", "unipc", "tcd"])
def test_fast_schedulers_run_and_differ_from_ddim(scheduler, tiny_model_dir, reference_png, json_folder, tmp_path):
    def first_frame(name: str) -> np.ndarray:
        options = RetargetOptions(
            model=tiny_model_dir, width=64, steps=3, max_frames=1, align=False, scheduler=name,
            cache_root=tmp_path / "cache", frames_dir=tmp_path / name,
        )  # fmt: skip
        retarget(reference_png, json_folder, tmp_path / f"{name}.mp4", options)
        return np.asarray(Image.open(tmp_path / name / "00000.png")).astype(float)

    assert np.abs(first_frame(scheduler) - first_frame("ddim")).mean() > 0.5


def test_bfloat16_on_the_cpu_runs_the_whole_path_close_to_float32(converted_with_prompt, reference_png, json_folder, tmp_path):
    """The whole retarget in bfloat16 on the CPU: the code path of float16 on CUDA (a tensor left in
    float32, or on the wrong device, fails here) against float32 on the original-layout fixture.

    bfloat16 keeps 8 significant bits (relative rounding 2^-9); every layer of every step rounds
    and guidance 7 amplifies the difference of the two branches, so frames differ by about one
    8-bit level on average (measured: mean 0.77, max 6). The bounds leave 2.5x headroom; what
    they catch is a VAE or scheduler step that overflows or loses precision wholesale (NaN or
    clipped frames are tens of levels off), while a tensor of the wrong dtype or device fails outright.
    """

    def frames(dtype: str) -> np.ndarray:
        options = RetargetOptions(
            model=converted_with_prompt, width=64, steps=10, batch_size=2, max_frames=3, align=False, device="cpu",
            dtype=dtype, cache_root=tmp_path / "cache", frames_dir=tmp_path / dtype,
        )  # fmt: skip
        summary = retarget(reference_png, json_folder, tmp_path / f"{dtype}.mp4", options)
        assert summary.generated == 3
        return np.stack([np.asarray(Image.open(path)) for path in sorted((tmp_path / dtype).glob("*.png"))]).astype(float)

    full, half = frames("fp32"), frames("bf16")
    difference = np.abs(half - full)
    assert difference.mean() < 2.0 and difference.max() <= 16, (difference.mean(), difference.max())
