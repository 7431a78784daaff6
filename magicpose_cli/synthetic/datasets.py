"""Synthetic videos on disk for training, and evaluation pairs with exact retargeting ground truth."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import Progress

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_directory
from magicpose_cli.pose.keypoints import FramePose
from magicpose_cli.synthetic.drawing import draw_person
from magicpose_cli.synthetic.identity import Identity, sample_identity
from magicpose_cli.synthetic.motion import Motion, motion_poses, pose_at, sample_motion

_MIN_SIZE = 32


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if width < _MIN_SIZE or height < _MIN_SIZE:
        raise MagicPoseError(f"synthetic frames must be at least {_MIN_SIZE}x{_MIN_SIZE} pixels, got {width}x{height}")
    return width, height


def render_video(identity: Identity, motion: Motion, width: int, height: int) -> tuple[list[np.ndarray], list[FramePose]]:
    """Frames and keypoints of ``identity`` performing ``motion``."""
    poses = motion_poses(identity, motion, width, height)
    return [draw_person(identity, pose.people[0], width, height) for pose in poses], poses


def _video_rng(seed: int, index: int) -> np.random.Generator:
    # Stream 0 is for dataset videos, stream 1 for evaluation pairs, so they never share people.
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0, int(index)]))


def write_video_folder(folder: Path, frames_and_poses, meta: dict, on_frame=lambda: None) -> None:
    """Write one video folder (frames/, poses/, meta.json) all at once, so a crash never leaves a
    half-written video for training to pick up; ``frames_and_poses`` yields (RGB frame, FramePose)."""
    with atomic_directory(folder) as partial:
        (partial / "frames").mkdir()
        (partial / "poses").mkdir()
        for index, (frame, pose) in enumerate(frames_and_poses):
            Image.fromarray(frame).save(partial / "frames" / f"{index:05d}.png", format="PNG", compress_level=1)
            (partial / "poses" / f"{index:05d}.json").write_text(json.dumps(pose.to_openpose()))
            on_frame()
        (partial / "meta.json").write_text(json.dumps(meta))


def write_dataset(
    out_dir: str | Path,
    num_videos: int,
    frames_per_video: int,
    size: int | tuple[int, int] = 128,
    seed: int = 0,
    progress: bool = True,
) -> list[Path]:
    """Write ``num_videos`` synthetic videos in the frame-folder layout ``magicpose train`` reads.

    Each video is ``out_dir/<name>/frames/<index:05d>.png``, ``poses/<index:05d>.json`` (OpenPose
    JSON, as FramePose.save writes it) and ``meta.json`` (seed, identity and motion parameters).
    The same seed writes the same bytes; an existing video folder of the same name is replaced.
    Returns the video folders.
    """
    if num_videos < 1 or frames_per_video < 1:
        raise MagicPoseError(f"need at least one video and one frame, got {num_videos} videos of {frames_per_video} frames")
    width, height = _as_size(size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folders = [out_dir / f"person_{index:05d}" for index in range(num_videos)]
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("drawing synthetic people", total=num_videos * frames_per_video)
        for index, folder in enumerate(folders):
            rng = _video_rng(seed, index)
            identity = sample_identity(rng)
            motion = sample_motion(rng, frames_per_video)
            meta = {
                "seed": int(seed),
                "video_index": index,
                "width": width,
                "height": height,
                "identity": identity.to_json(),
                "motion": motion.to_json(),
            }
            drawn = ((draw_person(identity, pose.people[0], width, height), pose) for pose in motion_poses(identity, motion, width, height))
            write_video_folder(folder, drawn, meta, lambda: bar.advance(task))
    return folders


@dataclass
class SyntheticPair:
    """An evaluation case: person A as the reference, person B's performance as the driver.

    ``target_poses`` are B's motion on A's proportions (what a retargeting model is driven with)
    and ``target_frames`` the exact ground truth: A performing B's motion.
    """

    reference_identity: Identity
    driving_identity: Identity
    reference_frame: np.ndarray
    reference_pose: FramePose
    driving_frames: list[np.ndarray]
    driving_poses: list[FramePose]
    target_poses: list[FramePose]
    target_frames: list[np.ndarray]


def sample_pair(seed: int, size: int | tuple[int, int] = 128, num_frames: int = 16) -> SyntheticPair:
    """Reference person A, driving person B and the ground truth of A performing B's motion."""
    width, height = _as_size(size)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    reference_identity, driving_identity = sample_identity(rng), sample_identity(rng)
    reference_motion = sample_motion(rng, 1)
    driving_motion = sample_motion(rng, num_frames)
    reference_pose = FramePose(width, height, [pose_at(reference_identity, reference_motion, 0, width, height)])
    driving_frames, driving_poses = render_video(driving_identity, driving_motion, width, height)
    target_frames, target_poses = render_video(reference_identity, driving_motion, width, height)
    return SyntheticPair(
        reference_identity=reference_identity,
        driving_identity=driving_identity,
        reference_frame=draw_person(reference_identity, reference_pose.people[0], width, height),
        reference_pose=reference_pose,
        driving_frames=driving_frames,
        driving_poses=driving_poses,
        target_poses=target_poses,
        target_frames=target_frames,
    )
