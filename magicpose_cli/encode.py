"""Writing the finished frames as an H.264 mp4 that every player opens, with the driving audio.

The video goes to a temporary file beside OUT and is renamed onto OUT only once ffmpeg has
finished, so an interrupted or failed encode never leaves a half-written OUT behind.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_path

# Audio codecs the mp4 container holds as they are; anything else is re-encoded to AAC.
_MP4_AUDIO_CODECS = {"aac", "mp3", "alac", "opus", "ac3", "eac3", "flac"}
_AUDIO_STREAM = re.compile(r"Stream #\d+:\d+.*?: Audio: (\w+)")


def ffmpeg_exe() -> str:
    """The ffmpeg binary that imageio-ffmpeg ships, so no system ffmpeg is needed."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def audio_codec_of(path: Path) -> str | None:
    """The codec name of the first audio stream in ``path``, or None when it has none."""
    path = Path(path)
    if not path.is_file():
        return None
    probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    match = _AUDIO_STREAM.search(probe.stderr)
    return match.group(1) if match else None


def check_output_path(path: Path, overwrite: bool) -> None:
    """Fail before any work when OUT exists (without overwrite) or its folder cannot be made or written.

    A missing folder is not made here (the video's atomic write makes it), so a run that fails later
    leaves no empty folder behind; the nearest existing one is checked instead.
    """
    path = Path(path)
    if path.is_dir():
        raise MagicPoseError(f"output path {path} is a folder; give a file name such as {path / 'out.mp4'}")
    if path.exists() and not overwrite:
        raise MagicPoseError(f"output file {path} already exists; pass --overwrite to replace it")
    existing = next(folder for folder in path.absolute().parents if folder.exists())
    if not existing.is_dir():
        shown = next((folder for folder in path.parents if folder.absolute() == existing), existing)
        raise MagicPoseError(f"cannot write the output file {path}: {shown} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=f".{path.name}.write-check."):
            pass
    except OSError as error:
        raise MagicPoseError(f"cannot write the output file {path}: {error.strerror or error}") from None


@dataclass
class EncodeResult:
    path: Path
    frames: int
    fps: float
    audio_codec: str | None  # the driving audio's codec when it was kept, else None


def write_video(
    frames: Iterable[np.ndarray],
    path: Path,
    fps: float,
    audio_source: Path | None = None,
    overwrite: bool = False,
    quality: int = 8,
    on_frame: Callable[[], None] | None = None,
) -> EncodeResult:
    """Encode HxWx3 uint8 frames (all the same even size) to H.264 yuv420p at ``fps``.

    When ``audio_source`` has an audio track it is muxed in (copied when mp4 can hold its codec,
    else re-encoded to AAC) and cut to the video's length.
    """
    path = Path(path)
    check_output_path(path, overwrite)
    audio_codec = audio_codec_of(audio_source) if audio_source is not None else None
    frame_iterator = iter(frames)
    first = next(frame_iterator, None)
    if first is None:
        raise MagicPoseError("there are no frames to encode")
    height, width = first.shape[:2]
    if width % 2 or height % 2:
        raise ValueError(f"H.264 yuv420p needs an even frame size, got {width}x{height}")
    count = 0
    with atomic_path(path) as temporary:
        video_only = temporary.with_name(temporary.stem + ".video.mp4") if audio_codec else temporary
        try:
            writer = imageio_ffmpeg.write_frames(
                str(video_only),
                (width, height),
                fps=fps,
                codec="libx264",
                pix_fmt_out="yuv420p",
                quality=quality,
                macro_block_size=2,
                output_params=["-movflags", "+faststart"],
            )
            writer.send(None)  # start ffmpeg
            try:
                for frame in _chain(first, frame_iterator):
                    if frame.shape[:2] != (height, width):
                        raise ValueError(f"frame {count} is {frame.shape[1]}x{frame.shape[0]}, expected {width}x{height}")
                    writer.send(np.ascontiguousarray(frame, dtype=np.uint8))
                    count += 1
                    if on_frame is not None:
                        on_frame()
            finally:
                writer.close()
            if audio_codec:
                add_audio(video_only, Path(audio_source), audio_codec, count / fps, temporary)
        finally:
            if video_only != temporary:
                video_only.unlink(missing_ok=True)
    return EncodeResult(path=path, frames=count, fps=fps, audio_codec=audio_codec)


def add_audio(video: Path, audio_source: Path, audio_codec: str, seconds: float, output: Path) -> None:
    """Mux the first audio track of ``audio_source``, cut to ``seconds``, beside the (copied) video stream.

    A second ffmpeg pass over finished files: cutting with -shortest while frames are still
    being piped in drops the last frames.
    """
    command = [
        ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-i", str(audio_source),
        "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
        "-c:a", "copy" if audio_codec in _MP4_AUDIO_CODECS else "aac",
        "-t", f"{seconds:.6f}", "-movflags", "+faststart", str(output),
    ]  # fmt: skip
    muxing = subprocess.run(command, capture_output=True, text=True)
    if muxing.returncode != 0:
        last_line = (muxing.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise MagicPoseError(f"cannot add the audio of {audio_source}: {last_line}")


def _chain(first: np.ndarray, rest: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    yield first
    yield from rest
