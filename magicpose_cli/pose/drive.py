"""What the driving video drives (``--drive all|body|face``), and a face from another video
(``--face-from``): the aligned driving poses combined with the reference's own pose.

``face`` is the paper's facial expression retargeting: every frame keeps the reference's body and
hands as detected in its photo, and only the face landmarks move, as the driver's (aligned to the
reference face by align_poses) placed on the reference's head. ``body`` is the other way round:
the driver's body and hands, with the reference's face carried on the moving head. ``--face-from``
takes the face from a second video, aligned to the reference the same way, on the head of the pose
it joins; frame ``t`` of the driving video gets the face of the moment ``t / fps`` of the face
video, which loops when it is shorter (its extra frames are unused when it is longer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from magicpose_cli.choices import DriveMode
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.align import align_poses
from magicpose_cli.pose.keypoints import BODY, FramePose, PersonPose
from magicpose_cli.pose.temporal import main_person

NOSE = BODY["nose"]


@dataclass(frozen=True)
class FaceSource:
    """The poses of the ``--face-from`` video and its frame rate (its frames are matched by time)."""

    poses: list[FramePose]
    fps: float


def drive_mode(value: object) -> DriveMode:
    try:
        return DriveMode(getattr(value, "value", value))
    except ValueError:
        raise MagicPoseError(f"--drive must be one of {', '.join(mode.value for mode in DriveMode)}, got {value!r}") from None


def check_drive(drive: object, face_from: object, aligned: bool) -> None:
    """Refuse, before any work, a combination that cannot be made: anything but ``--drive all``
    and no ``--face-from`` joins the driving poses with the reference's, so it needs the reference."""
    mode = drive_mode(drive)
    if mode is DriveMode.BODY and face_from:
        raise MagicPoseError("--face-from gives the face, and --drive body keeps the reference's face: use one of them")
    if not aligned and (mode is not DriveMode.ALL or face_from):
        what = f"--drive {mode.value}" if mode is not DriveMode.ALL else "--face-from"
        raise MagicPoseError(f"{what} joins the driving poses with the reference's: it needs the reference (--align-to REF in extract-pose; no --no-align in retarget)")


def aligned_drive(
    driving: list[FramePose], fps: float, reference: FramePose, drive: object = DriveMode.ALL,
    face_source: FaceSource | None = None, reference_name: str = "the reference",
) -> list[FramePose]:  # fmt: skip
    """The driving poses fitted to ``reference`` (align_poses), with what ``drive`` keeps of the reference
    and the face of ``face_source`` when given."""
    aligned = align_poses(driving, reference)
    mode = drive_mode(drive)
    if mode is DriveMode.ALL and face_source is None:
        return aligned
    keep = main_person(reference)
    if mode is DriveMode.FACE and not (keep.face[:, 2] > 0).any():
        raise MagicPoseError(f"--drive face: no face found in {reference_name}; use a photo where the face shows, or --drive all")
    faces = timed_faces(align_poses(face_source.poses, reference), len(driving), fps, face_source.fps) if face_source else None
    frames = []
    for t, frame in enumerate(aligned):
        mover = main_person(frame)
        face_of = faces[t] if faces is not None else mover
        if mode is DriveMode.FACE:
            person = PersonPose(body=keep.body, left_hand=keep.left_hand, right_hand=keep.right_hand, face=on_head(face_of, keep))
        elif mover is None:
            person = None
        else:
            face = on_head(keep if mode is DriveMode.BODY else face_of, mover)
            person = PersonPose(body=mover.body, left_hand=mover.left_hand, right_hand=mover.right_hand, face=face)
        frames.append(FramePose(frame.width, frame.height, [person.copy()] if person is not None else []))
    return frames


def on_head(face_of: PersonPose | None, head_of: PersonPose | None) -> np.ndarray:
    """The face of ``face_of`` moved with its nose onto the nose of ``head_of`` (none where either is missing)."""
    if face_of is None or head_of is None:
        return np.zeros_like(PersonPose().face)
    face = face_of.face.copy()
    present = face[:, 2] > 0
    if face_of.body[NOSE, 2] > 0 and head_of.body[NOSE, 2] > 0:
        face[present, :2] += head_of.body[NOSE, :2] - face_of.body[NOSE, :2]
    return face


def timed_faces(face_poses: list[FramePose], count: int, fps: float, face_fps: float) -> list[PersonPose | None]:
    """The face video's person at the time of each of ``count`` driving frames, looping it."""
    positions = [int(round(t * face_fps / fps)) % len(face_poses) for t in range(count)]
    return [main_person(face_poses[position]) for position in positions]
