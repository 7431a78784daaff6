"""The driving input of retarget, whatever form it comes in: a video, a folder of photos, a folder
of rendered pose maps (the original MagicPose workflow) or a folder of OpenPose JSON files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import Progress

from magicpose_cli.cache import POSES_KIND
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import default_cache_root
from magicpose_cli.framing import FitMode, Placement, fit_placement
from magicpose_cli.pose.extract import MANIFEST_NAME, PoseSettings, extract_poses
from magicpose_cli.pose.keypoints import JSON_CANVAS_NOTICE, FramePose, load_openpose_frames
from magicpose_cli.video import DEFAULT_FOLDER_FPS, FrameSelection, list_images, read_image

# An image with at least this fraction of near-black pixels is taken for a rendered pose map.
POSE_MAP_BLACK_FRACTION = 0.6


@dataclass(frozen=True)
class DrivingPoses:
    """The driving motion, one entry per frame, whatever form it came in.

    Exactly one of ``keypoints`` (from a video, photos or OpenPose JSON: they can be fitted to
    the reference body) and ``map_files`` (rendered pose maps, the original workflow: used as
    they are) is set. Map images are read only when drawn, so a long folder never sits in memory.
    """

    fps: float
    canvas_width: int  # the canvas the poses live on: the driving frames', or the reference's once aligned
    canvas_height: int
    keypoints: list[FramePose] | None = None
    map_files: list[Path] | None = None
    notice: str | None = None  # worth telling the user (where an OpenPose JSON canvas came from)
    reference_pose: FramePose | None = None  # the reference photo's keypoints, once aligned to it

    def __len__(self) -> int:
        return len(self.keypoints if self.keypoints is not None else self.map_files)

    def aligned_to(self, reference: np.ndarray) -> DrivingPoses:
        """The skeleton fitted to the body of the person in ``reference`` (on its canvas); maps stay as they are."""
        if self.keypoints is None:
            return self
        from magicpose_cli.pose.align import align_poses, detect_reference_pose

        reference_pose = detect_reference_pose(reference)
        aligned = align_poses(self.keypoints, reference_pose)
        return DrivingPoses(self.fps, aligned[0].width, aligned[0].height, keypoints=aligned, reference_pose=reference_pose)

    def placement(self, width: int, height: int, fit: FitMode) -> Placement:
        """How the poses' canvas sits on a ``width`` x ``height`` generation canvas."""
        return fit_placement(self.canvas_width, self.canvas_height, width, height, fit)

    def pose_maps(self, placement: Placement, face: bool = True, hands: bool = True) -> PoseMaps:
        """The control map of every frame on the generation canvas, drawn on demand."""
        return PoseMaps(self, placement, face, hands)


@dataclass(frozen=True)
class PoseMaps(Sequence):
    """The control maps (HxWx3 uint8 on the placement's canvas) of a driving motion, each drawn when
    indexed, so only the batch at hand is ever in memory. Face and hands are switched off here only."""

    driving: DrivingPoses
    placement: Placement
    face: bool = True
    hands: bool = True

    def __len__(self) -> int:
        return len(self.driving)

    def __getitem__(self, index: int) -> np.ndarray:
        from magicpose_cli.pose.render import render_pose

        if self.driving.keypoints is not None:
            placed = self.placement.place_pose(self.driving.keypoints[index])
            return render_pose(placed, face=self.face, hands=self.hands)
        path = self.driving.map_files[index]
        pose_map = read_image(path)
        if pose_map.shape[:2] != (self.driving.canvas_height, self.driving.canvas_width):
            raise MagicPoseError(f"the pose maps in {path.parent} differ in size ({path.name} is {pose_map.shape[1]}x{pose_map.shape[0]})")
        return self.placement.place_image(pose_map)


def looks_like_pose_map(image: np.ndarray) -> bool:
    """A rendered control map is mostly black; photos practically never are."""
    return float((image.max(axis=-1) < 16).mean()) >= POSE_MAP_BLACK_FRACTION


