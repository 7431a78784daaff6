"""The keypoint format every part of magicpose speaks: OpenPose's, in pixel coordinates.

A person is 18 body points in OpenPose (COCO-18) order, 21 points per hand and 70 face points
(the 68-point iBUG layout followed by the two pupils), each row ``(x, y, confidence)``.
A confidence of 0 marks a point that is not there.

OpenPose JSON is read as CMU OpenPose writes it (BODY_25 or COCO-18 body, face and hands optional,
no canvas size) and as controlnet_aux / DWPose annotators write it (COCO-18, 68 or 70 face points,
``canvas_width``/``canvas_height``, sometimes a list holding one such frame).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

BODY_POINT_NAMES = (
    "nose", "neck",
    "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
BODY = {name: index for index, name in enumerate(BODY_POINT_NAMES)}
NUM_BODY_POINTS = 18
NUM_HAND_POINTS = 21
NUM_FACE_POINTS = 70

_PART_SIZES = {
    "body": NUM_BODY_POINTS,
    "left_hand": NUM_HAND_POINTS,
    "right_hand": NUM_HAND_POINTS,
    "face": NUM_FACE_POINTS,
}
_OPENPOSE_KEYS = {
    "body": "pose_keypoints_2d",
    "left_hand": "hand_left_keypoints_2d",
    "right_hand": "hand_right_keypoints_2d",
    "face": "face_keypoints_2d",
}


# BODY_25 (CMU OpenPose's default model) adds a mid-hip (8) and six foot points (19-24) to COCO-18.
BODY_25_TO_COCO_18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
NUM_BODY_25_POINTS = 25
_IBUG_RIGHT_EYE, _IBUG_LEFT_EYE = slice(36, 42), slice(42, 48)


def _missing(count: int) -> np.ndarray:
    return np.zeros((count, 3), dtype=np.float32)


def _rows(person: dict, part: str) -> np.ndarray:
    """One part of an OpenPose person as ``(points, 3)`` rows in our layout, or ValueError."""
    values = person.get(_OPENPOSE_KEYS[part]) or []
    if not values:
        return _missing(_PART_SIZES[part])
    if len(values) % 3:
        raise ValueError(f"{_OPENPOSE_KEYS[part]} has {len(values)} numbers, not x, y, confidence triples")
    rows = np.asarray(values, dtype=np.float32).reshape(-1, 3)
    if part == "body" and len(rows) == NUM_BODY_25_POINTS:
        return rows[list(BODY_25_TO_COCO_18)]
    if part == "face" and len(rows) == 68:
        return np.concatenate([rows, [_centre(rows[_IBUG_RIGHT_EYE]), _centre(rows[_IBUG_LEFT_EYE])]])
    if len(rows) != _PART_SIZES[part]:
        accepted = "18 (COCO-18) or 25 (BODY_25)" if part == "body" else "68 or 70" if part == "face" else "21"
        raise ValueError(f"{_OPENPOSE_KEYS[part]} has {len(rows)} points; expected {accepted}")
    return rows


def _centre(points: np.ndarray) -> np.ndarray:
    """A pupil where there is none: the centre of the eye's six points, if all are there."""
    if not (points[:, 2] > 0).all():
        return np.zeros(3, dtype=np.float32)
    return np.array([*points[:, :2].mean(axis=0), points[:, 2].min()], dtype=np.float32)


@dataclass
class PersonPose:
    """One person's keypoints; each array is ``(points, 3)`` of x, y (pixels) and confidence."""

    body: np.ndarray = field(default_factory=lambda: _missing(NUM_BODY_POINTS))
    left_hand: np.ndarray = field(default_factory=lambda: _missing(NUM_HAND_POINTS))
    right_hand: np.ndarray = field(default_factory=lambda: _missing(NUM_HAND_POINTS))
    face: np.ndarray = field(default_factory=lambda: _missing(NUM_FACE_POINTS))

    def __post_init__(self) -> None:
        for part, count in _PART_SIZES.items():
            array = np.asarray(getattr(self, part), dtype=np.float32)
            if array.shape != (count, 3):
                raise ValueError(f"{part} must have shape ({count}, 3), got {array.shape}")
            setattr(self, part, array)

    def parts(self) -> dict[str, np.ndarray]:
        return {part: getattr(self, part) for part in _PART_SIZES}

    def copy(self) -> "PersonPose":
        return PersonPose(**{part: array.copy() for part, array in self.parts().items()})

    def to_openpose(self) -> dict:
        return {_OPENPOSE_KEYS[part]: array.reshape(-1).round(3).tolist() for part, array in self.parts().items()}

    @classmethod
    def from_openpose(cls, person: dict) -> "PersonPose":
        return cls(**{part: _rows(person, part) for part in _PART_SIZES})


