"""Training data: the videos under ``--data`` and the (reference, target, pose map) pairs drawn from them.

Three layouts are read (see :func:`find_training_videos`); every one becomes a list of
:class:`TrainingVideo`, the frames of one person with a pose for each. A training sample is a
reference frame and a target frame of the same video, at most ``max_frame_gap`` frames apart,
with the pose map of the target. Which pair, and which crop, sample ``index`` gets is a pure
function of ``(seed, index)``, so a resumed run draws exactly the samples the first run would have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models.pose_maps import PoseMapProcessor
from magicpose_cli.pose.keypoints import FramePose
from magicpose_cli.video import IMAGE_SUFFIXES, FrameSource, list_images, read_image

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif")
# The original layout of the TikTok data set (train_tiktok.py / dataset/tiktok_video_arnold_copy.py).
ORIGINAL_FRAMES_DIR = "train_set"
ORIGINAL_POSE_MAPS_DIR = "pose_map_train_set"
# Separate random streams so that the pair drawn for a sample never depends on the noise drawn for a step.
STREAM_VIDEO_ORDER = 1
STREAM_PAIR = 2


@dataclass(frozen=True)
class TrainingVideo:
    """The usable frames of one video (a person was found in each), in time order.

    ``frames`` holds an image path per frame, or the frame index inside the video file ``source``.
    ``poses`` holds, per frame, a rendered pose-map image, an OpenPose JSON file or a FramePose.
    ``frame_numbers`` are the frames' positions in the video, which the frame-gap limit measures.
    """

    name: str
    source: Path
    frames: tuple[Path | int, ...]
    poses: tuple[Path | FramePose, ...]
    frame_numbers: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class DatasetScan:
    """What :func:`find_training_videos` found: the videos to train on and those it skipped, with why."""

    layout: str
    videos: list[TrainingVideo] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def report_scan(scan: DatasetScan, console) -> None:
    """What was found, and (the first 20 of) what was skipped and why, on ``console``."""
    frames = sum(len(video) for video in scan.videos)
    console.print(f"data: {len(scan.videos)} video(s), {frames} frames ({scan.layout})")
    for name, reason in scan.skipped[:20]:
        console.print(f"[yellow]skipped[/] {name}: {reason}", highlight=False)
    if len(scan.skipped) > 20:
        console.print(f"[yellow]skipped[/] {len(scan.skipped) - 20} more")


def person_found(pose: FramePose) -> bool:
    return any(float(person.body[:, 2].max()) > 0 for person in pose.people)


def _frame_number(path: Path, fallback: int) -> int:
    return int(path.stem) if path.stem.isdigit() else fallback


def _finish(scan: DatasetScan, name: str, source: Path, frames: list, poses: list, numbers: list, min_frames: int) -> None:
    if len(frames) < min_frames:
        scan.skipped.append((name, f"{len(frames)} usable frame(s), need {min_frames}"))
    else:
        scan.videos.append(TrainingVideo(name, source, tuple(frames), tuple(poses), tuple(numbers)))


def _scan_original_layout(
    data_dir: Path, min_frames: int, frames_dir: str = ORIGINAL_FRAMES_DIR, maps_dir: str = ORIGINAL_POSE_MAPS_DIR
) -> DatasetScan:
    """``train_set/<video>/<frame>.jpg`` with the rendered maps in ``pose_map_train_set/<video>/<frame>.jpg``
    (the test set's ``disco_test_set`` + ``pose_map_disco_test_set`` have the same shape)."""
    scan = DatasetScan(f"original ({frames_dir} + {maps_dir})")
    for video_dir in sorted(p for p in (data_dir / frames_dir).iterdir() if p.is_dir()):
        pose_dir = data_dir / maps_dir / video_dir.name
        maps = {p.stem: p for p in list_images(pose_dir)} if pose_dir.is_dir() else {}
        frames, poses, numbers = [], [], []
        for position, image in enumerate(list_images(video_dir)):
            if image.stem in maps:
                frames.append(image)
                poses.append(maps[image.stem])
                numbers.append(_frame_number(image, position))
        _finish(scan, video_dir.name, video_dir, frames, poses, numbers, min_frames)
    return scan


def _scan_frame_folders(data_dir: Path, min_frames: int) -> DatasetScan:
    """``<video>/frames/<index>.png`` with ``<video>/poses/<index>.json`` (the synthetic-data layout)."""
    scan = DatasetScan("frame folders (<video>/frames + <video>/poses)")
    for video_dir in sorted(p for p in data_dir.iterdir() if (p / "frames").is_dir()):
        frames, poses, numbers = [], [], []
        for position, image in enumerate(list_images(video_dir / "frames")):
            pose_file = video_dir / "poses" / f"{image.stem}.json"
            if pose_file.is_file() and person_found(FramePose.load(pose_file)):
                frames.append(image)
                poses.append(pose_file)
                numbers.append(_frame_number(image, position))
        _finish(scan, video_dir.name, video_dir, frames, poses, numbers, min_frames)
    return scan


def _scan_video_files(data_dir: Path, min_frames: int, report: Callable[[str], None]) -> DatasetScan:
    """Ordinary video files; their poses come from the extract-pose code and share its per-video cache.

    Only frames where the detector found the person are used (not the gaps it fills in).
    """
    from magicpose_cli.driving import default_work_dir
    from magicpose_cli.pose.extract import PoseSettings, extract_poses
    from magicpose_cli.pose.temporal import STATUS_DETECTED

    scan = DatasetScan("video files")
    for video_file in sorted(p for p in data_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES):
        report(f"poses of {video_file.name}")
        try:
            result = extract_poses(video_file, default_work_dir(video_file), settings=PoseSettings(smooth=False), write_maps=False)
        except MagicPoseError as error:
            scan.skipped.append((video_file.name, str(error)))
            continue
        usable = [
            (index, pose)
            for index, pose, status in zip(result.source_indices, result.poses, result.statuses)
            if status == STATUS_DETECTED and person_found(pose)
        ]
        indices = [index for index, _ in usable]
        _finish(scan, video_file.name, video_file, indices, [pose for _, pose in usable], indices, min_frames)
    return scan


def find_training_videos(
    data_dir: str | Path,
    min_frames: int = 2,
    report: Callable[[str], None] = lambda message: None,
    original_dirs: tuple[str, str] = (ORIGINAL_FRAMES_DIR, ORIGINAL_POSE_MAPS_DIR),
    what: str = "training",
) -> DatasetScan:
    """Find the training videos under ``data_dir``, in whichever of the three layouts it uses.

    Frames without a detected person are dropped; videos left with fewer than ``min_frames``
    frames are skipped and listed in ``DatasetScan.skipped``. ``report`` hears about slow work
    (pose extraction of video files). ``original_dirs`` names the frame and pose-map folders of the
    original layout (the test set's differ), ``what`` the data in messages.
    """
    data_dir = Path(data_dir)
    frames_dir, maps_dir = original_dirs
    if not data_dir.is_dir():
        raise MagicPoseError(f"{what} data folder not found: {data_dir}")
    if (data_dir / frames_dir).is_dir():
        if not (data_dir / maps_dir).is_dir():
            raise MagicPoseError(f"{data_dir / frames_dir} has no sibling {maps_dir}/ of pose maps")
        scan = _scan_original_layout(data_dir, min_frames, frames_dir, maps_dir)
    elif any((p / "frames").is_dir() for p in data_dir.iterdir()):
        scan = _scan_frame_folders(data_dir, min_frames)
    elif any(p.suffix.lower() in VIDEO_SUFFIXES for p in data_dir.iterdir()):
        scan = _scan_video_files(data_dir, min_frames, report)
    else:
        raise MagicPoseError(
            f"no {what} data in {data_dir}: expected video files, <video>/frames/ + <video>/poses/ folders, "
            f"or {frames_dir}/ + {maps_dir}/"
        )
    if not scan.videos:
        raise MagicPoseError(f"no usable {what} video in {data_dir} ({len(scan.skipped)} skipped)")
    return scan


def square_crop_box(width: int, height: int, rng: np.random.Generator | None) -> tuple[int, int, int]:
    """``(left, top, side)`` of a square crop: at a random offset along the long side, or centred when ``rng`` is None."""
    side = min(width, height)
    slack_x, slack_y = width - side, height - side
    if rng is None:
        return slack_x // 2, slack_y // 2, side
    return int(rng.integers(0, slack_x + 1)), int(rng.integers(0, slack_y + 1)), side


def _crop_resize(image: np.ndarray, box: tuple[int, int, int], resolution: int) -> Image.Image:
    left, top, side = box
    crop = Image.fromarray(image[top : top + side, left : left + side])
    return crop.resize((resolution, resolution), Image.BILINEAR) if side != resolution else crop


def _to_signed_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB image as a 3xHxW tensor in [-1, 1], the range the VAE encodes."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0


class _FrameReader:
    """Reads frames and pose maps of training videos; keeps one open decoder per video file and process."""

    def __init__(self) -> None:
        self._sources: dict[Path, FrameSource] = {}

    def frame(self, video: TrainingVideo, position: int) -> np.ndarray:
        frame = video.frames[position]
        if isinstance(frame, Path):
            return read_image(frame)
        if video.source not in self._sources:
            self._sources[video.source] = FrameSource(video.source)
        return self._sources[video.source].frame(frame)

    def pose_map(self, video: TrainingVideo, position: int, width: int, height: int) -> np.ndarray:
        """The pose map of a frame at the frame's own size, as HxWx3 uint8."""
        pose = video.poses[position]
        if isinstance(pose, Path) and pose.suffix.lower() in IMAGE_SUFFIXES:
            rendered = read_image(pose)
            if rendered.shape[:2] != (height, width):
                rendered = np.asarray(Image.fromarray(rendered).resize((width, height), Image.BILINEAR))
            return rendered
        from magicpose_cli.pose.render import render_pose

        frame_pose = FramePose.load(pose) if isinstance(pose, Path) else pose
        return np.asarray(render_pose(frame_pose, width, height), dtype=np.uint8)

    def __getstate__(self) -> dict:  # decoders are not picklable; each DataLoader worker opens its own
        return {"_sources": {}}


@dataclass(frozen=True)
class PairChoice:
    """Which video and frames a sample uses, and where its crops sit (None: centred)."""

    video: int
    reference: int
    target: int
    random_crop: bool


class PairDataset(torch.utils.data.Dataset):
    """Sample ``index`` -> ``{"reference", "target"}`` (3xSxS in [-1, 1]) and ``"pose_map"`` (3xSxS in [0, 1]).

    Videos are visited in a fresh random order each epoch (one pair per video per epoch, as the
    original data loader does). The reference frame is another frame of the same video at most
    ``max_frame_gap`` frames from the target (any frame when None). Training crops are squares at a
    random offset along the long side, the target and its pose map cut identically; evaluation
    crops (``train=False``) are centred.
    """

    def __init__(
        self,
        videos: list[TrainingVideo],
        resolution: int,
        seed: int,
        max_frame_gap: int | None = None,
        train: bool = True,
    ) -> None:
        if not videos:
            raise MagicPoseError("no training videos")
        if resolution % 8:
            raise MagicPoseError(f"--resolution must be a multiple of 8, got {resolution}")
        if max_frame_gap is not None and max_frame_gap < 1:
            raise MagicPoseError(f"--max-frame-gap must be at least 1, got {max_frame_gap}")
        self.videos = videos
        self.resolution = resolution
        self.seed = seed
        self.max_frame_gap = max_frame_gap
        self.train = train
        self._reader = _FrameReader()

    def __len__(self) -> int:
        """One epoch: one pair per video."""
        return len(self.videos)

    def _video_of(self, index: int) -> int:
        epoch, slot = divmod(index, len(self.videos))
        order = np.random.default_rng([self.seed, STREAM_VIDEO_ORDER, epoch]).permutation(len(self.videos))
        return int(order[slot])

    def choose(self, index: int) -> PairChoice:
        video_index = self._video_of(index)
        video = self.videos[video_index]
        rng = np.random.default_rng([self.seed, STREAM_PAIR, index])
        target = int(rng.integers(len(video)))
        numbers = np.asarray(video.frame_numbers)
        gaps = np.abs(numbers - numbers[target])
        allowed = (gaps > 0) if self.max_frame_gap is None else (gaps > 0) & (gaps <= self.max_frame_gap)
        candidates = np.flatnonzero(allowed)
        if len(candidates):
            reference = int(candidates[rng.integers(len(candidates))])
        else:  # no other frame within the gap: the nearest other frame
            gaps[target] = np.iinfo(gaps.dtype).max
            reference = int(np.argmin(gaps))
        return PairChoice(video_index, reference, target, random_crop=self.train)

    def load(self, choice: PairChoice, index: int) -> dict[str, torch.Tensor]:
        video = self.videos[choice.video]
        rng = np.random.default_rng([self.seed, STREAM_PAIR, index, 1]) if choice.random_crop else None
        reference = self._reader.frame(video, choice.reference)
        target = self._reader.frame(video, choice.target)
        height, width = target.shape[:2]
        pose_map = self._reader.pose_map(video, choice.target, width, height)
        reference_box = square_crop_box(reference.shape[1], reference.shape[0], rng)
        target_box = square_crop_box(width, height, rng)
        return {
            "reference": _to_signed_tensor(_crop_resize(reference, reference_box, self.resolution)),
            "target": _to_signed_tensor(_crop_resize(target, target_box, self.resolution)),
            "pose_map": PoseMapProcessor.to_tensor(_crop_resize(pose_map, target_box, self.resolution)),
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.load(self.choose(index), index)


class StepBatchSampler(torch.utils.data.Sampler[list[int]]):
    """The sample indices of every micro-batch from ``first_micro_step`` on, for one process.

    Micro-step ``m`` of process ``rank`` of ``world_size`` reads samples
    ``[(m * world_size + rank) * batch_size, ... + batch_size)``: every process reads different
    pairs, and resuming at a micro-step needs no saved sampler state.
    """

    def __init__(self, batch_size: int, first_micro_step: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.batch_size = batch_size
        self.first_micro_step = first_micro_step
        self.rank = rank
        self.world_size = world_size

    def batch_indices(self, micro_step: int) -> list[int]:
        start = (micro_step * self.world_size + self.rank) * self.batch_size
        return list(range(start, start + self.batch_size))

    def __iter__(self) -> Iterator[list[int]]:
        micro_step = self.first_micro_step
        while True:
            yield self.batch_indices(micro_step)
            micro_step += 1


def evaluation_pairs(videos: list[TrainingVideo], count: int, max_frame_gap: int | None) -> list[PairChoice]:
    """Fixed pairs for the sample grids: each video's first frame as the reference, a later frame as the target."""
    pairs = []
    for video_index, video in enumerate(videos[:count]):
        numbers = np.asarray(video.frame_numbers)
        reach = numbers[0] + (max_frame_gap if max_frame_gap is not None else math.inf)
        within = np.flatnonzero((numbers > numbers[0]) & (numbers <= reach))
        target = int(within[len(within) // 2]) if len(within) else min(1, len(video) - 1)
        pairs.append(PairChoice(video_index, 0, target, random_crop=False))
    return pairs