def default_work_dir(input_path: Path, cache_root: Path | None = None) -> Path:
    """Where extractions of one input file are kept: ``<cache root>/poses/<name>-<hash of path, size, time>``."""
    stat = input_path.stat()
    tag = hashlib.sha256(f"{input_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return (cache_root or default_cache_root()) / POSES_KIND / f"{input_path.stem}-{tag}"


def load_pose_json_folder(
    folder: Path, selection: FrameSelection = FrameSelection(), pose_size: tuple[int, int] | None = None
) -> DrivingPoses:
    """OpenPose JSON files sorted by name; the canvas from the JSON, else ``pose_size``, else the
    keypoints' extent (the notice says which). An extract-pose manifest gives the frame rate, which
    ``selection.fps`` resamples; without one the frames have none and are played at ``selection.fps``."""
    files = sorted(p for p in folder.glob("*.json") if p.name != MANIFEST_NAME and not p.name.startswith("."))
    manifest_path = folder / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    fps = float(manifest.get("fps") or selection.fps or DEFAULT_FOLDER_FPS)
    indices = selection.indices(len(files), fps)
    if not indices:
        raise MagicPoseError(f"no OpenPose JSON frames selected in {folder}")
    try:
        poses, notice = load_openpose_frames([files[index] for index in indices], pose_size)
    except (ValueError, KeyError, TypeError) as error:
        raise MagicPoseError(f"bad OpenPose JSON in {folder}: {error}") from error
    if notice == JSON_CANVAS_NOTICE:  # the usual case says nothing, unless --pose-size was given in vain
        notice = f"{notice}: --pose-size ignored" if pose_size is not None else None
    sizes = {(pose.width, pose.height) for pose in poses}
    if len(sizes) > 1:
        raise MagicPoseError(f"the OpenPose JSON in {folder} has canvases of different sizes: {sorted(sizes)}")
    return DrivingPoses(selection.output_fps(fps), poses[0].width, poses[0].height, keypoints=poses, notice=notice)


def load_pose_map_folder(images: list[Path], selection: FrameSelection = FrameSelection()) -> DrivingPoses:
    """Rendered pose maps sorted by name; all must have the size of the first. They have no frame rate:
    they are played at ``selection.fps`` (default 30), one frame each."""
    fps = selection.fps or DEFAULT_FOLDER_FPS
    indices = selection.indices(len(images), fps)
    if not indices:
        raise MagicPoseError(f"no pose maps selected in {images[0].parent}")
    height, width = read_image(images[indices[0]]).shape[:2]
    return DrivingPoses(selection.output_fps(fps), width, height, map_files=[images[i] for i in indices])


def load_driving_poses(
    path: str | Path,
    selection: FrameSelection | None = None,
    max_frames: int | None = None,
    settings: PoseSettings = PoseSettings(),
    annotator_dir: str | Path | None = None,
    work_dir: str | Path | None = None,
    progress: Progress | None = None,
    cache_root: Path | None = None,
    pose_size: tuple[int, int] | None = None,
) -> DrivingPoses:
    """Driving poses from a video file, a folder of photos, of rendered pose maps, or of OpenPose JSON.

    Checks that the input exists and gives frames. Videos and photo folders are extracted with
    ``settings`` (cached in ``work_dir``, by default under ``cache_root``, itself by default
    $MAGICPOSE_CACHE); ``max_frames`` is a shortcut for ``selection``'s. Fitting to a reference
    is :meth:`DrivingPoses.aligned_to`'s (or ``settings.align_to``'s). ``pose_size`` (WxH) is the
    canvas of OpenPose JSON that has none; any other input refuses it.
    """
    path = Path(path)
    selection = selection or FrameSelection()
    if max_frames is not None:
        selection = FrameSelection(selection.start, max_frames, selection.step, selection.fps)
    if not path.exists():
        raise MagicPoseError(f"driving input not found: {path}")
    if path.is_dir() and any(p.suffix == ".json" and p.name != MANIFEST_NAME for p in path.iterdir()):
        return load_pose_json_folder(path, selection, pose_size)
    if pose_size is not None:
        raise MagicPoseError(f"--pose-size is the canvas of OpenPose JSON without one; {path} is not a folder of OpenPose JSON")
    if path.is_dir():
        images = list_images(path)
        if not images:
            raise MagicPoseError(f"no images or OpenPose JSON files in folder {path}")
        if looks_like_pose_map(read_image(images[0])):
            return load_pose_map_folder(images, selection)
    task = progress.add_task("extracting poses", total=None) if progress is not None else None
    result = extract_poses(
        path,
        Path(work_dir) if work_dir else default_work_dir(path, cache_root),
        selection,
        settings,
        annotator_dir=annotator_dir,
        on_progress=(lambda done, total: progress.update(task, completed=done, total=total)) if progress else None,
        write_maps=False,
    )
    first = result.poses[0]
    return DrivingPoses(result.fps, first.width, first.height, keypoints=result.poses)
