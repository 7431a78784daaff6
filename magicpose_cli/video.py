"""Reading the frames of a video file or of a folder of images, with a frame selection.

Videos are decoded with decord where it is installed (it publishes wheels for Linux x86_64 and
Windows only) and with PyAV elsewhere. Both sit behind :class:`FrameSource`, which turns frames
upright as the container's rotation metadata asks (portrait phone videos), as players do; decord
applies that metadata itself and garbles quarter turns (its frames come out with a wrong shape and
4 channels), so rotated videos are always read with PyAV. A folder is read as its images sorted by
name. Frames come out as ``(H, W, 3)`` uint8 RGB arrays.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import check_exists
from magicpose_cli.hashing import hash_file
from magicpose_cli.images import read_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# A folder of images has no frame rate of its own; this is the one the original TikTok data uses.
DEFAULT_FOLDER_FPS = 30.0
VIDEO_READERS = ("decord", "pyav")


@dataclass(frozen=True)
class FrameSelection:
    """Which frames to take: from ``start``, every ``step``-th, at most ``max_frames``; or, with ``fps``,
    resampled to that many frames per second (frames dropped or repeated) over the same duration."""

    start: int = 0
    max_frames: int | None = None
    step: int = 1
    fps: float | None = None

    def indices(self, frame_count: int, source_fps: float) -> list[int]:
        if self.start < 0 or self.step < 1 or (self.max_frames is not None and self.max_frames < 0):
            raise MagicPoseError("--start must be >= 0, --step >= 1 and --max-frames >= 0")
        if self.fps is not None and (self.fps <= 0 or self.step != 1):
            raise MagicPoseError("--fps must be positive, and replaces --step (give one of them)")
        if self.fps is not None and source_fps > 0:
            # Output frame k is shown at k / fps; it takes the source frame on screen at that time.
            count = max(0, round((frame_count - self.start) * self.fps / source_fps))
            stride = source_fps / self.fps
            indices = [min(self.start + math.floor(k * stride + 1e-9), frame_count - 1) for k in range(count)]
        else:
            indices = list(range(self.start, frame_count, self.step))
        return indices[: self.max_frames] if self.max_frames is not None else indices

    def output_fps(self, source_fps: float) -> float:
        if self.fps is not None:
            return float(self.fps)
        return source_fps / self.step


class FrameSource:
    """Random access to the frames of one video file, image folder or single image.

    ``reader`` picks the video decoder (one of VIDEO_READERS); by default the first one installed,
    and PyAV for rotated videos.
    """

    def __init__(self, path: str | Path, reader: str | None = None):
        self.path = Path(path)
        check_exists(self.path, "input")
        self._video: _DecordVideo | _PyAVVideo | None = None
        self.reader: str | None = None
        self._images: list[Path] = []
        self._quarter_turns = 0
        if self.path.is_dir() or self.path.suffix.lower() in IMAGE_SUFFIXES:
            self._images = list_images(self.path) if self.path.is_dir() else [self.path]
            if not self._images:
                raise MagicPoseError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {self.path}")
            self.frame_count = len(self._images)
            self.fps = DEFAULT_FOLDER_FPS
        else:
            self._open_video(reader)
        self.height, self.width = self.frame(0).shape[:2]

    def _open_video(self, reader: str | None) -> None:
        if self.path.stat().st_size == 0:
            raise MagicPoseError(f"video file is empty: {self.path}; give a video with frames")
        self._quarter_turns = display_rotation(self.path) // 90
        self.reader = video_reader_name(reader or ("pyav" if self._quarter_turns else None))
        if self._quarter_turns and self.reader == "decord":
            raise MagicPoseError(f"decord cannot read rotated videos such as {self.path}; use pyav")
        self._video = open_video(self.path, self.reader)
        self.frame_count = self._video.frame_count
        if self.frame_count == 0:
            raise MagicPoseError(f"video has no frames: {self.path}")
        self.fps = self._video.fps or DEFAULT_FOLDER_FPS

    @property
    def is_folder(self) -> bool:
        return self._video is None

    def image_paths(self) -> list[Path]:
        return list(self._images)

    def frame(self, index: int) -> np.ndarray:
        if not 0 <= index < self.frame_count:
            raise IndexError(f"frame {index} outside 0..{self.frame_count - 1}")
        if self._video is None:
            return read_image(self._images[index])
        try:
            pixels = self._video.frame(index)
        except Exception as error:  # decoders raise their own error types for broken streams
            raise MagicPoseError(f"cannot decode frame {index} of {self.path}: {error}") from None
        # np.rot90 turns counter-clockwise; the metadata says how far to turn clockwise.
        return np.ascontiguousarray(np.rot90(pixels, -self._quarter_turns)) if self._quarter_turns else pixels

    def frames(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        for index in indices:
            yield index, self.frame(index)

    def content_hash(self) -> str:
        """SHA-256 of the input's bytes (every image of a folder, in order), for cache keys."""
        digest = hashlib.sha256()
        for file in self._images or [self.path]:
            digest.update(file.name.encode() if self._images else b"")
            hash_file(file, digest)
        return digest.hexdigest()


