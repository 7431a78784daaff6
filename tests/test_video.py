"""Reading videos and image folders: both video readers, rotation, frame selection, and bad input."""

import json
import subprocess
from pathlib import Path

import imageio.v2 as imageio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from skimage import data

from magicpose_cli.encode import ffmpeg_exe
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.video import FrameSelection, FrameSource, display_rotation, read_image, video_reader_name

READERS = ("decord", "pyav")
# H.264 at quality 9 changes a pixel by a few levels; both readers decode the same stream.
CODEC_TOLERANCE = 3.0


def write_counter_video(path: Path, frames: int = 12, fps: int = 12) -> Path:
    """A video whose frame k is uniformly grey at level 20 * k, so decoded frames can be identified."""
    images = [np.full((64, 96, 3), 20 * k, dtype=np.uint8) for k in range(frames)]
    imageio.mimwrite(path, images, fps=fps, codec="libx264", quality=9, macro_block_size=16)
    return path


def write_photo_video(path: Path, frames: int = 30, fps: float = 25) -> Path:
    """A moving crop of the astronaut photo, with a keyframe every 8 frames and B-frames, so that
    random access has to seek and decode order differs from display order."""
    photo = data.astronaut()
    images = [photo[40 + 3 * k : 200 + 3 * k, 60 + 2 * k : 300 + 2 * k] for k in range(frames)]
    imageio.mimwrite(
        path, images, fps=fps, codec="libx264", quality=9, macro_block_size=16, ffmpeg_params=["-g", "8", "-bf", "2"]
    )
    return path


def rotate_metadata(source: Path, target: Path, counter_clockwise: int) -> Path:
    """``source`` with display-rotation metadata added, as phones store portrait video."""
    command = [ffmpeg_exe(), "-y", "-hide_banner", "-display_rotation", str(counter_clockwise), "-i", str(source)]
    subprocess.run(command + ["-c", "copy", str(target)], check=True, capture_output=True)
    return target


def ffmpeg_decode(path: Path) -> list[np.ndarray]:
    """Every frame as ffmpeg shows it (rotation applied), the reference for what a player displays."""
    frames = imageio_ffmpeg.read_frames(str(path))
    width, height = next(frames)["size"]
    return [np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in frames]


def installed(reader: str) -> bool:
    try:
        return video_reader_name(reader) == reader
    except MagicPoseError:
        return False


@pytest.mark.parametrize("reader", READERS)
def test_both_readers_agree_with_ffmpeg_in_any_access_order(tmp_path, reader):
    if not installed(reader):
        pytest.skip(f"{reader} is not installed on this platform")
    video = write_photo_video(tmp_path / "photo.mp4")
    expected = ffmpeg_decode(video)
    source = FrameSource(video, reader=reader)
    assert source.reader == reader
    assert (source.frame_count, source.fps, source.width, source.height) == (30, pytest.approx(25.0), 240, 160)
    order = [0, 1, 2, 29, 3, 17, 17, 16, 8, 9, 10, 0, 28, 5]  # forward, back, repeated, across keyframes
    for index in order:
        error = np.abs(source.frame(index).astype(float) - expected[index]).mean()
        assert error < CODEC_TOLERANCE, (index, error)
    # Neighbouring frames differ by far more than the tolerance: a frame off by one would be caught.
    assert np.abs(expected[10].astype(float) - expected[11]).mean() > 4 * CODEC_TOLERANCE


def test_decord_and_pyav_give_the_same_frames(tmp_path):
    if not (installed("decord") and installed("pyav")):
        pytest.skip("needs both readers (decord installs on Linux x86_64 and Windows)")
    video = write_photo_video(tmp_path / "photo.mp4", frames=20, fps=29.97)
    decord_source, pyav_source = FrameSource(video, reader="decord"), FrameSource(video, reader="pyav")
    for attribute in ("frame_count", "fps", "width", "height"):
        assert getattr(decord_source, attribute) == pytest.approx(getattr(pyav_source, attribute)), attribute
    for index in (19, 0, 7, 8, 12):
        difference = np.abs(decord_source.frame(index).astype(float) - pyav_source.frame(index))
        assert difference.mean() < 1.0, index


