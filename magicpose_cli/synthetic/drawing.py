"""Drawing a synthetic person from their keypoints and identity alone, so the drawing sits where the keypoints say."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from magicpose_cli.pose.keypoints import BODY, PersonPose
from magicpose_cli.synthetic.identity import RGB, Identity, sleeve_colour
from magicpose_cli.synthetic.motion import rotate

EYE_WHITE = (250, 250, 250)
MOUTH_INSIDE = (60, 15, 25)

# cv2 draws with sub-pixel precision when coordinates are fixed-point with this many fraction bits.
_SHIFT_BITS = 4
_SHIFT = 1 << _SHIFT_BITS


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * _SHIFT).astype(np.int32).reshape(-1, 1, 2)


def _polygon(canvas, points, colour) -> None:
    cv2.fillPoly(canvas, [_fixed(points)], colour, cv2.LINE_AA, _SHIFT_BITS)


def _capsule(canvas, start, end, radius, colour) -> None:
    """A thick segment with round ends (a limb)."""
    thickness = max(1, int(round(2 * radius)))
    start, end = _fixed(start).reshape(2), _fixed(end).reshape(2)
    cv2.line(canvas, tuple(int(v) for v in start), tuple(int(v) for v in end), colour, thickness, cv2.LINE_AA, _SHIFT_BITS)


def _disc(canvas, centre, radius, colour) -> None:
    cv2.circle(canvas, tuple(int(v) for v in _fixed(centre).reshape(2)), max(1, int(round(radius * _SHIFT))), colour, -1, cv2.LINE_AA, _SHIFT_BITS)


def _polyline(canvas, points, colour, thickness) -> None:
    cv2.polylines(canvas, [_fixed(points)], False, colour, max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT_BITS)


def shade(colour: RGB, factor: float) -> RGB:
    return tuple(int(np.clip(channel * factor, 0, 255)) for channel in colour)


def draw_background(identity: Identity, width: int, height: int) -> np.ndarray:
    """The empty scene: a vertical gradient wall and a floor below the identity's ground line."""
    rows = np.linspace(0.0, 1.0, height)[:, None]
    wall = (1 - rows) * np.array(identity.background_top) + rows * np.array(identity.background_bottom)
    floor_start = int(round(identity.ground * height - 0.02 * identity.stature * height))
    wall[floor_start:] = identity.floor
    column = wall.round().astype(np.uint8)[:, None, :]
    return np.ascontiguousarray(np.broadcast_to(column, (height, width, 3)))


def _draw_shirt(canvas, identity: Identity, polygon: np.ndarray, neck: np.ndarray, axis: np.ndarray, torso_px: float) -> None:
    """The torso polygon in the shirt's colours; stripes and halves follow the torso's own axes."""
    if identity.shirt_pattern == "solid":
        _polygon(canvas, polygon, identity.shirt)
        return
    height, width = canvas.shape[:2]
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    cv2.fillPoly(mask, [_fixed(polygon - (x0, y0))], 255, cv2.LINE_AA, _SHIFT_BITS)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    offsets = np.stack([xs - neck[0], ys - neck[1]], axis=-1)
    if identity.shirt_pattern == "stripes":
        along = offsets @ axis / max(torso_px * identity.stripe_period, 1.0)
        second = (np.floor(along * 2) % 2).astype(bool)
    else:
        across = np.array([-axis[1], axis[0]])
        second = offsets @ across > 0
    colours = np.where(second[..., None], np.array(identity.shirt_second), np.array(identity.shirt))
    alpha = mask[..., None].astype(np.float32) / 255.0
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = np.round(region * (1 - alpha) + colours * alpha).astype(np.uint8)


def _head_outline(centre: np.ndarray, right: np.ndarray, up: np.ndarray, radius: float, face: np.ndarray) -> np.ndarray:
    """Skull arc over the top joined to the jaw line from the face landmarks."""
    angles = np.linspace(0.0, math.pi, 15)
    skull = centre + radius * (np.cos(angles)[:, None] * right * 1.0 + np.sin(angles)[:, None] * up * 1.02)
    return np.concatenate([face[0:17], skull[1:-1]], axis=0)


def _draw_hair(canvas, identity: Identity, centre, right, up, radius, front: bool) -> None:
    def at(x, y):
        return centre + radius * (np.asarray(x)[..., None] * right + np.asarray(y)[..., None] * up)

    hair = identity.hair
    if not front:
        if identity.hair_style == "long":
            _polygon(canvas, at(np.array([-1.08, -1.15, -0.95, 0.95, 1.15, 1.08]), np.array([0.3, -1.1, -1.5, -1.5, -1.1, 0.3])), hair)
            _disc(canvas, centre, radius * 1.08, hair)
        return
    angles = np.linspace(0.0, math.pi, 13)
    cap = at(1.06 * np.cos(angles), 1.08 * np.sin(angles) + 0.02)
    fringe = at(np.array([-0.98, -0.6, 0.0, 0.6, 0.98]), np.array([0.1, 0.46, 0.55, 0.46, 0.1]))
    _polygon(canvas, np.concatenate([cap, fringe]), hair)
    if identity.hair_style == "bun":
        _disc(canvas, at(0.0, 1.15), radius * 0.38, hair)
    elif identity.hair_style == "curly":
        for angle in np.linspace(0.15, math.pi - 0.15, 7):
            _disc(canvas, at(0.98 * math.cos(angle), 0.98 * math.sin(angle)), radius * 0.3, hair)


