"""The keypoint format every part of magicpose speaks: OpenPose's, in pixel coordinates.

A person is 18 body points in OpenPose (COCO-18) order, 21 points per hand and 70 face points
(the 68-point iBUG layout followed by the two pupils), each row ``(x, y, confidence)``.
A confidence of 0 marks a point that is not there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

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


def _missing(count: int) -> np.ndarray:
    return np.zeros((count, 3), dtype=np.float32)


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
        arrays = {}
        for part, key in _OPENPOSE_KEYS.items():
            values = person.get(key) or []
            arrays[part] = (
                np.asarray(values, dtype=np.float32).reshape(-1, 3) if values else _missing(_PART_SIZES[part])
            )
        return cls(**arrays)


@dataclass
class FramePose:
    """The people found in one frame of a ``width`` x ``height`` picture."""

    width: int
    height: int
    people: list[PersonPose] = field(default_factory=list)

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
        return cls.from_openpose(json.loads(Path(path).read_text()))
