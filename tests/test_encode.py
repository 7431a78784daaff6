"""mp4 writing: H.264 yuv420p at the asked fps, driving audio kept, atomic, never overwriting."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from magicpose_cli.encode import audio_codec_of, check_output_path, ffmpeg_exe, write_video
from magicpose_cli.errors import MagicPoseError


def make_video(path: Path, frames: list[np.ndarray], fps: float, audio: bool = False) -> Path:
    """Write test frames as an H.264 mp4, with a 440 Hz sine track when ``audio``."""
    height, width = frames[0].shape[:2]
    audio_arguments = {}
    if audio:
        tone = path.with_suffix(".wav")
        seconds = len(frames) / fps + 1
        subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", str(tone)],
            check=True,
        )
        audio_arguments = {"audio_path": str(tone), "audio_codec": "aac"}
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=fps, codec="libx264", macro_block_size=2,
        output_params=["-shortest"], **audio_arguments,
    )  # fmt: skip
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def probe_video(path: Path) -> dict:
    """Codec, pixel format, size, fps, audio codec and the decoded frames of a video file."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(data, np.uint8).reshape(height, width, 3) for data in reader]
    return {
        "codec": meta["codec"],
        "pix_fmt": meta["pix_fmt"].split("(")[0],
        "size": (width, height),
        "fps": meta["fps"],
        "audio_codec": meta.get("audio_codec"),
        "duration": meta["duration"],
        "frames": frames,
    }


def gradient_frames(count: int, width: int, height: int) -> list[np.ndarray]:
    """Frames whose brightness steps with the index, so order and count are checkable after lossy coding."""
    frames = []
    for index in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
        frame[..., 1] = 20 + 20 * index
        frames.append(frame)
    return frames


def test_writes_h264_yuv420p_at_the_given_fps(tmp_path):
    frames = gradient_frames(9, 96, 54)
    result = write_video(frames, tmp_path / "out.mp4", fps=12.5)
    info = probe_video(tmp_path / "out.mp4")
    assert (info["codec"], info["pix_fmt"], info["size"], info["fps"]) == ("h264", "yuv420p", (96, 54), 12.5)
    assert len(info["frames"]) == result.frames == 9
    assert info["audio_codec"] is None and result.audio_codec is None
    green_levels = [frame[..., 1].mean() for frame in info["frames"]]
    assert np.allclose(green_levels, [20 + 20 * i for i in range(9)], atol=4)


@pytest.mark.parametrize("count, fps", [(4, 8), (7, 12)])
def test_copies_the_audio_track_of_the_source_and_keeps_every_frame(tmp_path, count, fps):
    source = make_video(tmp_path / "driving.mp4", gradient_frames(count, 64, 48), fps=fps, audio=True)
    assert audio_codec_of(source) == "aac"
    result = write_video(gradient_frames(count, 64, 48), tmp_path / "out.mp4", fps=fps, audio_source=source)
    info = probe_video(tmp_path / "out.mp4")
    assert result.audio_codec == "aac" and info["audio_codec"] == "aac"
    assert len(info["frames"]) == count and info["fps"] == fps
    assert info["duration"] == pytest.approx(count / fps, abs=0.05)  # the longer audio is cut to the video


def test_a_source_without_audio_gives_a_silent_video(tmp_path):
    source = make_video(tmp_path / "driving.mp4", gradient_frames(4, 64, 48), fps=12, audio=False)
    assert audio_codec_of(source) is None
    write_video(gradient_frames(4, 64, 48), tmp_path / "out.mp4", fps=12, audio_source=source)
    assert probe_video(tmp_path / "out.mp4")["audio_codec"] is None


def test_never_overwrites_without_permission(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(MagicPoseError, match="already exists.*--overwrite"):
        write_video(gradient_frames(2, 32, 32), out, fps=10)
    assert out.read_bytes() == b"precious"
    write_video(gradient_frames(2, 32, 32), out, fps=10, overwrite=True)
    assert len(probe_video(out)["frames"]) == 2


def test_a_failed_encode_leaves_nothing_behind(tmp_path):
    frames = gradient_frames(3, 32, 32) + [np.zeros((16, 16, 3), np.uint8)]
    with pytest.raises(ValueError, match="expected 32x32"):
        write_video(frames, tmp_path / "out.mp4", fps=10)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(MagicPoseError, match="cannot write the output file"):
        check_output_path(blocker / "out.mp4", overwrite=False)
    with pytest.raises(MagicPoseError, match="is a folder"):
        check_output_path(tmp_path, overwrite=True)