def _draw_face(canvas, identity: Identity, face: np.ndarray, radius: float) -> None:
    """Eyes, pupils, brows, nose and mouth drawn from the landmarks, so expressions show."""
    line = max(1.0, 0.09 * radius)
    nose = shade(identity.skin, 0.78)
    _polyline(canvas, face[27:31], nose, line * 0.8)
    _polyline(canvas, face[31:36], nose, line * 0.8)
    dark = (30, 22, 20)
    for eye, pupil in ((face[36:42], face[68]), (face[42:48], face[69])):
        opening = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
        if opening > 0.1 * radius:
            _polygon(canvas, eye, EYE_WHITE)
            _disc(canvas, pupil, max(0.7, 0.07 * radius), dark)
        else:
            _polyline(canvas, eye[[0, 5, 4, 3]], dark, line)
    brow = shade(identity.hair, 0.7)
    _polyline(canvas, face[17:22], brow, line * 1.2)
    _polyline(canvas, face[22:27], brow, line * 1.2)
    lips = tuple(int(round((skin + red) / 2)) for skin, red in zip(identity.skin, (200, 60, 70)))
    _polygon(canvas, face[48:60], lips)
    inner_height = np.linalg.norm(face[62] - face[66])
    if inner_height > 0.05 * radius:
        _polygon(canvas, face[60:68], MOUTH_INSIDE)


@dataclass
class _Figure:
    """Where a drawn person's parts are, in pixels, derived from the keypoints alone."""

    point: dict[str, np.ndarray]
    face: np.ndarray
    hands: dict[str, np.ndarray]
    unit: float  # the person's standing height
    arm_radius: float
    leg_radius: float
    head_radius: float
    head_centre: np.ndarray
    head_right: np.ndarray
    head_up: np.ndarray
    mid_hip: np.ndarray
    torso_vector: np.ndarray  # mid-hip to neck
    torso_px: float
    torso_up: np.ndarray
    torso_across: np.ndarray

    @classmethod
    def measure(cls, identity: Identity, person_pose: PersonPose, height: int) -> "_Figure":
        unit = identity.stature * height
        body = person_pose.body[:, :2].astype(np.float64)
        point = {name: body[index] for name, index in BODY.items()}
        radius = identity.head_radius * unit
        # Head frame from the ears: pose_at puts their midpoint 0.08 head radii above the head centre.
        ear_axis = point["left_ear"] - point["right_ear"]
        right = ear_axis / max(np.linalg.norm(ear_axis), 1e-6)
        up = np.array([right[1], -right[0]])
        mid_hip = (point["right_hip"] + point["left_hip"]) / 2
        torso_vector = point["neck"] - mid_hip
        torso_px = max(np.linalg.norm(torso_vector), 1e-6)
        torso_up = torso_vector / torso_px
        return cls(
            point=point,
            face=person_pose.face[:, :2].astype(np.float64),
            hands={side: hand[:, :2].astype(np.float64) for side, hand in (("right", person_pose.right_hand), ("left", person_pose.left_hand))},
            unit=unit, arm_radius=identity.arm_radius * unit, leg_radius=identity.leg_radius * unit,
            head_radius=radius, head_centre=(point["left_ear"] + point["right_ear"]) / 2 - 0.08 * radius * up,
            head_right=right, head_up=up,
            mid_hip=mid_hip, torso_vector=torso_vector, torso_px=torso_px, torso_up=torso_up,
            torso_across=np.array([-torso_up[1], torso_up[0]]),
        )  # fmt: skip


def _draw_legs(canvas, identity: Identity, figure: _Figure) -> None:
    """Trousers or shorts over skin, then shoes pointing outwards."""
    point, leg_r = figure.point, figure.leg_radius
    for side in ("right", "left"):
        hip, knee, ankle = point[f"{side}_hip"], point[f"{side}_knee"], point[f"{side}_ankle"]
        if identity.legwear == "shorts":
            _capsule(canvas, hip, knee, leg_r * 0.85, identity.skin)
            _capsule(canvas, knee, ankle, leg_r * 0.8, identity.skin)
            _capsule(canvas, hip, hip + 0.6 * (knee - hip), leg_r * 1.1, identity.trousers)
        else:
            _capsule(canvas, hip, knee, leg_r, identity.trousers)
            _capsule(canvas, knee, ankle, leg_r * 0.92, identity.trousers)
    for side in ("right", "left"):
        knee, ankle = point[f"{side}_knee"], point[f"{side}_ankle"]
        shin = ankle - knee
        outward = -1.0 if side == "right" else 1.0
        toe = ankle + figure.unit * 0.06 * (rotate(np.array([0.0, 1.0]), -outward * 1.1))
        _capsule(canvas, ankle + 0.15 * leg_r * shin / max(np.linalg.norm(shin), 1e-6), toe, leg_r * 0.75, identity.shoes)