@dataclass
class FramePose:
    """The people found in one frame of a ``width`` x ``height`` picture."""

    width: int
    height: int
    people: list[PersonPose] = field(default_factory=list)

    def moved(self, scale: np.ndarray, offset: np.ndarray, width: int, height: int) -> "FramePose":
        """Every present keypoint at ``point * scale + offset`` (x, y), on a ``width`` x ``height`` canvas."""
        people = []
        for person in self.people:
            moved = {}
            for part, points in person.parts().items():
                points = points.copy()
                present = points[:, 2] > 0
                points[present, :2] = points[present, :2] * scale + offset
                moved[part] = points
            people.append(PersonPose(**moved))
        return FramePose(width, height, people)

    def to_openpose(self) -> dict:
        return {
            "version": 1.3,
            "people": [person.to_openpose() for person in self.people],
            "canvas_width": int(self.width),
            "canvas_height": int(self.height),
        }

    @classmethod
    def from_openpose(cls, data: dict, width: int | None = None, height: int | None = None) -> "FramePose":
        width = int(data.get("canvas_width") or width or 0)
        height = int(data.get("canvas_height") or height or 0)
        if width <= 0 or height <= 0:
            raise ValueError("OpenPose JSON has no canvas_width/canvas_height; pass the frame size")
        return cls(width, height, [PersonPose.from_openpose(person) for person in data.get("people", [])])

    def save(self, path: str | Path) -> None:
        from magicpose_cli.files import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_openpose()))

    @classmethod
    def load(cls, path: str | Path) -> "FramePose":
        return cls.from_openpose(_read_openpose(path))


def _read_openpose(path: str | Path) -> dict:
    """The frame in an OpenPose JSON file (a list holding one frame is unwrapped)."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict) or not isinstance(data.get("people", []), list):
        raise ValueError(f"{Path(path).name} is not an OpenPose frame (an object with a 'people' list)")
    return data


def _extent_canvas(frames: Sequence[dict]) -> tuple[int, int]:
    """The smallest canvas holding every keypoint with as much room right and below as left and above."""
    points = [
        rows[rows[:, 2] > 0, :2]
        for frame in frames
        for person in frame.get("people", [])
        for rows in PersonPose.from_openpose(person).parts().values()
    ]
    present = np.concatenate([rows for rows in points if len(rows)] or [np.zeros((0, 2))])
    if len(present) == 0:
        raise ValueError("no keypoints to size the canvas from; pass --pose-size WxH")
    low, high = np.maximum(present.min(axis=0), 0.0), present.max(axis=0)
    return max(1, math.ceil(high[0] + low[0])), max(1, math.ceil(high[1] + low[1]))


def parse_pose_size(text: str) -> tuple[int, int]:
    """``--pose-size WxH`` -> (width, height), or MagicPoseError saying what is expected."""
    from magicpose_cli.errors import MagicPoseError

    width, separator, height = text.lower().partition("x")
    if not (separator and width.strip().isdigit() and height.strip().isdigit()) or min(int(width), int(height)) < 1:
        raise MagicPoseError(f"--pose-size must be WIDTHxHEIGHT in pixels, like 1080x1920; got {text!r}")
    return int(width), int(height)


JSON_CANVAS_NOTICE = "canvas size from the OpenPose JSON"


def load_openpose_frames(
    paths: Sequence[str | Path], pose_size: tuple[int, int] | None = None
) -> tuple[list[FramePose], str]:
    """OpenPose JSON files -> FramePoses, and a notice saying where their canvas size came from.

    The canvas is the JSON's own (``canvas_width``/``canvas_height``) when it has one, else
    ``pose_size`` (width, height; ``--pose-size WxH``), else the keypoints' extent over all files.
    """
    frames = [_read_openpose(path) for path in paths]
    has_canvas = [bool(frame.get("canvas_width") and frame.get("canvas_height")) for frame in frames]
    if all(has_canvas):
        return [FramePose.from_openpose(frame) for frame in frames], JSON_CANVAS_NOTICE
    if pose_size is not None:
        notice = f"canvas {pose_size[0]}x{pose_size[1]} from --pose-size"
    else:
        pose_size = _extent_canvas(frames)
        notice = (
            f"the OpenPose JSON has no canvas size: using {pose_size[0]}x{pose_size[1]}, the keypoints' extent "
            "(pass --pose-size WxH for the real one)"
        )
    return [FramePose.from_openpose(frame, *pose_size) for frame in frames], notice
