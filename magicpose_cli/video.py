"""Reading the frames of a video file or of a folder of images, with a frame selection.

Videos are decoded with decord (any container/codec its ffmpeg reads); a folder is read as
its images sorted by name. Frames come out as ``(H, W, 3)`` uint8 RGB arrays.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.hashing import hash_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# A folder of images has no frame rate of its own; this is the one the original TikTok data uses.
DEFAULT_FOLDER_FPS = 30.0


@dataclass(frozen=True)
class FrameSelection:
    """Which frames to take: from ``start``, every ``step``-th (or resampled to ``fps``), at most ``max_frames``."""

    start: int = 0
    max_frames: int | None = None
    step: int = 1
    fps: float | None = None

    def indices(self, frame_count: int, source_fps: float) -> list[int]:
        if self.start < 0 or self.step < 1 or (self.max_frames is not None and self.max_frames < 0):
            raise MagicPoseError("--start must be >= 0, --step >= 1 and --max-frames >= 0")
        if self.fps is not None and self.fps <= 0:
            raise MagicPoseError("--fps must be positive")
        if self.fps is not None and source_fps > 0:
            stride = source_fps / self.fps
            count = int(np.floor((frame_count - self.start - 1) / stride)) + 1 if frame_count > self.start else 0
            indices = [self.start + int(round(k * stride)) for k in range(max(count, 0))]
            indices = [index for index in indices if index < frame_count]
        else:
            indices = list(range(self.start, frame_count, self.step))
        return indices[: self.max_frames] if self.max_frames is not None else indices

    def output_fps(self, source_fps: float) -> float:
        if self.fps is not None:
            return float(min(self.fps, source_fps)) if source_fps > 0 else float(self.fps)
        return source_fps / self.step


class FrameSource:
    """Random access to the frames of one video file, image folder or single image."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise MagicPoseError(f"input not found: {self.path}")
        self._video = None
        self._images: list[Path] = []
        if self.path.is_dir() or self.path.suffix.lower() in IMAGE_SUFFIXES:
            self._images = list_images(self.path) if self.path.is_dir() else [self.path]
            if not self._images:
                raise MagicPoseError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {self.path}")
            first = read_image(self._images[0])
            self.height, self.width = first.shape[:2]
            self.frame_count = len(self._images)
            self.fps = DEFAULT_FOLDER_FPS
        else:
            self._video = _open_video(self.path)
            self.frame_count = len(self._video)
            if self.frame_count == 0:
                raise MagicPoseError(f"video has no frames: {self.path}")
            self.height, self.width = self._video[0].shape[:2]
            self.fps = float(self._video.get_avg_fps() or DEFAULT_FOLDER_FPS)

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
            return self._video[index].asnumpy()
        except Exception as error:  # decord raises its own DECORDError for broken streams
            raise MagicPoseError(f"cannot decode frame {index} of {self.path}: {error}") from error

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


def _open_video(path: Path):
    import decord

    if path.stat().st_size == 0:
        raise MagicPoseError(f"video file is empty: {path}")
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as error:  # decord raises DECORDError (a RuntimeError) with a long native trace
        raise MagicPoseError(f"cannot read video {path}: not a video that ffmpeg can decode") from error


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def read_image(path: str | Path) -> np.ndarray:
    """An image file as ``(H, W, 3)`` uint8 RGB, or a MagicPoseError saying why not."""
    path = Path(path)
    if not path.is_file():
        raise MagicPoseError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise MagicPoseError(f"cannot read image {path}: {error}") from error
