"""Pairing generated frames with their ground truth, video by video, or a one-line error saying why not.

Each side of ``magicpose evaluate GENERATED GROUND_TRUTH`` may be:

- a video file: one video, its frames in order;
- a folder of frames: matched by file name without extension, as the original's scripts do
  (``0001.jpg`` pairs with ``0001.png``). Frames are grouped into videos by the name before their
  last number, so DisCo's flattened ``TiktokDance_00337_0133png.png`` names make one video per clip
  and plain ``00001.png`` names one video;
- a folder of per-video frame folders, or of video files: videos matched by name.

A frame's number (the last number in its name, else its position) places it in time: the video
metrics' 16-frame clips only span consecutive numbers, so a missing frame drops the clips across it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.video import IMAGE_SUFFIXES, FrameSource, list_images, read_image

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif")
_LAST_NUMBER = re.compile(r"^(.*?)(\d+)(\D*)$")


@dataclass
class FrameList:
    """One side of one video: image files, or the frames of a video file."""

    names: list[str]
    paths: list[Path] | None = None
    video: FrameSource | None = None

    def read(self, position: int) -> np.ndarray:
        return read_image(self.paths[position]) if self.paths is not None else self.video.frame(position)

    def size(self, position: int) -> tuple[int, int]:
        """(width, height) without decoding the pixels where the format allows."""
        if self.paths is None:
            return self.video.width, self.video.height
        with Image.open(self.paths[position]) as image:
            return image.size


@dataclass
class VideoPair:
    """A generated video and its ground truth, frame for frame."""

    name: str
    frame_names: list[str]
    frame_numbers: list[int]  # time positions: consecutive numbers are consecutive frames
    generated: FrameList
    target: FrameList

    def __len__(self) -> int:
        return len(self.frame_names)

    def frames(self):
        """(number, generated, target) per frame, in order, as uint8 HxWx3 arrays."""
        for position, number in enumerate(self.frame_numbers):
            yield number, self.generated.read(position), self.target.read(position)


def frame_number(name: str) -> int | None:
    match = _LAST_NUMBER.match(name)
    return int(match.group(2)) if match else None


def _video_key(stem: str) -> str:
    """The name before a frame's last number: which video of a flattened folder it belongs to."""
    match = _LAST_NUMBER.match(stem)
    return match.group(1).rstrip("_-. ") if match else ""


def _image_groups(folder: Path, images: list[Path]) -> dict[str, FrameList]:
    groups: dict[str, list[Path]] = {}
    for image in images:
        groups.setdefault(_video_key(image.stem), []).append(image)
    return {key or folder.name: FrameList([path.stem for path in paths], paths=paths) for key, paths in groups.items()}


def _video_file(path: Path) -> FrameList:
    source = FrameSource(path)
    return FrameList([f"{index:05d}" for index in range(source.frame_count)], video=source)


def read_side(path: Path, label: str) -> dict[str, FrameList]:
    """The videos of one side, by name."""
    path = Path(path)
    if not path.exists():
        raise MagicPoseError(f"{label} not found: {path}")
    if path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise MagicPoseError(f"{label} {path} is not a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of frames")
        return {path.stem: _video_file(path)}
    images = list_images(path)
    if images:
        return _image_groups(path, images)
    videos = {}
    for entry in sorted(p for p in path.iterdir() if not p.name.startswith(".")):
        if entry.is_dir() and (images := list_images(entry)):
            videos[entry.name] = FrameList([image.stem for image in images], paths=images)
        elif entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            videos[entry.stem] = _video_file(entry)
    if not videos:
        raise MagicPoseError(f"{label} {path} has no frames ({', '.join(IMAGE_SUFFIXES)}), frame folders or videos")
    return videos


def _listing(names) -> str:
    names = sorted(names)
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _match_videos(generated: dict[str, FrameList], target: dict[str, FrameList]) -> list[tuple[str, FrameList, FrameList]]:
    if len(generated) == 1 and len(target) == 1:  # one video each: whatever their names
        (name, gen), (_, gt) = next(iter(generated.items())), next(iter(target.items()))
        return [(name, gen, gt)]
    only_generated, only_target = set(generated) - set(target), set(target) - set(generated)
    if only_generated or only_target:
        sides = [f"GENERATED has {_listing(only_generated)}" if only_generated else "", f"GROUND_TRUTH has {_listing(only_target)}" if only_target else ""]
        raise MagicPoseError(f"the videos do not match: {' and '.join(side for side in sides if side)} without a counterpart")
    return [(name, generated[name], target[name]) for name in sorted(generated)]


def _pair_frames(name: str, generated: FrameList, target: FrameList) -> VideoPair:
    """Frames by name when both sides are image files, else by position (equal counts); in time order."""
    if generated.paths is None or target.paths is None:
        if len(generated.names) != len(target.names):
            raise MagicPoseError(f"video {name}: GENERATED has {len(generated.names)} frames but GROUND_TRUTH has {len(target.names)}")
        return VideoPair(name, list(generated.names), list(range(len(generated.names))), generated, target)
    only_generated, only_target = set(generated.names) - set(target.names), set(target.names) - set(generated.names)
    if only_generated or only_target:
        where = f"{_listing(only_generated)} only in GENERATED" if only_generated else f"{_listing(only_target)} only in GROUND_TRUTH"
        raise MagicPoseError(f"video {name}: the frame names do not match ({where}); frames are paired by file name")
    numbers = [frame_number(stem) for stem in generated.names]
    if None in numbers or len(set(numbers)) != len(numbers):
        numbers = list(range(len(generated.names)))
    order = sorted(range(len(numbers)), key=numbers.__getitem__)
    names = [generated.names[position] for position in order]
    target_paths = {stem: path for stem, path in zip(target.names, target.paths)}
    return VideoPair(
        name,
        names,
        [numbers[position] for position in order],
        FrameList(names, paths=[generated.paths[position] for position in order]),
        FrameList(names, paths=[target_paths[stem] for stem in names]),
    )


def check_sizes(pair: VideoPair) -> None:
    for position, frame_name in enumerate(pair.frame_names):
        generated, target = pair.generated.size(position), pair.target.size(position)
        if generated != target:
            raise MagicPoseError(
                f"video {pair.name}, frame {frame_name}: GENERATED is {generated[0]}x{generated[1]} but GROUND_TRUTH is "
                f"{target[0]}x{target[1]}; resize one side to the other's size first"
            )
        if pair.generated.paths is None and pair.target.paths is None:
            return  # two video files: one size each


def match_inputs(generated: Path, target: Path) -> list[VideoPair]:
    """The video pairs of GENERATED and GROUND_TRUTH, names, counts and sizes checked."""
    pairs = [_pair_frames(*matched) for matched in _match_videos(read_side(generated, "GENERATED"), read_side(target, "GROUND_TRUTH"))]
    for pair in pairs:
        check_sizes(pair)
    return pairs
