"""Reading videos and image folders: frame counts, sizes, frame selection, and bad input."""

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.video import FrameSelection, FrameSource, read_image


def write_counter_video(path: Path, frames: int = 12, fps: int = 12) -> Path:
    """A video whose frame k is uniformly grey at level 20 * k, so decoded frames can be identified."""
    images = [np.full((64, 96, 3), 20 * k, dtype=np.uint8) for k in range(frames)]
    imageio.mimwrite(path, images, fps=fps, codec="libx264", quality=9, macro_block_size=16)
    return path


def test_video_frames_count_size_fps_and_content(tmp_path):
    source = FrameSource(write_counter_video(tmp_path / "counter.mp4"))
    assert (source.frame_count, source.width, source.height) == (12, 96, 64)
    assert source.fps == pytest.approx(12.0)
    for index in (0, 5, 11):
        assert abs(float(source.frame(index).mean()) - 20 * index) < 4


def test_frame_selection_start_step_max_frames_and_fps():
    assert FrameSelection(start=2, step=3).indices(12, 12.0) == [2, 5, 8, 11]
    assert FrameSelection(start=1, max_frames=3).indices(12, 12.0) == [1, 2, 3]
    assert FrameSelection(fps=6).indices(12, 12.0) == [0, 2, 4, 6, 8, 10]
    assert FrameSelection(fps=6).output_fps(12.0) == 6.0
    assert FrameSelection(step=4).output_fps(12.0) == 3.0
    assert FrameSelection(start=20).indices(12, 12.0) == []
    with pytest.raises(MagicPoseError):
        FrameSelection(step=0).indices(12, 12.0)


def test_image_folder_sorted_by_name(tmp_path):
    for name, level in (("b.png", 200), ("a.png", 10), ("notes.txt", None)):
        if level is None:
            (tmp_path / name).write_text("x")
        else:
            Image.fromarray(np.full((8, 10, 3), level, dtype=np.uint8)).save(tmp_path / name)
    source = FrameSource(tmp_path)
    assert source.is_folder and source.frame_count == 2 and (source.width, source.height) == (10, 8)
    assert source.frame(0)[0, 0, 0] == 10 and source.frame(1)[0, 0, 0] == 200


def _bad_input(folder: Path, kind: str) -> Path:
    path = folder / kind
    if kind == "empty.mp4":
        path.write_bytes(b"")
    elif kind == "junk.mp4":
        path.write_bytes(b"\x00junk" * 50)
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing.mp4", "input not found"),
        ("empty.mp4", "video file is empty"),
        ("junk.mp4", "cannot read video"),
        ("folder", "no images"),
    ],
)
def test_bad_inputs_give_clear_errors(tmp_path, kind, message):
    with pytest.raises(MagicPoseError, match=message):
        FrameSource(_bad_input(tmp_path, kind))


def test_corrupt_image_gives_clear_error(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(MagicPoseError, match="cannot read image"):
        read_image(tmp_path / "broken.png")
