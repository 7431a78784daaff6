"""Stills: one driving picture (a photo or an OpenPose JSON file) makes one PNG, on the shipped demo
model; a still driver to an mp4, or several frames to a PNG, is one line from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from skimage.data import astronaut
from test_retarget import run_cli, waving_poses

from magicpose_cli.model_store import DEMO_MODEL_DIR
from magicpose_cli.models.loading import LoadedPipelines
from magicpose_cli.retarget import RetargetOptions, retarget

QUICK = ["--model", DEMO_MODEL_DIR, "--width", "64", "--steps", "1"]


@pytest.fixture(scope="module")
def demo_pipelines() -> LoadedPipelines:
    """The demo model loaded once for this module's runs."""
    return LoadedPipelines()


def still(reference: Path, driving: Path, out: Path, pipelines: LoadedPipelines, **options) -> None:
    settings = RetargetOptions(model=DEMO_MODEL_DIR, width=64, steps=1, cache_root=out.parent / "cache", **options)
    summary = retarget(reference, driving, out, settings, pipelines=pipelines)
    assert summary.frames == 1 and summary.audio_codec is None


@pytest.fixture(scope="module")
def photo_driver(tmp_path_factory) -> Path:
    """The astronaut photo cut to 512x384 at her chest: an upper-body driver."""
    path = tmp_path_factory.mktemp("still") / "driver.png"
    Image.fromarray(astronaut()[:384]).save(path)
    return path


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and lines[-1].startswith("error:") and "Traceback" not in result.output, result.output
    return lines[-1]


def test_a_photo_driver_gives_a_png_and_its_grid(photo_driver, reference_png, demo_pipelines, tmp_path):
    out, grid = tmp_path / "still.png", tmp_path / "grid.png"
    still(reference_png, photo_driver, out, demo_pipelines)
    assert Image.open(out).format == "PNG" and Image.open(out).size == (64, 64)  # aligned: on the (square) reference's canvas
    still(reference_png, photo_driver, grid, demo_pipelines, grid=True)  # the same frame, from the frame cache
    assert Image.open(grid).size == (3 * 64, 64)  # reference | pose | result
    assert Image.open(grid).crop((128, 0, 192, 64)).tobytes() == Image.open(out).tobytes()


def test_one_openpose_json_file_gives_a_png(reference_png, demo_pipelines, tmp_path):
    pose_file = tmp_path / "pose.json"
    waving_poses(1, 320, 180)[0].save(pose_file)
    out = tmp_path / "still.png"
    still(reference_png, pose_file, out, demo_pipelines, align=False)
    assert Image.open(out).size == (64, 36)  # unaligned: the driver's 16:9 canvas


def test_mismatched_outputs_are_one_line(photo_driver, reference_png, tmp_path):
    to_video = run_cli(reference_png, photo_driver, "-o", tmp_path / "out.mp4", *QUICK, "--cache-dir", tmp_path / "cache")
    assert "is one picture, so it makes a still: write it as a PNG (-o" in one_error_line(to_video)
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, pose in enumerate(waving_poses(3)):
        pose.save(frames / f"{index:05d}.json")
    to_picture = run_cli(reference_png, frames, "-o", tmp_path / "out.png", "--no-align", *QUICK, "--cache-dir", tmp_path / "cache")
    assert "gives more than one frame: write a video" in one_error_line(to_picture) and "--max-frames 1" in to_picture.output
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "out.mp4").exists()
