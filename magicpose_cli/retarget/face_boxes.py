"""Where the face pass looks: one square face box per frame, cut out, redrawn and blended back.

The box follows the face landmarks (the head points of the body, nose, eyes and ears, where a
frame has no face), has one size for the whole clip (the largest head times the margin), and its
centre is a moving average over time, so the crop neither jitters nor breathes. A box may leave
the frame: its crop continues the frame's edge pixels, and only its part inside is blended back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from magicpose_cli.pose.keypoints import BODY, FramePose, PersonPose

HEAD_POINTS = [BODY[name] for name in ("nose", "right_eye", "left_eye", "right_ear", "left_ear")]
HEAD_POINTS_TO_FACE = 1.2  # ear to ear is about the face landmarks' extent; a little more, as eyes and nose alone are smaller
FOREHEAD_SHIFT = 0.1  # landmarks stop at the brows: the box centre moves up by this fraction of the head size
SMOOTHING_RADIUS = 2  # the centre is the mean of 2 * 2 + 1 frames' head centres
FEATHER = 0.12  # fraction of the box side over which the redrawn face fades into the frame
MIN_FACE_POINTS = 3


def head_of(person: PersonPose) -> tuple[np.ndarray, float] | None:
    """(centre x, y; size in pixels) of one person's head, from the face landmarks or else the body's head points."""
    face = person.face[person.face[:, 2] > 0, :2]
    if len(face) >= MIN_FACE_POINTS:
        points, scale = face, 1.0
    else:
        head = person.body[HEAD_POINTS]
        points, scale = head[head[:, 2] > 0, :2], HEAD_POINTS_TO_FACE
        if len(points) < 2:
            return None
    low, high = points.min(axis=0), points.max(axis=0)
    size = float((high - low).max()) * scale
    if size <= 0:
        return None
    return (low + high) / 2 - np.array([0.0, FOREHEAD_SHIFT * size]), size


def frame_head(frame_pose: FramePose) -> tuple[np.ndarray, float] | None:
    """The head of the frame's first person (the main one: retarget's poses hold one), if it has one."""
    return head_of(frame_pose.people[0]) if frame_pose.people else None


def smoothed(centres: np.ndarray, radius: int = SMOOTHING_RADIUS) -> np.ndarray:
    """A centred moving average with the ends repeated: it never moves more, in total or in one step, than its input."""
    padded = np.concatenate([np.repeat(centres[:1], radius, axis=0), centres, np.repeat(centres[-1:], radius, axis=0)])
    kernel = np.ones(2 * radius + 1) / (2 * radius + 1)
    return np.stack([np.convolve(padded[:, axis], kernel, mode="valid") for axis in range(centres.shape[1])], axis=1)


@dataclass(frozen=True)
class FaceBoxes:
    """The clip's face boxes on the generation canvas: one ``side``, a top-left corner per frame, and
    which frames have a head (the others keep the main pass's pixels)."""

    side: int
    corners: np.ndarray  # N x 2 ints (left, top)
    found: np.ndarray  # N bools

    def box(self, index: int) -> tuple[int, int, int]:
        left, top = self.corners[index]
        return int(left), int(top), self.side


def face_boxes(poses: list[FramePose], margin: float) -> FaceBoxes | None:
    """The boxes of a clip's poses (on the canvas the frames are generated on), or None where no frame has a head.

    ``margin``: room around the head on each side, as a fraction of its size (0.5: a box twice the head).
    """
    heads = [frame_head(pose) for pose in poses]
    found = np.array([head is not None for head in heads])
    if not found.any():
        return None
    centres = np.stack([head[0] for head in heads if head is not None])
    side = max(8, round(max(head[1] for head in heads if head is not None) * (1 + 2 * margin)))
    steady = smoothed(centres)
    at_found = np.cumsum(found) - 1  # each frame's latest found frame; before the first, the first
    nearest = steady[np.clip(at_found, 0, None)]
    corners = np.rint(nearest - side / 2).astype(int)
    return FaceBoxes(side, corners, found)


def cut_square(image: np.ndarray, left: int, top: int, side: int, size: int) -> np.ndarray:
    """The ``side`` x ``side`` square at (left, top) of an HxWx3 picture, its outside continuing the edge pixels, resized to ``size``."""
    height, width = image.shape[:2]
    pad = ((max(0, -top), max(0, top + side - height)), (max(0, -left), max(0, left + side - width)), (0, 0))
    padded = np.pad(image, pad, mode="edge")
    square = padded[top + pad[0][0] : top + pad[0][0] + side, left + pad[1][0] : left + pad[1][0] + side]
    return np.asarray(Image.fromarray(np.ascontiguousarray(square)).resize((size, size), Image.LANCZOS))


def pose_in_square(frame_pose: FramePose, left: int, top: int, side: int, size: int) -> FramePose:
    """The keypoints moved into the square at (left, top) enlarged to ``size``: the crop's pose (the renderer clips the rest)."""
    scale = np.float32(size / side)
    return frame_pose.moved(scale, -np.array([left, top], dtype=np.float32) * scale, size, size)


def feathered_mask(side: int) -> np.ndarray:
    """``side`` x ``side`` weights: 1 inside, falling linearly to 0 at the box's edge over ``FEATHER`` of its side."""
    feather = max(1.0, FEATHER * side)
    distance = np.minimum(np.arange(side) + 0.5, side - np.arange(side) - 0.5)
    ramp = np.clip((distance - 0.5) / feather, 0.0, 1.0)
    return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)


def blend_face(frame: np.ndarray, face: np.ndarray, left: int, top: int, side: int) -> np.ndarray:
    """``frame`` with the redrawn ``face`` (any square size) scaled to the box and blended in with the feathered mask;
    every pixel the mask leaves at 0, inside the box or out, is the frame's own."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + side, width), min(top + side, height)
    blended = frame.copy()
    if x0 >= x1 or y0 >= y1:
        return blended
    scaled = np.asarray(Image.fromarray(face).resize((side, side), Image.LANCZOS), dtype=np.float32)
    mask = feathered_mask(side)[y0 - top : y1 - top, x0 - left : x1 - left, None]
    region = frame[y0:y1, x0:x1].astype(np.float32)
    mixed = np.rint(mask * scaled[y0 - top : y1 - top, x0 - left : x1 - left] + (1 - mask) * region)
    blended[y0:y1, x0:x1] = np.where(mask > 0, np.clip(mixed, 0, 255), region).astype(np.uint8)
    return blended
