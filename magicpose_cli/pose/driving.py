"""The driving input of retarget, whatever form it comes in: a video, a folder of photos, a folder
of rendered pose maps (the original MagicPose workflow) or a folder of OpenPose JSON files."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import Progress

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import default_cache_root
from magicpose_cli.pose.extract import MANIFEST_NAME, PoseSettings, extract_poses
from magicpose_cli.pose.keypoints import FramePose
from magicpose_cli.video import DEFAULT_FOLDER_FPS, FrameSelection, list_images, read_image

# An image with at least this fraction of near-black pixels is taken for a rendered pose map.
POSE_MAP_BLACK_FRACTION = 0.6


@dataclass
class DrivingPoses:
    """One entry per driving frame: a FramePose, or (for a folder of pose maps) the map image itself,
    which carries no keypoints to align."""

    poses: list[FramePose] | list[np.ndarray]
    fps: float
    width: int
    height: int
    statuses: list[str] = field(default_factory=list)

    @property
    def is_pose_maps(self) -> bool:
        return bool(self.poses) and isinstance(self.poses[0], np.ndarray)

    def __len__(self) -> int:
        return len(self.poses)


def looks_like_pose_map(image: np.ndarray) -> bool:
    """A rendered control map is mostly black; photos practically never are."""
    return float((image.max(axis=-1) < 16).mean()) >= POSE_MAP_BLACK_FRACTION


def default_work_dir(input_path: Path) -> Path:
    """Where extractions for retarget are kept: under the cache root (``$MAGICPOSE_CACHE``), per input file."""
    root = default_cache_root() / "poses"
    stat = input_path.stat()
    tag = hashlib.sha256(f"{input_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return root / f"{input_path.stem}-{tag}"


def load_pose_json_folder(folder: Path, selection: FrameSelection = FrameSelection()) -> DrivingPoses:
    """OpenPose JSON files sorted by name; fps and statuses from an extract-pose manifest if there is one."""
    files = sorted(p for p in folder.glob("*.json") if p.name != MANIFEST_NAME and not p.name.startswith("."))
    manifest_path = folder / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    fps = float(manifest.get("fps") or DEFAULT_FOLDER_FPS)
    statuses = [frame["status"] for frame in manifest.get("frames", [])]
    indices = selection.indices(len(files), fps)
    if not indices:
        raise MagicPoseError(f"no OpenPose JSON frames selected in {folder}")
    try:
        poses = [FramePose.load(files[index]) for index in indices]
    except (ValueError, KeyError, json.JSONDecodeError) as error:
        raise MagicPoseError(f"bad OpenPose JSON in {folder}: {error}") from error
    statuses = [statuses[index] for index in indices] if len(statuses) == len(files) else []
    return DrivingPoses(poses, selection.output_fps(fps), poses[0].width, poses[0].height, statuses)


def load_pose_map_folder(images: list[Path], selection: FrameSelection = FrameSelection()) -> DrivingPoses:
    indices = selection.indices(len(images), DEFAULT_FOLDER_FPS)
    if not indices:
        raise MagicPoseError(f"no pose maps selected in {images[0].parent}")
    maps = [read_image(images[index]) for index in indices]
    if any(pose_map.shape != maps[0].shape for pose_map in maps):
        raise MagicPoseError(f"the pose maps in {images[0].parent} differ in size")
    height, width = maps[0].shape[:2]
    return DrivingPoses(maps, selection.output_fps(DEFAULT_FOLDER_FPS), width, height)


def load_driving_poses(
    path: str | Path,
    selection: FrameSelection | None = None,
    max_frames: int | None = None,
    settings: PoseSettings = PoseSettings(),
    annotator_dir: str | Path | None = None,
    work_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> DrivingPoses:
    """Driving poses from a video file, a folder of photos, of rendered pose maps, or of OpenPose JSON.

    Videos and photo folders are extracted with ``settings`` (cached in ``work_dir``, by default
    under $MAGICPOSE_CACHE); ``max_frames`` is a shortcut for ``selection``'s. Alignment to a
    reference is left to the caller (align_poses) unless ``settings.align_to`` is set.
    """
    path = Path(path)
    selection = selection or FrameSelection()
    if max_frames is not None:
        selection = FrameSelection(selection.start, max_frames, selection.step, selection.fps)
    if not path.exists():
        raise MagicPoseError(f"driving input not found: {path}")
    if path.is_dir():
        if any(p.suffix == ".json" and p.name != MANIFEST_NAME for p in path.iterdir()):
            return load_pose_json_folder(path, selection)
        images = list_images(path)
        if not images:
            raise MagicPoseError(f"no images or OpenPose JSON files in folder {path}")
        if looks_like_pose_map(read_image(images[0])):
            return load_pose_map_folder(images, selection)
    task = progress.add_task("extracting poses", total=None) if progress is not None else None
    result = extract_poses(
        path,
        Path(work_dir) if work_dir else default_work_dir(path),
        selection,
        settings,
        annotator_dir=annotator_dir,
        on_progress=(lambda done, total: progress.update(task, completed=done, total=total)) if progress else None,
        write_maps=False,
    )
    first = result.poses[0]
    return DrivingPoses(result.poses, result.fps, first.width, first.height, result.statuses)
