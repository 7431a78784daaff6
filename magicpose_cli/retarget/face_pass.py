"""The face pass: each frame's face redrawn at full resolution, with the reference's own face as the appearance.

In a full-body frame the face is a few latent pixels, and the identity is lost before the model
starts. After the main pass, retarget cuts each frame's face box (magicpose_cli.retarget.face_boxes)
out of the generated frame, enlarges it to the face canvas, and has the pipeline redraw it
image-to-image (``image``, ``strength``) with the reference's face, cut from the full-resolution
photo, as the appearance reference and the crop's own keypoints as the pose map; the redrawn face is
scaled back and blended in with a feathered mask, every other pixel the main pass's.

The face-passed frames are a second cached stage, keyed by the main frames' key and the face
settings, made batch by batch (or, with a motion module, step by step with the whole clip's crops
in the motion module's context windows) exactly as the main frames are, so resuming, several
processes and ``--frames-dir`` work as they do without it. The main frames' cache key is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from magicpose_cli.distributed import Processes
from magicpose_cli.driving import DrivingPoses
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.frame_cache import FrameCache, run_key
from magicpose_cli.framing import DEFAULT_GENERATION_SIZE, Placement
from magicpose_cli.hashing import hash_arrays
from magicpose_cli.models.settings import RecommendedSettings
from magicpose_cli.pose.keypoints import FramePose
from magicpose_cli.retarget.generation import Redrawing, generate_missing_frames
from magicpose_cli.retarget.options import RetargetOptions, Sampling, choose
from magicpose_cli.retarget.face_boxes import FaceBoxes, blend_face, cut_square, face_boxes, frame_head, pose_in_square

DEFAULT_FACE_PASS = False
DEFAULT_FACE_STRENGTH = 0.5
DEFAULT_FACE_MARGIN = 0.5


@dataclass(frozen=True)
class FaceSettings:
    """What decides the face pass's pixels besides the main frames (all of it goes into its cache key)."""

    strength: float
    size: int  # side of the square face canvas
    margin: float  # room around the head on each side, as a fraction of its size

    def key(self) -> dict:
        return {"face_strength": self.strength, "face_size": self.size, "face_margin": self.margin}


@dataclass(frozen=True)
class FacePlan:
    """Where each frame's face is and what the face pass draws it from."""

    settings: FaceSettings
    boxes: FaceBoxes
    poses: list[FramePose]  # the frames' keypoints on the generation canvas
    reference_face: np.ndarray  # the reference's face box cut from the full-resolution photo, at the face canvas size
    face: bool = True  # draw the face landmarks and hands in the crops' pose maps, as in the main pass's
    hands: bool = True

    def summary(self) -> str:
        return f"face pass: {int(self.boxes.found.sum())} of {len(self.poses)} frames"


class FaceCrops(Sequence):
    """The init frames: each main-pass frame's face box, enlarged to the face canvas, read from the cache when indexed."""

    def __init__(self, plan: FacePlan, main: FrameCache):
        self.plan, self.main = plan, main

    def __len__(self) -> int:
        return len(self.plan.poses)

    def __getitem__(self, index: int) -> np.ndarray:
        return cut_square(self.main.load(index), *self.plan.boxes.box(index), self.plan.settings.size)


class FacePoseMaps(Sequence):
    """The crops' pose maps: each frame's keypoints moved into its face box and drawn at the face canvas size."""

    def __init__(self, plan: FacePlan):
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan.poses)

    def __getitem__(self, index: int) -> np.ndarray:
        from magicpose_cli.pose.render import render_pose

        crop_pose = pose_in_square(self.plan.poses[index], *self.plan.boxes.box(index), self.plan.settings.size)
        return render_pose(crop_pose, face=self.plan.face, hands=self.plan.hands)


def reference_face(reference: np.ndarray, reference_pose: FramePose, settings: FaceSettings, name: str) -> np.ndarray:
    """The reference's face box (the clip's margin around its head), cut from the photo at its own resolution."""
    head = frame_head(reference_pose)
    if head is None:
        raise MagicPoseError(f"the face pass found no face or head in {name}; use a photo whose face shows, or add --no-face-pass")
    centre, size = head
    side = max(8, round(size * (1 + 2 * settings.margin)))
    left, top = np.rint(centre - side / 2).astype(int)
    return cut_square(reference, int(left), int(top), side, settings.size)


def plan_face_pass(settings: FaceSettings, canvas_poses: list[FramePose], reference: np.ndarray, reference_pose: FramePose,
                   reference_name: str, face: bool = True, hands: bool = True) -> FacePlan | None:  # fmt: skip
    """The face pass of a clip, or None where no frame has a face or head (every frame keeps the main pass's pixels)."""
    boxes = face_boxes(canvas_poses, settings.margin)
    if boxes is None:
        return None
    return FacePlan(settings, boxes, canvas_poses, reference_face(reference, reference_pose, settings, reference_name), face, hands)


