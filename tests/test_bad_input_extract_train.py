"""Bad input to `extract-pose` and `train`, as a user meets it: one line, exit code 1, nothing left behind.

Each case runs the real command on real files (a video of a photo, a blank video, synthetic training
videos, a tiny model folder) and checks that the folder it ran in holds exactly what it held before.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from skimage import data as skimage_data
from typer.testing import CliRunner

from magicpose_cli.cli import app
from magicpose_cli.models import MagicPosePipeline, tiny_components
from magicpose_cli.synthetic import write_dataset


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Inputs good and bad, side by side, as a user's folder might hold them."""
    root = tmp_path_factory.mktemp("workspace")
    person = [np.ascontiguousarray(skimage_data.astronaut()[8 * k : 8 * k + 256, 128:384]) for k in range(3)]
    imageio.mimwrite(root / "dance.mp4", person, fps=10, codec="libx264", macro_block_size=16)
    imageio.mimwrite(root / "blank.mp4", [np.zeros((128, 128, 3), np.uint8)] * 3, fps=10, macro_block_size=16)
    (root / "empty.mp4").write_bytes(b"")
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (root / "notes.txt").write_text("not an image")
    (root / "empty_folder").mkdir()
    (root / "not_a_controlnet").mkdir()
    (root / "not_a_controlnet" / "readme.txt").write_text("weights go here")
    write_dataset(root / "videos", num_videos=2, frames_per_video=3, size=64, progress=False)
    MagicPosePipeline(**tiny_components(seed=0)).save_pretrained(root / "model")
    return root


def snapshot(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def run_in(root: Path, monkeypatch, arguments: list[str]):
    """Run the command in ``root`` (relative paths, as typed) with a cache inside it."""
    monkeypatch.chdir(root)
    monkeypatch.setenv("MAGICPOSE_CACHE", str(root / "cache"))
    (root / "cache").mkdir(exist_ok=True)
    before = snapshot(root)
    result = CliRunner().invoke(app, arguments)
    return result, before, snapshot(root)


EXTRACT_POSE_CASES = [
    (["missing.mp4", "-o", "out"], "input not found: missing.mp4"),
    (["empty.mp4", "-o", "out"], "video file is empty"),
    (["corrupt.mp4", "-o", "out"], "cannot read video corrupt.mp4"),
    (["empty_folder", "-o", "out"], "no images"),
    (["blank.mp4", "-o", "out"], "no person found in any frame"),
    (["dance.mp4", "-o", "notes.txt"], "output folder notes.txt is a file"),
    (["dance.mp4", "-o", "out", "--align-to", "missing.png"], "--align-to image not found: missing.png"),
    (["dance.mp4", "-o", "out", "--align-to", "empty_folder"], "--align-to image not found: empty_folder"),
    (["dance.mp4", "-o", "out", "--align-to", "notes.txt"], "cannot read image notes.txt"),
    (["dance.mp4", "-o", "out", "--detector", "openpose"], "body_pose_model.pth"),
    (["dance.mp4", "-o", "out", "--step", "0"], "--step >= 1"),
    (["dance.mp4", "-o", "out", "--fps", "-3"], "--fps must be positive"),
    (["dance.mp4", "-o", "out", "--start", "99"], "no frames selected"),
    (["dance.mp4", "-o", "out", "--smooth-strength", "-1"], "--smooth-strength must be >= 0"),
]


@pytest.mark.parametrize("arguments, message", EXTRACT_POSE_CASES, ids=[" ".join(case[0]) for case in EXTRACT_POSE_CASES])
def test_extract_pose_bad_input_is_one_line_and_leaves_nothing(workspace, monkeypatch, arguments, message):
    result, before, after = run_in(workspace, monkeypatch, ["extract-pose", *arguments])
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert after == before


def test_an_unknown_detector_is_a_usage_error_naming_the_choices(workspace, monkeypatch):
    result, before, after = run_in(workspace, monkeypatch, ["extract-pose", "dance.mp4", "-o", "out", "--detector", "posenet"])
    assert result.exit_code == 2, result.output
    assert "'posenet' is not one of" in result.output and "dwpose" in result.output
    assert after == before


TRAIN = ["train", "--stage", "pose", "--resolution", "32", "--batch-size", "1", "--max-steps", "1",
         "--sample-every", "0", "--num-workers", "0"]  # fmt: skip
TRAIN_CASES = [
    (["--data", "missing", "--model", "model", "-o", "run"], "training data folder not found: missing"),
    (["--data", "notes.txt", "--model", "model", "-o", "run"], "training data folder not found: notes.txt"),
    (["--data", "empty_folder", "--model", "model", "-o", "run"], "no training data in empty_folder"),
    (["--data", "videos", "--model", "missing", "-o", "run"], "model not found: missing"),
    (["--data", "videos", "--model", "empty_folder", "-o", "run"], "no model_index.json"),
    (["--data", "videos", "--model", "notes.txt", "-o", "run"], "neither a converted model folder nor a checkpoint"),
    (["--data", "videos", "--model", "model", "-o", "notes.txt"], "-o notes.txt is a file"),
    (["--data", "videos", "--model", "model", "-o", "run", "--controlnet-init", "missing.pth"], "--controlnet-init not found"),
    (["--data", "videos", "--model", "model", "-o", "run", "--controlnet-init", "not_a_controlnet"], "no config.json"),
    (["--data", "videos", "--model", "model", "-o", "run", "--resolution", "40"], "--resolution must be a multiple of 16"),
    (["--data", "videos", "--model", "model", "-o", "run", "--max-frame-gap", "0"], "--max-frame-gap must be at least 1"),
    (["--data", "videos", "--model", "model", "-o", "run", "--learning-rate", "0"], "--learning-rate must be positive"),
    (["--data", "videos", "--model", "model", "-o", "run", "--checkpoints-total-limit", "-1"], "must not be negative"),
    (["--data", "videos", "--model", "model", "-o", "run", "--resume"], "--resume: no checkpoint"),
]


@pytest.mark.parametrize("option, value", [("--stage", "dance"), ("--mixed-precision", "fp8"), ("--clip-noise", "loud")])
def test_train_choices_are_usage_errors(workspace, monkeypatch, option, value):
    """A value outside an option's choices is wrong usage (exit 2), refused before anything loads."""
    result, before, after = run_in(workspace, monkeypatch, [*TRAIN, "--data", "videos", "--model", "model", "-o", "run", option, value])
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output and f"'{value}' is not one of" in result.output, result.output
    assert after == before


@pytest.mark.parametrize("arguments, message", TRAIN_CASES, ids=[" ".join(case[0][6:] or case[0][:2]) for case in TRAIN_CASES])
def test_train_bad_input_is_one_line_and_leaves_nothing(workspace, monkeypatch, arguments, message):
    result, before, after = run_in(workspace, monkeypatch, [*TRAIN, *arguments])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert after == before