class _DecordVideo:
    """decord's reader, frame-accurate random access; only for videos without rotation metadata (decord
    applies it itself, and garbles quarter turns)."""

    def __init__(self, path: Path):
        import decord

        self._reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        self.frame_count = len(self._reader)
        self.fps = float(self._reader.get_avg_fps() or 0.0)

    def frame(self, index: int) -> np.ndarray:
        return self._reader[index].asnumpy()


class _PyAVVideo:
    """PyAV with decord's indexing: frame k is the k-th in presentation order. The timestamps come
    from one pass over the packets (no decoding); a frame is found by seeking to the keyframe before it
    and decoding forward, and reading on in order decodes every frame once."""

    _DECODE_AHEAD = 64  # frames: further ahead than this, seeking is cheaper than decoding through

    def __init__(self, path: Path):
        import av

        self._container = av.open(str(path))
        if not self._container.streams.video:
            raise MagicPoseError(f"no video stream in {path}")
        self._stream = self._container.streams.video[0]
        packets = self._container.demux(self._stream)
        self._timestamps = sorted(packet.pts for packet in packets if packet.pts is not None and packet.size)
        self.frame_count = len(self._timestamps)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        self._decoded: Iterator | None = None
        self._last: tuple[int, np.ndarray] = (-1, np.empty(0))

    def frame(self, index: int) -> np.ndarray:
        last_index, last_pixels = self._last
        if index == last_index:
            return last_pixels.copy()
        target = self._timestamps[index]
        if self._decoded is None or not last_index < index <= last_index + self._DECODE_AHEAD:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
            self._decoded = self._container.decode(self._stream)
        for decoded in self._decoded:
            if decoded.pts is not None and decoded.pts >= target:
                self._last = (index, decoded.to_ndarray(format="rgb24"))
                return self._last[1].copy()
        self._decoded = None
        raise EOFError("the stream ends before this frame")


_VIDEO_READER_MODULES = {"decord": "decord", "pyav": "av"}
_VIDEO_OPENERS = {"decord": _DecordVideo, "pyav": _PyAVVideo}


def video_reader_name(requested: str | None = None) -> str:
    """The video reader to use: ``requested`` if given, else the first of VIDEO_READERS installed."""
    if requested is not None and requested not in VIDEO_READERS:
        raise MagicPoseError(f"unknown video reader {requested!r}; choose one of {', '.join(VIDEO_READERS)}")
    for name in [requested] if requested else VIDEO_READERS:
        if importlib.util.find_spec(_VIDEO_READER_MODULES[name]) is not None:
            return name
    wanted = requested or "pyav"
    raise MagicPoseError(f"no video reader installed: pip install {_VIDEO_READER_MODULES[wanted]}")


def open_video(path: Path, reader: str) -> _DecordVideo | _PyAVVideo:
    try:
        return _VIDEO_OPENERS[reader](path)
    except MagicPoseError:
        raise
    except Exception:  # each reader raises its own error types, with long native traces
        raise MagicPoseError(f"cannot read video {path}: not a video that ffmpeg can decode; give a video file (mp4, mov, webm, ...) or a folder of images") from None


_DISPLAY_MATRIX = re.compile(r"display ?matrix: rotation of (-?[0-9.]+) degrees", re.IGNORECASE)
_ROTATE_TAG = re.compile(r"^\s*rotate\s*:\s*(-?[0-9]+)\s*$", re.MULTILINE)


def display_rotation(path: Path) -> int:
    """How far (0, 90, 180 or 270 degrees clockwise) players turn the first video stream of ``path``.

    Phones store portrait video as landscape frames plus this metadata. Read from ffmpeg's stream
    description, so both readers turn frames the same way.
    """
    from magicpose_cli.encode import ffmpeg_exe

    probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    streams = re.split(r"\n\s*Stream #", probe.stderr)
    video = next((stream for stream in streams[1:] if re.match(r"\S+: Video:", stream)), "")
    matrix = _DISPLAY_MATRIX.search(video)
    if matrix:  # ffmpeg prints the counter-clockwise angle of the display matrix
        clockwise = -float(matrix.group(1))
    else:
        tag = _ROTATE_TAG.search(video)
        clockwise = float(tag.group(1)) if tag else 0.0
    return int(round(clockwise / 90.0)) % 4 * 90


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
