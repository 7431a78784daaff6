"""The face box of a video: where its face scores are measured and where synthetic close-ups are cut.

The box comes from the 68-point iBUG face landmarks (our detector's, or the exact ones of a synthetic
person): one square size for the whole video (the median landmark extent times ``scale``) and a
centre smoothed over time, so that the box follows the head without jittering with the landmarks.
Frames without a face get no box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from magicpose_cli.metrics.face import MIN_CONFIDENCE

IBUG_POINTS = 68  # the OpenPose face's last two points are the pupils, inside the eyes anyway
# Box side over the landmark extent (jaw to brows): 2 takes in the forehead, hair and ears.
DEFAULT_FACE_SCALE = 2.0
DEFAULT_SMOOTHING = 5  # frames in the moving average of the box centre


@dataclass(frozen=True)
class FaceBox:
    """A square around a face, in pixels: ``centre`` (x, y) and ``side``; it may reach past the frame."""

    centre: tuple[float, float]
    side: float

    def clipped(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """``(left, top, right, bottom)`` inside a ``width`` x ``height`` frame, or None when nothing is left."""
        half = self.side / 2
        left, top = max(0, int(round(self.centre[0] - half))), max(0, int(round(self.centre[1] - half)))
        right, bottom = min(width, int(round(self.centre[0] + half))), min(height, int(round(self.centre[1] + half)))
        return (left, top, right, bottom) if right > left and bottom > top else None

    def inside(self, width: int, height: int) -> tuple[int, int, int]:
        """``(left, top, side)`` of the box moved (not shrunk) to lie inside the frame; for cutting square crops."""
        side = int(round(min(self.side, width, height)))
        left = int(np.clip(round(self.centre[0] - side / 2), 0, width - side))
        top = int(np.clip(round(self.centre[1] - side / 2), 0, height - side))
        return left, top, side


def face_extent(face: np.ndarray | None) -> tuple[np.ndarray, float] | None:
    """Centre and size (the larger side of the landmarks' bounding box) of a 70 x 3 face, or None
    when fewer than half of its 68 landmarks are confident."""
    if face is None or len(face) < IBUG_POINTS:
        return None
    points = face[:IBUG_POINTS]
    visible = points[points[:, 2] > MIN_CONFIDENCE, :2]
    if len(visible) < IBUG_POINTS // 2:
        return None
    low, high = visible.min(axis=0), visible.max(axis=0)
    return (low + high) / 2, float((high - low).max())


def face_boxes(faces: Sequence[np.ndarray | None], scale: float = DEFAULT_FACE_SCALE, smoothing: int = DEFAULT_SMOOTHING) -> list[FaceBox | None]:
    """One box per frame of a video's faces (70 x 3 landmarks or None): one side, smoothed centres."""
    extents = [face_extent(face) for face in faces]
    found = [index for index, extent in enumerate(extents) if extent is not None]
    if not found:
        return [None] * len(faces)
    side = float(np.median([extents[index][1] for index in found])) * scale
    centres = np.array([extents[index][0] for index in found])
    positions = np.array(found)
    boxes: list[FaceBox | None] = [None] * len(faces)
    for index in found:
        near = np.abs(positions - index) <= smoothing // 2  # the window over the frames that have a face
        boxes[index] = FaceBox(tuple(float(value) for value in centres[near].mean(axis=0)), side)
    return boxes


MIN_CROP = 7  # SSIM's window: a box cut smaller than this by the frame's edge is left out


def face_crop(frame: np.ndarray, box: FaceBox) -> np.ndarray | None:
    """The part of ``frame`` inside ``box`` (clipped to the frame), or None when under ``MIN_CROP`` pixels a side."""
    height, width = frame.shape[:2]
    clipped = box.clipped(width, height)
    if clipped is None or min(clipped[2] - clipped[0], clipped[3] - clipped[1]) < MIN_CROP:
        return None
    left, top, right, bottom = clipped
    return frame[top:bottom, left:right]


@dataclass
class FaceRegionScores:
    """Per-frame scores inside the face box (by metric), the temporal errors inside it, and the frames left out."""

    frames: dict[str, list[float]]
    temporal_errors: list[float]
    without_face: int


def score_face_region(generated: Sequence[np.ndarray], target: Sequence[np.ndarray], boxes: Sequence[FaceBox | None],
                      frame_metrics: dict, numbers: Sequence[int] | None = None) -> FaceRegionScores:  # fmt: skip
    """``frame_metrics`` (name -> metric(generated crop, target crop)) inside each frame's box, and the temporal
    error inside the box: frames ``t`` and ``t+1`` (``numbers`` one apart, both with a box) cut by the box of ``t+1``.
    Frames without a box are counted in ``without_face`` and left out."""
    from magicpose_cli.metrics.temporal import temporal_error

    numbers = list(range(len(target))) if numbers is None else list(numbers)
    scores = FaceRegionScores({name: [] for name in frame_metrics}, [], 0)
    previous_scored = None  # the number of the last frame scored
    for index, box in enumerate(boxes):
        crops = None if box is None else (face_crop(generated[index], box), face_crop(target[index], box))
        if crops is None or crops[0] is None:
            scores.without_face += 1
            continue
        for name, metric in frame_metrics.items():
            scores.frames[name].append(float(metric(*crops)))
        follows, previous_scored = previous_scored == numbers[index] - 1, numbers[index]
        if follows:
            pair = [np.stack([face_crop(frames[index - 1], box), crop]) for frames, crop in ((generated, crops[0]), (target, crops[1]))]
            scores.temporal_errors.append(temporal_error(*pair))
    return scores
