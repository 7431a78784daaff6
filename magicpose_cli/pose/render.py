"""Drawing OpenPose control maps in the look the ControlNet 1.1 openpose model (and MagicPose's
pose ControlNet) was trained on.

The conventions are those of the ControlNet 1.1 annotator (as packaged in controlnet_aux's
``open_pose.util``): 17 limbs as filled ellipses in 60 % of their colour, joints as discs in
the full colour, hand bones coloured around the HSV wheel with blue joints, face landmarks as
small white dots, all on black. Those widths are in pixels of a 512-pixel map; at other sizes
they scale with the shorter side so a map looks the same once resized to the model's input.
"""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

from magicpose_cli.pose.keypoints import FramePose, PersonPose

# OpenPose body limbs as (from, to) body-point indices, in the annotator's drawing order.
BODY_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
# One RGB colour per limb (and per joint, by body-point index): a walk around the hue circle.
BODY_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
LIMB_COLOR_FACTOR = 0.6
HAND_EDGES = tuple(
    (0 if bone == 0 else 4 * finger + bone, 4 * finger + bone + 1) for finger in range(5) for bone in range(4)
)
HAND_EDGE_COLORS = tuple(
    tuple(int(round(255 * channel)) for channel in colorsys.hsv_to_rgb(index / len(HAND_EDGES), 1.0, 1.0))
    for index in range(len(HAND_EDGES))
)
HAND_POINT_COLOR = (0, 0, 255)
FACE_POINT_COLOR = (255, 255, 255)

REFERENCE_MAP_SIZE = 512
BODY_STICK_WIDTH = 4
BODY_JOINT_RADIUS = 4
HAND_LINE_WIDTH = 2
HAND_POINT_RADIUS = 4
FACE_POINT_RADIUS = 3


def _scaled(size: int, scale: float) -> int:
    return max(1, int(round(size * scale)))


def render_pose(
    frame_pose: FramePose,
    width: int | None = None,
    height: int | None = None,
    face: bool = True,
    hands: bool = True,
    body: bool = True,
) -> np.ndarray:
    """The control map of every person in ``frame_pose`` as an ``(H, W, 3)`` uint8 RGB image.

    Keypoints are scaled from the pose's canvas to ``width`` x ``height`` (default: the canvas size).
    """
    width = int(width or frame_pose.width)
    height = int(height or frame_pose.height)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    factor = np.array([width / frame_pose.width, height / frame_pose.height], dtype=np.float64)
    scale = min(width, height) / REFERENCE_MAP_SIZE
    for person in frame_pose.people:
        draw_person(canvas, person, factor, scale, face=face, hands=hands, body=body)
    return canvas


def draw_person(
    canvas: np.ndarray,
    person: PersonPose,
    factor: np.ndarray,
    scale: float,
    face: bool = True,
    hands: bool = True,
    body: bool = True,
) -> None:
    """Draw one person on ``canvas`` in place (body first, then hands, then face, as the annotator)."""
    if body:
        _draw_body(canvas, _to_canvas(person.body, factor), scale)
    if hands:
        for hand in (person.left_hand, person.right_hand):
            _draw_hand(canvas, _to_canvas(hand, factor), scale)
    if face:
        _draw_face(canvas, _to_canvas(person.face, factor), scale)


def _to_canvas(points: np.ndarray, factor: np.ndarray) -> np.ndarray:
    scaled = points.astype(np.float64).copy()
    scaled[:, :2] *= factor
    return scaled


def _draw_body(canvas: np.ndarray, points: np.ndarray, scale: float) -> None:
    stick_width = _scaled(BODY_STICK_WIDTH, scale)
    present = points[:, 2] > 0
    for (start, end), color in zip(BODY_LIMBS, BODY_COLORS):
        if not (present[start] and present[end]):
            continue
        (x0, y0), (x1, y1) = points[start, :2], points[end, :2]
        length = math.hypot(x1 - x0, y1 - y0)
        angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
        polygon = cv2.ellipse2Poly(
            (int((x0 + x1) / 2), int((y0 + y1) / 2)), (int(length / 2), stick_width), int(angle), 0, 360, 1
        )
        cv2.fillConvexPoly(canvas, polygon, [int(channel * LIMB_COLOR_FACTOR) for channel in color])
    radius = _scaled(BODY_JOINT_RADIUS, scale)
    for index, color in enumerate(BODY_COLORS):
        if present[index]:
            cv2.circle(canvas, (int(points[index, 0]), int(points[index, 1])), radius, color, thickness=-1)


def _draw_hand(canvas: np.ndarray, points: np.ndarray, scale: float) -> None:
    present = points[:, 2] > 0
    if not present.any():
        return
    line_width = _scaled(HAND_LINE_WIDTH, scale)
    for (start, end), color in zip(HAND_EDGES, HAND_EDGE_COLORS):
        if present[start] and present[end]:
            cv2.line(
                canvas,
                (int(points[start, 0]), int(points[start, 1])),
                (int(points[end, 0]), int(points[end, 1])),
                color,
                thickness=line_width,
            )
    radius = _scaled(HAND_POINT_RADIUS, scale)
    for x, y, _ in points[present]:
        cv2.circle(canvas, (int(x), int(y)), radius, HAND_POINT_COLOR, thickness=-1)


def _draw_face(canvas: np.ndarray, points: np.ndarray, scale: float) -> None:
    radius = _scaled(FACE_POINT_RADIUS, scale)
    for x, y, confidence in points:
        if confidence > 0:
            cv2.circle(canvas, (int(x), int(y)), radius, FACE_POINT_COLOR, thickness=-1)
