"""Retarget's outputs besides the cache: the video's frames, the mp4 (or the PNG of a still), and
the ``--frames-dir`` PNGs.

A new output lands here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import Progress

from magicpose_cli.driving import is_still
from magicpose_cli.encode import EncodeResult, write_video
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_path, atomic_write_text
from magicpose_cli.frame_cache import FrameCache
from magicpose_cli.framing import Placement, side_by_side
from magicpose_cli.images import save_png

FRAMES_DIR_RECORD = ".magicpose-frames.json"
"""Lists the PNGs retarget wrote to a --frames-dir, so a later run removes only its own stale ones."""
_FRAME_NAME = re.compile(r"\d{5}\.png")


def output_frames(
    cache: FrameCache,
    frame_count: int,
    placement: Placement,
    reference: np.ndarray,
    grid_pose_maps: Sequence[np.ndarray] | None = None,
    grid_height: int | None = None,
) -> Iterator[np.ndarray]:
    """The video's frames, read one at a time: generated frames restored to the driving shape, or
    (with ``grid_pose_maps``) reference | pose | result, each panel ``grid_height`` high (default: the result's)."""
    for index in range(frame_count):
        result = placement.restore(cache.load(index))
        if grid_pose_maps is not None:
            panels = [reference, placement.restore(grid_pose_maps[index]), result]
            yield side_by_side(panels, height=grid_height or result.shape[0])
        else:
            yield result


def encode_output(
    frames: Iterator[np.ndarray], count: int, path: Path, fps: float, audio_source: Path | None, overwrite: bool, progress: Progress
) -> EncodeResult:
    """Write the mp4 (with the driving audio when ``audio_source`` has some), showing progress."""
    encoding = progress.add_task("encoding", total=count)
    return write_video(
        frames, path, fps=fps, audio_source=audio_source, overwrite=overwrite, on_frame=lambda: progress.advance(encoding)
    )


def is_still_output(path: Path) -> bool:
    """Whether OUT is a picture (``-o out.png``): one frame, written as a PNG."""
    return path.suffix.lower() == ".png"


def check_still_output(driving_path: Path, output_path: Path) -> None:
    """Before any work: a still driver (one picture or OpenPose JSON file) makes a PNG, not a video."""
    if is_still(driving_path) and not is_still_output(output_path):
        raise MagicPoseError(
            f"the driving input {driving_path} is one picture, so it makes a still: write it as a PNG (-o {output_path.with_suffix('.png')})"
        )


def frames_to_read(output_path: Path, max_frames: int | None) -> int | None:
    """The driving frames to read: for a PNG, two at most (enough to refuse a driver that gives more
    without extracting a whole video first); else ``max_frames``."""
    return min(max_frames or 2, 2) if is_still_output(output_path) else max_frames


def check_still_frames(output_path: Path, frame_count: int) -> None:
    """A PNG output holds one frame: refuse a driving input that gives more (before generating them)."""
    if is_still_output(output_path) and frame_count != 1:
        raise MagicPoseError(
            f"-o {output_path} is a picture, but the driving input gives more than one frame: write a video "
            f"(-o {output_path.with_suffix('.mp4')}) or take one frame with --max-frames 1"
        )


def write_still(frames: Iterator[np.ndarray], path: Path, fps: float) -> EncodeResult:
    """The one frame (or its grid) as a PNG at ``path``."""
    save_png(path, next(frames))
    return EncodeResult(path, 1, fps, None)


def check_frames_dir(folder: Path) -> None:
    """Refuse a --frames-dir holding frame PNGs this tool did not write (they would be mixed with ours)."""
    if folder.exists() and not folder.is_dir():
        raise MagicPoseError(f"--frames-dir {folder} is a file, not a folder")
    foreign = frame_files(folder) - recorded_frames(folder)
    if foreign:
        raise MagicPoseError(
            f"--frames-dir {folder} already holds {len(foreign)} frame PNGs (e.g. {min(foreign)}) that magicpose did not "
            "write there; pick an empty or new folder"
        )


def frame_files(folder: Path) -> set[str]:
    """Names in ``folder`` shaped like the frames retarget writes (00000.png, ...)."""
    return {path.name for path in folder.glob("*.png") if _FRAME_NAME.fullmatch(path.name)} if folder.is_dir() else set()


def recorded_frames(folder: Path) -> set[str]:
    """The frame PNGs an earlier run wrote to ``folder``, as its record lists them."""
    try:
        names = json.loads((folder / FRAMES_DIR_RECORD).read_text())["frames"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {name for name in names if isinstance(name, str) and _FRAME_NAME.fullmatch(name)}


def keep_frames(cache: FrameCache, frame_count: int, placement: Placement, folder: Path) -> None:
    """Copy the finished frames, restored to the driving shape, to ``--frames-dir`` as PNGs.

    Frames an earlier, longer run wrote there are removed, so the folder holds this video only;
    the record is widened before writing and narrowed after, so a crash never orphans a frame.
    """
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{index:05d}.png" for index in range(frame_count)]
    earlier = recorded_frames(folder)
    write_frames_record(folder, earlier | set(names))
    for index, name in enumerate(names):
        with atomic_path(folder / name) as temporary:
            Image.fromarray(placement.restore(cache.load(index))).save(temporary, format="PNG")
    for stale in earlier - set(names):
        (folder / stale).unlink(missing_ok=True)
    write_frames_record(folder, set(names))


def write_frames_record(folder: Path, names: set[str]) -> None:
    record = {"written_by": "magicpose retarget", "frames": sorted(names)}
    atomic_write_text(folder / FRAMES_DIR_RECORD, json.dumps(record, indent=1))