def face_cache(plan: FacePlan, main: FrameCache, cache_root: Path) -> FrameCache:
    """The face-passed frames' cache: keyed by the main frames' key, the face settings, the reference face and the crops' poses."""
    key = run_key(
        main_frames=main.key, face=plan.settings.key(), reference_face=hash_arrays([plan.reference_face]),
        face_poses=hash_arrays(FacePoseMaps(plan)), boxes=[plan.boxes.side, plan.boxes.corners.tolist()],
    )  # fmt: skip
    return FrameCache(cache_root, key, {"main_frames": str(main.folder), "frames": len(plan.poses), **plan.settings.key()})


def finished_frame(plan: FacePlan, main: FrameCache):
    """``finish(index, redrawn face)``: the main frame with the face blended in, or as it was where the frame has no head."""

    def finish(index: int, redrawn: np.ndarray) -> np.ndarray:
        frame = main.load(index)
        return blend_face(frame, redrawn, *plan.boxes.box(index)) if plan.boxes.found[index] else frame

    return finish


def resolve_face_settings(options: RetargetOptions, recommended: RecommendedSettings) -> tuple[FaceSettings | None, str | None]:
    """The face pass's settings (None: off, or a strength of 0, which keeps the main pass's frames), each one the
    user's, else the model's recommendation, else the default; with a line saying so."""
    on = choose(options.face_pass, recommended.face_pass, DEFAULT_FACE_PASS)
    if not on[0]:
        return None, f"face pass off ({on[1]})" if on[1] != "default" else None
    sides = [side for side in (recommended.width, recommended.height) if side]
    chosen = {
        "strength": choose(options.face_strength, recommended.face_strength, DEFAULT_FACE_STRENGTH),
        "size": choose(options.face_size, min(sides) if sides else None, DEFAULT_GENERATION_SIZE),
        "margin": choose(options.face_margin, None, DEFAULT_FACE_MARGIN),
    }
    line = f"face pass on ({on[1]}): " + ", ".join(f"{name} {value:g} ({source})" for name, (value, source) in chosen.items())
    settings = FaceSettings(float(chosen["strength"][0]), int(chosen["size"][0]), float(chosen["margin"][0]))
    return (settings if settings.strength > 0 else None), line


def face_plan_for_run(
    options: RetargetOptions, recommended: RecommendedSettings, driving: DrivingPoses, placement: Placement, reference: np.ndarray,
    reference_path: Path,
) -> tuple[FacePlan | None, list[str]]:
    """The run's face pass (None: none) and the lines to tell: its settings, and why it does not run where it cannot."""
    settings, line = resolve_face_settings(options, recommended)
    if settings is None:
        return None, [line]
    if driving.keypoints is None:  # asked for by the user, it was refused before any work (check_pose_options)
        return None, [f"{line}; skipped: the driving pose maps have no keypoints to find the face"]
    canvas_poses = [placement.place_pose(pose) for pose in driving.keypoints]
    plan = plan_face_pass(settings, canvas_poses, reference, reference_pose_of(options, driving, reference, reference_path),
                          f"reference image {reference_path}", options.face, options.hands)  # fmt: skip
    return plan, [line, None if plan is not None else f"face pass: 0 of {len(canvas_poses)} frames (no face or head in any)"]


def reference_pose_of(options: RetargetOptions, driving: DrivingPoses, reference: np.ndarray, reference_path: Path) -> FramePose:
    """The reference photo's keypoints: given (``reference_pose``), found when aligning, else detected now."""
    if options.reference_pose is not None:
        try:
            return FramePose.load(options.reference_pose)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise MagicPoseError(f"cannot read --reference-pose {options.reference_pose}: {error}") from None
    if driving.reference_pose is not None:
        return driving.reference_pose
    from magicpose_cli.pose.detectors import detect_reference_pose

    try:
        return detect_reference_pose(reference)
    except MagicPoseError:
        raise MagicPoseError(f"the face pass found no person in reference image {reference_path}; add --no-face-pass") from None


def run_face_pass(load, plan: FacePlan, main: FrameCache, cache_root: Path, sampling: Sampling, progress, processes: Processes,
                  force: bool) -> FrameCache:  # fmt: skip
    """Redraw every frame's face into the face pass's cache (the missing ones: it resumes); returns that cache."""
    cache = face_cache(plan, main, cache_root)
    if force:
        processes.on_main(cache.clear)
    redrawing = Redrawing(FaceCrops(plan, main), plan.settings.strength, finished_frame(plan, main), "face pass")
    generate_missing_frames(load, plan.reference_face, FacePoseMaps(plan), cache, sampling, progress, processes=processes, redrawing=redrawing)
    return cache