@pytest.mark.parametrize("counter_clockwise, size", [(90, (160, 240)), (180, (240, 160)), (270, (160, 240))])
def test_rotated_phone_video_is_read_upright(tmp_path, counter_clockwise, size):
    video = rotate_metadata(write_photo_video(tmp_path / "photo.mp4", frames=6), tmp_path / "phone.mp4", counter_clockwise)
    assert display_rotation(video) == (360 - counter_clockwise) % 360
    expected = ffmpeg_decode(video)
    source = FrameSource(video)
    assert (source.width, source.height) == size == expected[0].shape[1::-1]
    assert source.reader == "pyav"  # decord garbles quarter turns, so rotated videos never go to it
    for index in (0, 5, 2):
        assert np.abs(source.frame(index).astype(float) - expected[index]).mean() < CODEC_TOLERANCE
    if installed("decord"):
        with pytest.raises(MagicPoseError, match="decord cannot read rotated videos"):
            FrameSource(video, reader="decord")


@pytest.mark.parametrize("reader", READERS)
def test_video_frames_count_size_fps_and_content(tmp_path, reader):
    if not installed(reader):
        pytest.skip(f"{reader} is not installed on this platform")
    source = FrameSource(write_counter_video(tmp_path / "counter.mp4"), reader=reader)
    assert (source.frame_count, source.width, source.height) == (12, 96, 64)
    assert source.fps == pytest.approx(12.0)
    for index in (0, 5, 11):
        assert abs(float(source.frame(index).mean()) - 20 * index) < 4


def test_frame_selection_start_step_max_frames():
    assert FrameSelection(start=2, step=3).indices(12, 12.0) == [2, 5, 8, 11]
    assert FrameSelection(start=1, max_frames=3).indices(12, 12.0) == [1, 2, 3]
    assert FrameSelection(step=4).output_fps(12.0) == 3.0
    assert FrameSelection(start=20).indices(12, 12.0) == []
    with pytest.raises(MagicPoseError):
        FrameSelection(step=0).indices(12, 12.0)
    with pytest.raises(MagicPoseError, match="replaces --step"):
        FrameSelection(step=2, fps=6).indices(12, 12.0)


@pytest.mark.parametrize(
    "source_fps, frame_count, fps, expected",
    [
        (12.0, 12, 6, [0, 2, 4, 6, 8, 10]),  # half the rate: every other frame
        (12.0, 6, 24, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]),  # double: each frame twice
        (30.0, 10, 25, [0, 1, 2, 3, 4, 6, 7, 8]),  # 1/3 s either way; the frame on screen at k/25 s
        (10.0, 3, 25, [0, 0, 0, 1, 1, 2, 2, 2]),  # 0.3 s -> 7.5 frames, rounded to 8
    ],
)
def test_fps_resamples_and_keeps_the_duration(source_fps, frame_count, fps, expected):
    selection = FrameSelection(fps=fps)
    indices = selection.indices(frame_count, source_fps)
    assert indices == expected and selection.output_fps(source_fps) == fps
    assert abs(len(indices) / fps - frame_count / source_fps) <= 0.5 / fps + 1e-9


def test_fps_with_start_and_max_frames():
    assert FrameSelection(start=4, fps=24, max_frames=5).indices(12, 12.0) == [4, 4, 5, 5, 6]


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


def test_zero_frame_and_audio_only_files_give_clear_errors(tmp_path):
    audio = tmp_path / "sound.m4a"
    command = [ffmpeg_exe(), "-hide_banner", "-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac", str(audio)]
    subprocess.run(command, check=True, capture_output=True)
    with pytest.raises(MagicPoseError, match=r"cannot read video|no video stream"):
        FrameSource(audio)


def test_corrupt_image_gives_clear_error(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(MagicPoseError, match="cannot read image"):
        read_image(tmp_path / "broken.png")


def test_extract_pose_fps_above_the_source_rate_reports_it(tmp_path):
    """`extract-pose --fps 25` on a 10 fps clip: every source frame repeated over the same 0.4 s."""
    pytest.importorskip("mediapipe")
    from typer.testing import CliRunner

    from magicpose_cli.cli import app

    photo = data.astronaut()[:, 64:448]
    clip = tmp_path / "clip.mp4"
    imageio.mimwrite(clip, [photo] * 4, fps=10, codec="libx264", quality=9, macro_block_size=16)
    out = tmp_path / "poses"
    result = CliRunner().invoke(app, ["extract-pose", str(clip), "-o", str(out), "--fps", "25", "--no-face", "--no-hands"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["fps"], manifest["source_fps"], manifest["frame_count"]) == (25, 10, 10)
    assert [frame["source_index"] for frame in manifest["frames"]] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert len(list(out.glob("0*.json"))) == 10