def _draw_torso(canvas, identity: Identity, figure: _Figure) -> None:
    """Neck, shirt torso, then the trousers' seat so the hips are always in trouser colour."""
    point, arm_r, leg_r = figure.point, figure.arm_radius, figure.leg_radius
    up, across, radius = figure.torso_up, figure.torso_across, figure.head_radius
    _capsule(canvas, point["neck"], figure.head_centre, radius * 0.36, identity.skin)
    shoulder_out = arm_r * 0.9
    waist = figure.mid_hip + 0.18 * figure.torso_vector
    waist_half = np.linalg.norm(point["left_hip"] - point["right_hip"]) / 2 + leg_r * 0.6
    torso = np.array(
        [
            point["right_shoulder"] - shoulder_out * across + 0.4 * arm_r * up,
            point["right_shoulder"] + 0.5 * arm_r * up,
            point["neck"] - 0.35 * radius * across + 0.25 * arm_r * up,
            point["neck"] + 0.35 * radius * across + 0.25 * arm_r * up,
            point["left_shoulder"] + 0.5 * arm_r * up,
            point["left_shoulder"] + shoulder_out * across + 0.4 * arm_r * up,
            waist + waist_half * across,
            waist - waist_half * across,
        ]
    )
    _draw_shirt(canvas, identity, torso, point["neck"], up, figure.torso_px)
    seat = np.array(
        [
            waist - 0.02 * figure.torso_vector - waist_half * across,
            waist - 0.02 * figure.torso_vector + waist_half * across,
            point["left_hip"] + leg_r * across,
            point["left_hip"] - leg_r * 0.8 * up,
            figure.mid_hip - leg_r * 1.2 * up,
            point["right_hip"] - leg_r * 0.8 * up,
            point["right_hip"] - leg_r * across,
        ]
    )
    _polygon(canvas, seat, identity.trousers)


def _draw_head(canvas, identity: Identity, figure: _Figure) -> None:
    """Ears, skull + jaw in skin, hair on top, then the features."""
    centre, right, up, radius = figure.head_centre, figure.head_right, figure.head_up, figure.head_radius
    for name in ("right_ear", "left_ear"):
        _disc(canvas, figure.point[name], radius * 0.2, shade(identity.skin, 0.92))
    _polygon(canvas, _head_outline(centre, right, up, radius, figure.face), identity.skin)
    _draw_hair(canvas, identity, centre, right, up, radius, front=True)
    _draw_face(canvas, identity, figure.face, radius)


def _draw_arms(canvas, identity: Identity, figure: _Figure) -> None:
    """Arms in front of the body: skin underneath, sleeves over it, then the hands."""
    point, arm_r = figure.point, figure.arm_radius
    for side in ("right", "left"):
        shoulder, elbow, wrist = point[f"{side}_shoulder"], point[f"{side}_elbow"], point[f"{side}_wrist"]
        _capsule(canvas, shoulder, elbow, arm_r, identity.skin)
        _capsule(canvas, elbow, wrist, arm_r * 0.9, identity.skin)
        sleeve = sleeve_colour(identity, side)
        if identity.sleeves == "long":
            _capsule(canvas, shoulder, elbow, arm_r * 1.1, sleeve)
            _capsule(canvas, elbow, elbow + 0.8 * (wrist - elbow), arm_r, sleeve)
        else:
            _capsule(canvas, shoulder, shoulder + 0.55 * (elbow - shoulder), arm_r * 1.15, sleeve)
        hand = figure.hands[side]
        _disc(canvas, wrist, arm_r * 0.85, identity.skin)
        _polygon(canvas, hand[[0, 1, 5, 9, 13, 17]], identity.skin)
        finger_width = max(1.0, 0.1 * identity.hand_length * figure.unit)
        for finger in range(5):
            _polyline(canvas, hand[[1 + 4 * finger, 2 + 4 * finger, 3 + 4 * finger, 4 + 4 * finger]], identity.skin, finger_width)


def draw_person(identity: Identity, person_pose: PersonPose, width: int, height: int) -> np.ndarray:
    """Draw ``identity`` in the pose given by ``person_pose`` (as made by :func:`pose_at`).

    Uses only the keypoints and the identity, so the keypoints always match the drawing:
    clothing covers the joints it should, hands and face sit on their landmarks.
    Returns an RGB ``height x width x 3`` uint8 image.
    """
    canvas = draw_background(identity, width, height)
    figure = _Figure.measure(identity, person_pose, height)
    _draw_hair(canvas, identity, figure.head_centre, figure.head_right, figure.head_up, figure.head_radius, front=False)
    _draw_legs(canvas, identity, figure)
    _draw_torso(canvas, identity, figure)
    _draw_head(canvas, identity, figure)
    _draw_arms(canvas, identity, figure)
    return canvas
