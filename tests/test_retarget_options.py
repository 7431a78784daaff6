"""`magicpose retarget`'s options as a user meets them: the default training-scale canvas, the model's
recommended settings, --fps resampling, refused no-op options, the cache key, --frames-dir, --pose-size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut
from test_encode import make_video, probe_video
from test_retarget import run_cli, waving_poses

import magicpose_cli
from magicpose_cli.model_store import RecommendedSettings
from magicpose_cli.pose.render import render_pose
from magicpose_cli.retarget import FRAMES_DIR_RECORD, RetargetOptions, retarget


@pytest.fixture(scope="module")
def portrait_json(tmp_path_factory) -> Path:
    """Three frames of a skeleton on a 9:16 canvas (180x320), as extract-pose writes them."""
    folder = tmp_path_factory.mktemp("portrait_poses")
    for index, pose in enumerate(waving_poses(3, 180, 320)):
        pose.save(folder / f"{index:05d}.json")
    return folder


@pytest.fixture(scope="module")
def advising_model(recommending_tiny_model) -> Path:
    return recommending_tiny_model(RecommendedSettings(width=64, height=64, steps=1, guidance=2.0, scheduler="dpm"))


def settings_line(output: str) -> str:
    return " ".join(line.strip() for line in output.splitlines() if line.strip()).split("settings: ", 1)[1]


def test_the_model_recommends_what_the_user_left_out_and_the_canvas_follows_the_poses(
    advising_model, reference_png, portrait_json, tmp_path
):
    frames_dir = tmp_path / "frames"
    arguments = [reference_png, portrait_json, "-o", tmp_path / "out.mp4", "--model", advising_model, "--no-align"]
    result = run_cli(*arguments, "--max-frames", 1, "--cache-dir", tmp_path / "cache", "--frames-dir", frames_dir)
    assert result.exit_code == 0, result.output
    said = settings_line(result.output)
    # 9:16 poses at the model's 64 short side: 64 x 113.8, the long side rounded to 128; nothing letterboxed
    assert "canvas 64x128 (short side 64: model's recommendation" in said, said
    assert "steps 1 (model's recommendation)" in said and "guidance 2.0 (model's recommendation)" in said
    assert "scheduler dpm (model's recommendation)" in said
    cached = next((tmp_path / "cache" / "frames").glob("*/00000.png"))
    assert Image.open(cached).size == (64, 128)
    assert probe_video(tmp_path / "out.mp4")["size"] == (64, 114)  # restored to 9:16

    given = run_cli(*arguments, "--max-frames", 1, "--steps", 2, "--size", 128, "--scheduler", "ddim",
                    "--cache-dir", tmp_path / "cache", "--overwrite")  # fmt: skip
    assert given.exit_code == 0, given.output
    said = settings_line(given.output)
    assert "canvas 128x256 (short side 128: given" in said and "steps 2 (given)" in said
    assert "scheduler ddim (given)" in said and "guidance 2.0 (model's recommendation)" in said


def test_without_a_model_the_demo_model_says_what_it_is_and_runs_at_its_own_settings(
    reference_png, portrait_json, tmp_path, monkeypatch
):
    monkeypatch.delenv("MAGICPOSE_MODEL", raising=False)
    monkeypatch.setenv("MAGICPOSE_CONFIG", str(tmp_path / "absent.toml"))
    out = tmp_path / "out.mp4"
    result = run_cli(reference_png, portrait_json, "-o", out, "--no-align", "--max-frames", 1, "--steps", 1,
                     "--cache-dir", tmp_path / "cache")  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "only knows 64x64 synthetic cartoon people" in text and "--model Boese0601/MagicDance" in text
    said = settings_line(result.output)
    assert "canvas 64x128 (short side 64: model's recommendation" in said  # not 512x896 on a 64 px model
    assert "steps 1 (given)" in said and "guidance 7.0 (model's recommendation)" in said
    assert "scheduler dpm (model's recommendation)" in said


def test_fps_resamples_the_motion_and_keeps_duration_and_audio(tiny_model_dir, reference_png, tmp_path):
    photo = np.asarray(Image.fromarray(astronaut()[:, 64:448]).resize((90, 120)))
    frames = []
    for shift in range(12):  # one second at 12 fps: the person slides right one pixel a frame
        canvas = np.full((120, 160, 3), 230, np.uint8)
        canvas[:, 20 + shift : 110 + shift] = photo
        frames.append(canvas)
    driving = make_video(tmp_path / "dance.mp4", frames, fps=12, audio=True)
    out = tmp_path / "out.mp4"
    result = run_cli(reference_png, driving, "-o", out, "--model", tiny_model_dir, "--no-align", "--fps", 6,
                     "--width", 64, "--steps", 1, "--no-face", "--no-hands", "--cache-dir", tmp_path / "cache")  # fmt: skip
    assert result.exit_code == 0, result.output
    info = probe_video(out)
    # 6 frames played at 6 fps last the source's second (relabelling 12 frames would have made 2 s)
    assert (len(info["frames"]), info["fps"], info["audio_codec"]) == (6, 6.0, "aac")
    assert abs(info["duration"] - 1.0) < 0.15, info["duration"]  # the audio is cut to the video: in sync


@pytest.fixture(scope="module")
def pose_map_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("maps")
    for index, pose in enumerate(waving_poses(2, 160, 120)):
        Image.fromarray(render_pose(pose)).save(folder / f"{index:05d}.png")
    return folder


@pytest.mark.parametrize(
    "extra, driving, expected",
    [
        (["--guidance-mode", "text"], "json", "--guidance would change nothing"),
        (["--prompt", "a red dress", "--negative-prompt", "blurry"], "json", "--negative-prompt is the unconditional branch of --guidance-mode text"),
        (["--lora", "no_such_lora.safetensors:0.5"], "json", "lora not found: no_such_lora.safetensors"),
        (["--cpu-offload", "--device", "cpu"], "json", "--cpu-offload keeps models on the CPU"),
        (["--no-face"], "maps", "--no-face cannot apply to a folder of rendered pose maps"),
        (["--align", "--no-hands"], "maps", "--no-hands and --align cannot apply"),
        (["--pose-size", "320x180"], "maps", "--pose-size is the canvas of OpenPose JSON"),
        (["--pose-size", "wide"], "json", "--pose-size must be WIDTHxHEIGHT"),
        (["--size", "128", "--width", "128"], "json", "give either --size"),
        (["--size", "100"], "json", "--size must be a positive multiple of 64"),
    ],
)
def test_options_that_would_do_nothing_are_refused_in_one_line(
    extra, driving, expected, tiny_model_dir, reference_png, portrait_json, pose_map_folder, tmp_path
):
    out = tmp_path / "out.mp4"
    source = portrait_json if driving == "json" else pose_map_folder
    result = run_cli(reference_png, source, "-o", out, "--model", tiny_model_dir, *extra, "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and expected in " ".join(result.output.split()), result.output
    assert not out.exists() and not (tmp_path / "cache" / "frames").exists()


def test_the_cache_never_serves_frames_of_another_version_or_vae_mode(tiny_model_dir, reference_png, portrait_json, tmp_path, monkeypatch):
    def run(**extra) -> int:
        options = RetargetOptions(model=tiny_model_dir, width=64, steps=1, max_frames=1, align=False,
                                  cache_root=tmp_path / "cache", overwrite=True, **extra)  # fmt: skip
        return retarget(reference_png, portrait_json, tmp_path / "out.mp4", options).generated

    assert run() == 1
    assert run() == 0  # the same run is served from the cache
    assert run(vae_tiling=True) == 1  # tiled decoding changes pixels: not the untiled frames
    monkeypatch.setattr(magicpose_cli, "__version__", "999.0")
    assert run() == 1  # another release may compute other pixels
    assert len(list((tmp_path / "cache" / "frames").iterdir())) == 3


def test_frames_dir_keeps_only_this_runs_frames_and_never_touches_the_users(
    tiny_model_dir, reference_png, portrait_json, tmp_path
):
    frames_dir = tmp_path / "frames"

    def run(max_frames: int) -> None:
        options = RetargetOptions(model=tiny_model_dir, width=64, steps=1, batch_size=3, max_frames=max_frames, align=False,
                                  cache_root=tmp_path / "cache", frames_dir=frames_dir, overwrite=True)  # fmt: skip
        retarget(reference_png, portrait_json, tmp_path / "out.mp4", options)

    run(3)
    (frames_dir / "notes.txt").write_text("mine")
    Image.new("RGB", (8, 8)).save(frames_dir / "cover.png")
    run(2)  # a shorter second run: 00002.png of the first would be a stale frame
    kept = {path.name for path in frames_dir.iterdir()}
    assert kept == {"00000.png", "00001.png", "cover.png", "notes.txt", FRAMES_DIR_RECORD}
    assert json.loads((frames_dir / FRAMES_DIR_RECORD).read_text())["frames"] == ["00000.png", "00001.png"]

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    Image.new("RGB", (8, 8)).save(theirs / "00007.png")
    result = run_cli(reference_png, portrait_json, "-o", tmp_path / "x.mp4", "--model", tiny_model_dir, "--frames-dir", theirs)
    assert result.exit_code == 1 and "magicpose did not write" in " ".join(result.output.split())
    assert (theirs / "00007.png").is_file() and not (tmp_path / "x.mp4").exists()


def test_cmu_openpose_json_takes_the_pose_size_and_says_so(tiny_model_dir, reference_png, tmp_path):
    folder = tmp_path / "cmu"
    folder.mkdir()
    for index, pose in enumerate(waving_poses(2, 320, 180)):
        frame = pose.to_openpose()
        del frame["canvas_width"], frame["canvas_height"]  # CMU OpenPose writes no canvas
        (folder / f"dance_{index:012d}_keypoints.json").write_text(json.dumps(frame))
    out = tmp_path / "out.mp4"
    result = run_cli(reference_png, folder, "-o", out, "--model", tiny_model_dir, "--no-align", "--pose-size", "320x180",
                     "--width", 64, "--steps", 1, "--cache-dir", tmp_path / "cache")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "canvas 320x180 from --pose-size" in result.output
    assert probe_video(out)["size"] == (64, 36)  # the 16:9 canvas given, letterboxed into 64x64 and cut back out
