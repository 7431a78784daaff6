"""Procedural 2D people drawn from an OpenPose skeleton, with exact keypoints for every frame.

Real dance videos with trustworthy keypoints and ground truth for "person A doing person B's
motion" do not exist, so the demo model is trained and evaluated on people drawn here.
A person is an :class:`Identity` (colours, clothing, hair, background, body proportions) and a
:class:`Motion` (per-frame joint angles and facial expression channels, free of body size).
Forward kinematics turns the two into OpenPose keypoints (18 body, 2 x 21 hand, 70 face points),
and :func:`draw_person` draws the person from those keypoints alone plus the identity, so what
is drawn always sits where the keypoints say. Driving one identity's proportions with another
person's motion gives exact retargeting ground truth (:func:`sample_pair`).

Everything is plain numpy + OpenCV and deterministic per seed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from rich.progress import Progress

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.keypoints import (
    BODY,
    NUM_BODY_POINTS,
    NUM_FACE_POINTS,
    NUM_HAND_POINTS,
    FramePose,
    PersonPose,
)

RGB = tuple[int, int, int]

HAIR_STYLES = ("short", "long", "bun", "curly")
SHIRT_PATTERNS = ("solid", "stripes", "two_tone")
SLEEVES = ("short", "long")
LEGWEAR = ("trousers", "shorts")
EYE_WHITE = (250, 250, 250)
MOUTH_INSIDE = (60, 15, 25)

# cv2 draws with sub-pixel precision when coordinates are fixed-point with this many fraction bits.
_SHIFT_BITS = 4
_SHIFT = 1 << _SHIFT_BITS
_MIN_SIZE = 32

_SKIN_TONES = np.array(
    [(255, 224, 196), (241, 194, 155), (224, 172, 130), (198, 134, 90), (160, 100, 62), (110, 68, 42), (80, 50, 32)],
    dtype=np.float64,
)
_HAIR_COLOURS = (
    (25, 20, 18), (60, 38, 24), (110, 70, 35), (200, 160, 90), (170, 70, 30), (150, 150, 150),
    (40, 60, 160), (200, 60, 140),
)  # fmt: skip


# --------------------------------------------------------------------------------------- identity


@dataclass
class Identity:
    """What a person looks like: colours and clothing, the scene, and body proportions.

    Lengths are fractions of the person's standing height (ankle to crown); ``stature`` is that
    height as a fraction of the picture height and ``ground`` the floor line (fraction of height).
    """

    skin: RGB
    hair: RGB
    hair_style: str
    shirt: RGB
    shirt_second: RGB
    shirt_pattern: str
    stripe_period: float
    sleeves: str
    trousers: RGB
    legwear: str
    shoes: RGB
    background_top: RGB
    background_bottom: RGB
    floor: RGB
    ground: float
    stature: float
    head_radius: float
    neck_length: float
    torso_length: float
    shoulder_half_width: float
    hip_half_width: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    hand_length: float
    arm_radius: float
    leg_radius: float

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Identity":
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})


def _colour(rng: np.random.Generator) -> RGB:
    return tuple(int(value) for value in rng.integers(0, 256, size=3))


def _colour_distance(colour: RGB, others: list[RGB]) -> float:
    return min((float(np.linalg.norm(np.subtract(colour, other))) for other in others), default=1e9)


def _blend(first: RGB, second: RGB, steps: int = 5) -> list[RGB]:
    """Colours along the straight line from ``first`` to ``second`` (a gradient's shades)."""
    return [tuple(int(round(a + (b - a) * t)) for a, b in zip(first, second)) for t in np.linspace(0, 1, steps)]


def _distinct_colour(rng: np.random.Generator, avoid: list[RGB], min_distance: float = 110.0) -> RGB:
    """A colour far (in RGB) from every colour in ``avoid``, so parts stay legible against each other."""
    best, best_distance = None, -1.0
    for _ in range(64):
        candidate = _colour(rng)
        distance = _colour_distance(candidate, avoid)
        if distance >= min_distance:
            return candidate
        if distance > best_distance:
            best, best_distance = candidate, distance
    return best


def sample_identity(rng: np.random.Generator) -> Identity:
    """A random person: skin, hair, clothes, background and proportions, all from ``rng``."""
    skin_position = rng.uniform(0, len(_SKIN_TONES) - 1)
    low = int(skin_position)
    high = min(low + 1, len(_SKIN_TONES) - 1)
    blend = skin_position - low
    skin = tuple(int(v) for v in np.round((1 - blend) * _SKIN_TONES[low] + blend * _SKIN_TONES[high]))
    hair = _HAIR_COLOURS[int(rng.integers(len(_HAIR_COLOURS)))]
    background_top = _distinct_colour(rng, [skin, hair], 100.0)
    # Every colour of the wall's gradient, not just its ends, must stand apart from the skin.
    background_bottom = background_top
    for _ in range(64):
        candidate = _distinct_colour(rng, [skin, hair], 100.0)
        if min(_colour_distance(colour, [skin, hair]) for colour in _blend(background_top, candidate)) >= 80.0:
            background_bottom = candidate
            break
    floor = _distinct_colour(rng, [background_bottom], 70.0)
    scene = [*_blend(background_top, background_bottom), floor, skin]
    shirt = _distinct_colour(rng, scene)
    shirt_second = _distinct_colour(rng, [shirt, skin], 120.0)
    trousers = _distinct_colour(rng, [*scene, shirt, shirt_second])
    shoes = _distinct_colour(rng, [trousers, floor, skin], 90.0)

    # Relative sizes (cartoon-like big head, so faces stay legible at 64-128 px), normalised so
    # that thigh + shin + torso + neck + head diameter is exactly one standing height.
    head_radius = rng.uniform(0.085, 0.105)
    neck_length = rng.uniform(0.035, 0.055)
    torso_length = rng.uniform(0.27, 0.32)
    thigh = rng.uniform(0.19, 0.23)
    shin = rng.uniform(0.18, 0.22)
    total = thigh + shin + torso_length + neck_length + 2 * head_radius
    build = rng.uniform(0.85, 1.2)
    return Identity(
        skin=skin,
        hair=hair,
        hair_style=str(rng.choice(HAIR_STYLES)),
        shirt=shirt,
        shirt_second=shirt_second,
        shirt_pattern=str(rng.choice(SHIRT_PATTERNS)),
        stripe_period=float(rng.uniform(0.2, 0.35)),
        sleeves=str(rng.choice(SLEEVES)),
        trousers=trousers,
        legwear=str(rng.choice(LEGWEAR, p=[0.7, 0.3])),
        shoes=shoes,
        background_top=background_top,
        background_bottom=background_bottom,
        floor=floor,
        ground=float(rng.uniform(0.9, 0.95)),
        stature=float(rng.uniform(0.72, 0.82)),
        head_radius=float(head_radius / total),
        neck_length=float(neck_length / total),
        torso_length=float(torso_length / total),
        shoulder_half_width=float(rng.uniform(0.085, 0.115) * build),
        hip_half_width=float(rng.uniform(0.05, 0.07) * build),
        upper_arm=float(rng.uniform(0.14, 0.17)),
        forearm=float(rng.uniform(0.12, 0.15)),
        thigh=float(thigh / total),
        shin=float(shin / total),
        hand_length=float(rng.uniform(0.065, 0.08)),
        arm_radius=float(rng.uniform(0.026, 0.034) * build),
        leg_radius=float(rng.uniform(0.036, 0.046) * build),
    )


# ----------------------------------------------------------------------------------------- motion

MOTION_CHANNELS = (
    "root_x", "bounce", "lean", "head_roll", "head_yaw", "head_pitch",
    "right_arm", "right_elbow", "right_wrist", "right_curl",
    "left_arm", "left_elbow", "left_wrist", "left_curl",
    "right_thigh", "right_knee", "left_thigh", "left_knee",
    "mouth_open", "smile", "brow_raise", "blink", "gaze_x", "gaze_y",
)  # fmt: skip


@dataclass
class Motion:
    """Per-frame joint angles (radians), placement and expression channels of one performance.

    Independent of body size: the same motion drives any identity (that is how retargeting
    ground truth is made). ``channels[name]`` is a float array of ``num_frames`` values.
    Arm angles are measured from hanging down (0) through sideways (pi/2) to up (pi); elbow and
    knee angles bend the lower limb relative to the upper one; ``root_x`` is a horizontal offset
    as a fraction of the picture width; expressions are in [0, 1] (smile in [-0.5, 1]).
    """

    channels: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(next(iter(self.channels.values())))

    def to_json(self) -> dict:
        return {name: values.round(5).tolist() for name, values in self.channels.items()}

    @classmethod
    def from_json(cls, data: dict) -> "Motion":
        return cls({name: np.asarray(values, dtype=np.float64) for name, values in data.items()})


def _wave(rng, t, frequency, amplitude, harmonic_amplitude=0.0, phase=None):
    """A few low-frequency sinusoids on the shared beat: smooth and periodic-looking like dance."""
    phase = rng.uniform(0, 2 * math.pi) if phase is None else phase
    return amplitude * np.sin(2 * math.pi * frequency * t + phase) + harmonic_amplitude * np.sin(
        4 * math.pi * frequency * t + 2 * phase + rng.uniform(-0.5, 0.5)
    )


def sample_motion(rng: np.random.Generator, num_frames: int, speed: float = 1.0) -> Motion:
    """A smooth dance-like performance: limbs swing on a shared beat, the body sways, the face moves.

    ``speed`` scales every frequency (1.0: one beat every 28 to 56 frames).
    """
    if num_frames < 1:
        raise MagicPoseError(f"a motion needs at least one frame, got {num_frames}")
    t = np.arange(num_frames, dtype=np.float64) + rng.uniform(0, 1000)
    beat = speed / rng.uniform(28, 56)
    slow = beat / rng.uniform(2.0, 4.0)
    channels: dict[str, np.ndarray] = {}

    # Arms: mirrored, alternating or independent swings around a random base pose.
    arm_style = rng.choice(["mirror", "alternate", "independent"])
    arm_phase = rng.uniform(0, 2 * math.pi)
    for side in ("right", "left"):
        if arm_style == "mirror":
            phase = arm_phase
        elif arm_style == "alternate":
            phase = arm_phase + (math.pi if side == "left" else 0.0)
        else:
            phase = rng.uniform(0, 2 * math.pi)
        arm = rng.uniform(0.15, 1.7) + _wave(rng, t, beat, rng.uniform(0.2, 0.8), rng.uniform(0, 0.25), phase)
        arm += _wave(rng, t, slow, rng.uniform(0, 0.4))
        channels[f"{side}_arm"] = np.clip(arm, 0.0, 2.9)
        elbow = rng.uniform(-1.5, 0.3) + _wave(rng, t, beat, rng.uniform(0.1, 0.7), 0.0, phase + rng.uniform(-1, 1))
        channels[f"{side}_elbow"] = np.clip(elbow, -2.4, 0.6)
        channels[f"{side}_wrist"] = rng.uniform(-0.4, 0.4) + _wave(rng, t, beat, rng.uniform(0, 0.35))
        curl = rng.uniform(0, 0.6) + _wave(rng, t, slow, rng.uniform(0, 0.4))
        channels[f"{side}_curl"] = np.clip(curl, 0.0, 1.0)

    # Legs: steps alternate (half a beat apart) or bounce together; knees bend out like a squat.
    leg_phase = rng.uniform(0, 2 * math.pi)
    together = rng.random() < 0.4
    for side in ("right", "left"):
        phase = leg_phase + (0.0 if together or side == "right" else math.pi)
        thigh = rng.uniform(0.03, 0.25) + _wave(rng, t, beat, rng.uniform(0, 0.25), 0.0, phase)
        channels[f"{side}_thigh"] = np.clip(thigh, -0.15, 1.1)
        knee = -rng.uniform(0, 0.25) + _wave(rng, t, beat, rng.uniform(0, 0.3), 0.0, phase + 0.5)
        channels[f"{side}_knee"] = np.clip(knee, -1.0, 0.05)

    channels["root_x"] = rng.uniform(-0.08, 0.08) + _wave(rng, t, slow, rng.uniform(0, 0.1)) + _wave(
        rng, t, beat, rng.uniform(0, 0.02)
    )
    channels["bounce"] = _wave(rng, t, 2 * beat, rng.uniform(0, 0.015))
    channels["lean"] = _wave(rng, t, beat, rng.uniform(0, 0.12)) + _wave(rng, t, slow, rng.uniform(0, 0.06))
    channels["head_roll"] = _wave(rng, t, beat, rng.uniform(0, 0.2))
    channels["head_yaw"] = np.clip(rng.uniform(-0.2, 0.2) + _wave(rng, t, slow, rng.uniform(0, 0.3)), -0.45, 0.45)
    channels["head_pitch"] = _wave(rng, t, beat, rng.uniform(0, 0.12))

    # Expressions drift on their own slower clocks; blinks are short bumps at random times.
    def expression(low, high):
        frequency = speed / rng.uniform(20, 60)
        centre, spread = rng.uniform(low, high), rng.uniform(0.2, 0.6) * (high - low)
        return np.clip(centre + _wave(rng, t, frequency, spread), low, high)

    channels["mouth_open"] = expression(0.0, 1.0)
    channels["smile"] = expression(-0.5, 1.0)
    channels["brow_raise"] = expression(0.0, 1.0)
    frames = np.arange(num_frames, dtype=np.float64)
    blink = np.zeros(num_frames)
    moment = rng.uniform(-10, 30)
    while moment < num_frames + 5:
        blink = np.maximum(blink, np.exp(-(((frames - moment) / (1.3 / max(speed, 0.1))) ** 2)))
        moment += rng.uniform(25, 70) / max(speed, 0.1)
    channels["blink"] = blink
    channels["gaze_x"] = expression(-0.6, 0.6)
    channels["gaze_y"] = expression(-0.3, 0.3)
    return Motion({name: channels[name].astype(np.float64) for name in MOTION_CHANNELS})


# ------------------------------------------------------------------------------------- kinematics


def _face_template() -> tuple[np.ndarray, np.ndarray]:
    """The neutral 70-point face (iBUG 68 + pupils) in head-radius units, head centre at the origin.

    Returns the (70, 2) points (x to the picture's right, y down) and how far each sticks out of
    the head sphere (nose points protrude, so turning the head moves them more).
    """
    points = np.zeros((NUM_FACE_POINTS, 2))
    protrusion = np.zeros(NUM_FACE_POINTS)
    angles = np.linspace(0, math.pi, 17)
    points[0:17] = np.stack([-0.86 * np.cos(angles), -0.05 + 0.97 * np.sin(angles)], axis=1)
    for start, x0, x1 in ((17, -0.6, -0.14), (22, 0.14, 0.6)):
        xs = np.linspace(x0, x1, 5)
        arch = np.sin(math.pi * (xs - x0) / (x1 - x0))
        points[start : start + 5] = np.stack([xs, -0.36 - 0.07 * arch], axis=1)
    points[27:31] = [(0, -0.17), (0, -0.05), (0, 0.07), (0, 0.19)]
    protrusion[27:31] = [0.05, 0.1, 0.16, 0.24]
    points[31:36] = [(-0.13, 0.27), (-0.07, 0.3), (0, 0.31), (0.07, 0.3), (0.13, 0.27)]
    protrusion[31:36] = [0.08, 0.11, 0.13, 0.11, 0.08]
    eye_shape = np.array([(-0.17, 0), (-0.07, -0.11), (0.07, -0.11), (0.17, 0), (0.07, 0.1), (-0.07, 0.1)])
    points[36:42] = eye_shape + (-0.37, -0.14)
    points[42:48] = eye_shape + (0.37, -0.14)
    points[48:60] = [
        (-0.28, 0), (-0.18, -0.06), (-0.08, -0.09), (0, -0.07), (0.08, -0.09), (0.18, -0.06),
        (0.28, 0), (0.18, 0.08), (0.08, 0.11), (0, 0.115), (-0.08, 0.11), (-0.18, 0.08),
    ]  # fmt: skip
    points[60:68] = [(-0.22, 0), (-0.08, -0.025), (0, -0.02), (0.08, -0.025), (0.22, 0), (0.08, 0.025), (0, 0.03), (-0.08, 0.025)]
    points[48:68, 1] += 0.52
    points[68] = (-0.37, -0.14)
    points[69] = (0.37, -0.14)
    return points, protrusion


_FACE_TEMPLATE, _FACE_PROTRUSION = _face_template()
_LOWER_LIP = np.array([55, 56, 57, 58, 59, 65, 66, 67])
_MOUTH = np.arange(48, 68)
_MOUTH_CORNERS = np.array([48, 54, 60, 64])
_HEAD_SPHERE = 1.05


def _face_points(channels: dict[str, float]) -> np.ndarray:
    """The 70 face points (head-radius units, head-centred, before roll) for one expression."""
    points = _FACE_TEMPLATE.copy()
    opening = channels["mouth_open"]
    taper = 1.0 - 0.6 * (points[_LOWER_LIP, 0] / 0.28) ** 2
    points[_LOWER_LIP, 1] += 0.22 * opening * taper
    points[4:13, 1] += 0.12 * opening * np.sin(np.linspace(0.3, math.pi - 0.3, 9))
    smile = channels["smile"]
    points[_MOUTH, 1] -= 0.06 * smile * (points[_MOUTH, 0] / 0.28) ** 2
    points[_MOUTH_CORNERS, 1] -= 0.05 * smile
    points[_MOUTH_CORNERS, 0] *= 1.0 + 0.12 * max(smile, 0.0)
    points[17:27, 1] -= 0.1 * channels["brow_raise"]
    openness = 1.0 - 0.95 * channels["blink"]
    for start in (36, 42):
        centre_y = points[start, 1]
        points[start : start + 6, 1] = centre_y + (points[start : start + 6, 1] - centre_y) * openness
    points[68:70] += (0.07 * channels["gaze_x"], 0.05 * channels["gaze_y"])

    # Turn (yaw) and nod (pitch) on a sphere; protruding points (nose) swing further.
    depth = np.sqrt(np.maximum(_HEAD_SPHERE**2 - (points**2).sum(axis=1), 0.0)) + _FACE_PROTRUSION
    depth[0:17] *= 0.5  # the jaw outline is a silhouette, so it turns less than the features
    yaw, pitch = channels["head_yaw"], channels["head_pitch"]
    x = points[:, 0] * math.cos(yaw) + depth * math.sin(yaw)
    y = points[:, 1] * math.cos(pitch) + depth * math.sin(pitch) * 0.5
    return np.stack([x, y], axis=1)


def _hand_points(wrist: np.ndarray, direction: np.ndarray, thumb_side: np.ndarray, length: float, curl: float) -> np.ndarray:
    """21 hand points: a palm along ``direction`` and five fingers that shorten as they curl."""
    fingers = (  # base (along, across), splay angle, phalanx lengths; in hand lengths
        ((0.12, 0.16), 0.9, (0.16, 0.13, 0.11)),
        ((0.45, 0.16), 0.14, (0.22, 0.14, 0.12)),
        ((0.47, 0.05), 0.03, (0.24, 0.16, 0.14)),
        ((0.45, -0.05), -0.07, (0.22, 0.14, 0.12)),
        ((0.4, -0.14), -0.18, (0.17, 0.11, 0.1)),
    )
    points = np.zeros((NUM_HAND_POINTS, 2))
    points[0] = wrist
    for finger, ((along, across), splay, phalanges) in enumerate(fingers):
        base = wrist + length * (along * direction + across * thumb_side)
        finger_direction = math.cos(splay) * direction + math.sin(splay) * thumb_side
        points[1 + 4 * finger] = base
        flexion, joint = 0.0, base
        for bone, phalanx in enumerate(phalanges):
            flexion += curl * (0.9, 1.2, 0.8)[bone] * (0.6 if finger == 0 else 1.0)
            joint = joint + length * phalanx * max(math.cos(flexion), -0.3) * finger_direction
            points[2 + 4 * finger + bone] = joint
    return points


def _rotate(vector: np.ndarray, angle: float) -> np.ndarray:
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([vector[0] * cos - vector[1] * sin, vector[0] * sin + vector[1] * cos])


def pose_at(identity: Identity, motion: Motion, frame_index: int, width: int, height: int) -> PersonPose:
    """The keypoints of ``identity`` in frame ``frame_index`` of ``motion`` on a width x height picture."""
    c = {name: float(values[frame_index]) for name, values in motion.channels.items()}
    unit = identity.stature * height
    up = np.array([math.sin(c["lean"]), -math.cos(c["lean"])])
    down, across = -up, np.array([math.cos(c["lean"]), math.sin(c["lean"])])
    pelvis = np.zeros(2)
    neck = pelvis + identity.torso_length * unit * up
    body = np.zeros((NUM_BODY_POINTS, 2))
    body[BODY["neck"]] = neck

    def limb(start, first_angle, second_angle, first_length, second_length, outward):
        first = math.cos(first_angle) * down + outward * math.sin(first_angle) * across
        second = math.cos(first_angle + second_angle) * down + outward * math.sin(first_angle + second_angle) * across
        middle = start + first_length * unit * first
        return middle, middle + second_length * unit * second, second

    hands = {}
    for side, outward in (("right", -1.0), ("left", 1.0)):
        shoulder = neck + outward * identity.shoulder_half_width * unit * across
        elbow, wrist, forearm_direction = limb(
            shoulder, c[f"{side}_arm"], c[f"{side}_elbow"], identity.upper_arm, identity.forearm, outward
        )
        body[BODY[f"{side}_shoulder"]], body[BODY[f"{side}_elbow"]], body[BODY[f"{side}_wrist"]] = shoulder, elbow, wrist
        hand_direction = _rotate(forearm_direction, -outward * c[f"{side}_wrist"])
        thumb_side = _rotate(hand_direction, -outward * math.pi / 2)
        hands[side] = _hand_points(wrist, hand_direction, thumb_side, identity.hand_length * unit, c[f"{side}_curl"])
        hip = pelvis + outward * identity.hip_half_width * unit * across
        knee, ankle, _ = limb(hip, c[f"{side}_thigh"], c[f"{side}_knee"], identity.thigh, identity.shin, outward)
        body[BODY[f"{side}_hip"]], body[BODY[f"{side}_knee"]], body[BODY[f"{side}_ankle"]] = hip, knee, ankle

    head_up = _rotate(up, c["head_roll"])
    head_right = _rotate(across, c["head_roll"])
    radius = identity.head_radius * unit
    head_centre = neck + (identity.neck_length * unit + radius) * head_up
    local = _face_points(c)
    face = head_centre + radius * (local[:, :1] * head_right - local[:, 1:] * head_up)
    body[BODY["nose"]] = face[30]
    body[BODY["right_eye"]], body[BODY["left_eye"]] = face[68], face[69]
    for name, x in (("right_ear", -0.93), ("left_ear", 0.93)):
        ear_x = x * math.cos(c["head_yaw"])
        body[BODY[name]] = head_centre + radius * (ear_x * head_right + 0.08 * head_up)

    # Place the figure: feet on the floor line (the lower ankle just above it), centred plus sway.
    everything = [body, face, hands["right"], hands["left"]]
    lowest_ankle = max(body[BODY["right_ankle"], 1], body[BODY["left_ankle"], 1])
    offset = np.array(
        [
            width * (0.5 + c["root_x"]),
            identity.ground * height - 0.03 * unit - lowest_ankle - c["bounce"] * unit,
        ]
    )
    parts = [_with_confidence(points + offset, width, height) for points in everything]
    return PersonPose(body=parts[0], face=parts[1], right_hand=parts[2], left_hand=parts[3])


def _with_confidence(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Append confidence 1 to points inside the picture and 0 (not there) to those outside."""
    inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
    return np.concatenate([points, inside[:, None].astype(np.float64)], axis=1).astype(np.float32)


def motion_poses(identity: Identity, motion: Motion, width: int, height: int) -> list[FramePose]:
    """One FramePose per frame: ``identity``'s skeleton performing ``motion``."""
    return [FramePose(width, height, [pose_at(identity, motion, index, width, height)]) for index in range(motion.num_frames)]


# ---------------------------------------------------------------------------------------- drawing


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


def _shade(colour: RGB, factor: float) -> RGB:
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
    shade = _shade(identity.skin, 0.78)
    _polyline(canvas, face[27:31], shade, line * 0.8)
    _polyline(canvas, face[31:36], shade, line * 0.8)
    dark = (30, 22, 20)
    for eye, pupil in ((face[36:42], face[68]), (face[42:48], face[69])):
        opening = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
        if opening > 0.1 * radius:
            _polygon(canvas, eye, EYE_WHITE)
            _disc(canvas, pupil, max(0.7, 0.07 * radius), dark)
        else:
            _polyline(canvas, eye[[0, 5, 4, 3]], dark, line)
    brow = _shade(identity.hair, 0.7)
    _polyline(canvas, face[17:22], brow, line * 1.2)
    _polyline(canvas, face[22:27], brow, line * 1.2)
    lips = tuple(int(round((skin + red) / 2)) for skin, red in zip(identity.skin, (200, 60, 70)))
    _polygon(canvas, face[48:60], lips)
    inner_height = np.linalg.norm(face[62] - face[66])
    if inner_height > 0.05 * radius:
        _polygon(canvas, face[60:68], MOUTH_INSIDE)


def sleeve_colour(identity: Identity, side: str) -> RGB:
    """The colour of the ``side`` ("right"/"left") sleeve: a two-tone shirt's halves continue into them."""
    return identity.shirt_second if identity.shirt_pattern == "two_tone" and side == "left" else identity.shirt


def draw_person(identity: Identity, person_pose: PersonPose, width: int, height: int) -> np.ndarray:
    """Draw ``identity`` in the pose given by ``person_pose`` (as made by :func:`pose_at`).

    Uses only the keypoints and the identity, so the keypoints always match the drawing:
    clothing covers the joints it should, hands and face sit on their landmarks.
    Returns an RGB ``height x width x 3`` uint8 image.
    """
    canvas = draw_background(identity, width, height)
    unit = identity.stature * height
    body = person_pose.body[:, :2].astype(np.float64)
    face = person_pose.face[:, :2].astype(np.float64)
    point = {name: body[index] for name, index in BODY.items()}
    arm_r, leg_r = identity.arm_radius * unit, identity.leg_radius * unit
    radius = identity.head_radius * unit

    # Head frame from the ears: pose_at puts their midpoint 0.08 head radii above the head centre.
    ear_axis = point["left_ear"] - point["right_ear"]
    right = ear_axis / max(np.linalg.norm(ear_axis), 1e-6)
    up = np.array([right[1], -right[0]])
    head_centre = (point["left_ear"] + point["right_ear"]) / 2 - 0.08 * radius * up
    mid_hip = (point["right_hip"] + point["left_hip"]) / 2
    torso_vector = point["neck"] - mid_hip
    torso_px = max(np.linalg.norm(torso_vector), 1e-6)
    torso_up = torso_vector / torso_px
    torso_across = np.array([-torso_up[1], torso_up[0]])

    _draw_hair(canvas, identity, head_centre, right, up, radius, front=False)

    # Legs (trousers or shorts over skin) and shoes.
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
        toe = ankle + unit * 0.06 * (_rotate(np.array([0.0, 1.0]), -outward * 1.1))
        _capsule(canvas, ankle + 0.15 * leg_r * shin / max(np.linalg.norm(shin), 1e-6), toe, leg_r * 0.75, identity.shoes)

    # Neck, shirt torso, then the trousers' seat so the hips are always in trouser colour.
    _capsule(canvas, point["neck"], head_centre, radius * 0.36, identity.skin)
    shoulder_out = arm_r * 0.9
    waist = mid_hip + 0.18 * torso_vector
    hip_half = np.linalg.norm(point["left_hip"] - point["right_hip"]) / 2
    torso = np.array(
        [
            point["right_shoulder"] - shoulder_out * torso_across + 0.4 * arm_r * torso_up,
            point["right_shoulder"] + 0.5 * arm_r * torso_up,
            point["neck"] - 0.35 * radius * torso_across + 0.25 * arm_r * torso_up,
            point["neck"] + 0.35 * radius * torso_across + 0.25 * arm_r * torso_up,
            point["left_shoulder"] + 0.5 * arm_r * torso_up,
            point["left_shoulder"] + shoulder_out * torso_across + 0.4 * arm_r * torso_up,
            waist + (hip_half + leg_r * 0.6) * torso_across,
            waist - (hip_half + leg_r * 0.6) * torso_across,
        ]
    )
    _draw_shirt(canvas, identity, torso, point["neck"], torso_up, torso_px)
    seat = np.array(
        [
            waist - 0.02 * torso_vector - (hip_half + leg_r * 0.6) * torso_across,
            waist - 0.02 * torso_vector + (hip_half + leg_r * 0.6) * torso_across,
            point["left_hip"] + leg_r * torso_across,
            point["left_hip"] - leg_r * 0.8 * torso_up,
            mid_hip - leg_r * 1.2 * torso_up,
            point["right_hip"] - leg_r * 0.8 * torso_up,
            point["right_hip"] - leg_r * torso_across,
        ]
    )
    _polygon(canvas, seat, identity.trousers)

    # Head: ears, skull + jaw in skin, hair on top, then the features.
    for name in ("right_ear", "left_ear"):
        _disc(canvas, point[name], radius * 0.2, _shade(identity.skin, 0.92))
    _polygon(canvas, _head_outline(head_centre, right, up, radius, face), identity.skin)
    _draw_hair(canvas, identity, head_centre, right, up, radius, front=True)
    _draw_face(canvas, identity, face, radius)

    # Arms in front of the body: skin underneath, sleeves over it, then the hands.
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
        hand = (person_pose.right_hand if side == "right" else person_pose.left_hand)[:, :2].astype(np.float64)
        _disc(canvas, wrist, arm_r * 0.85, identity.skin)
        _polygon(canvas, hand[[0, 1, 5, 9, 13, 17]], identity.skin)
        finger_width = max(1.0, 0.1 * identity.hand_length * unit)
        for finger in range(5):
            _polyline(canvas, hand[[1 + 4 * finger, 2 + 4 * finger, 3 + 4 * finger, 4 + 4 * finger]], identity.skin, finger_width)
    return canvas


# ---------------------------------------------------------------------------------------- datasets


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if width < _MIN_SIZE or height < _MIN_SIZE:
        raise MagicPoseError(f"synthetic frames must be at least {_MIN_SIZE}x{_MIN_SIZE} pixels, got {width}x{height}")
    return width, height


def render_video(identity: Identity, motion: Motion, width: int, height: int) -> tuple[list[np.ndarray], list[FramePose]]:
    """Frames and keypoints of ``identity`` performing ``motion``."""
    poses = motion_poses(identity, motion, width, height)
    return [draw_person(identity, pose.people[0], width, height) for pose in poses], poses


def _video_rng(seed: int, index: int) -> np.random.Generator:
    # Stream 0 is for dataset videos, stream 1 for evaluation pairs, so they never share people.
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0, int(index)]))


def _write_video(folder: Path, identity: Identity, motion: Motion, width: int, height: int, meta: dict, on_frame) -> None:
    """Write one video folder all at once: it is built beside ``folder`` and renamed into place,
    so a crash never leaves a half-written video for training to pick up."""
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "frames").mkdir(parents=True)
    (partial / "poses").mkdir()
    try:
        for index, pose in enumerate(motion_poses(identity, motion, width, height)):
            frame = draw_person(identity, pose.people[0], width, height)
            Image.fromarray(frame).save(partial / "frames" / f"{index:05d}.png", format="PNG", compress_level=1)
            (partial / "poses" / f"{index:05d}.json").write_text(json.dumps(pose.to_openpose()))
            on_frame()
        (partial / "meta.json").write_text(json.dumps(meta))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def write_dataset(
    out_dir: str | Path,
    num_videos: int,
    frames_per_video: int,
    size: int | tuple[int, int] = 128,
    seed: int = 0,
    progress: bool = True,
) -> list[Path]:
    """Write ``num_videos`` synthetic videos in the frame-folder layout ``magicpose train`` reads.

    Each video is ``out_dir/<name>/frames/<index:05d>.png``, ``poses/<index:05d>.json`` (OpenPose
    JSON, as FramePose.save writes it) and ``meta.json`` (seed, identity and motion parameters).
    The same seed writes the same bytes; an existing video folder of the same name is replaced.
    Returns the video folders.
    """
    if num_videos < 1 or frames_per_video < 1:
        raise MagicPoseError(f"need at least one video and one frame, got {num_videos} videos of {frames_per_video} frames")
    width, height = _as_size(size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folders = [out_dir / f"person_{index:05d}" for index in range(num_videos)]
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("drawing synthetic people", total=num_videos * frames_per_video)
        for index, folder in enumerate(folders):
            rng = _video_rng(seed, index)
            identity = sample_identity(rng)
            motion = sample_motion(rng, frames_per_video)
            meta = {
                "seed": int(seed),
                "video_index": index,
                "width": width,
                "height": height,
                "identity": identity.to_json(),
                "motion": motion.to_json(),
            }
            _write_video(folder, identity, motion, width, height, meta, lambda: bar.advance(task))
    return folders


@dataclass
class SyntheticPair:
    """An evaluation case: person A as the reference, person B's performance as the driver.

    ``target_poses`` are B's motion on A's proportions (what a retargeting model is driven with)
    and ``target_frames`` the exact ground truth: A performing B's motion.
    """

    reference_identity: Identity
    driving_identity: Identity
    reference_frame: np.ndarray
    reference_pose: FramePose
    driving_frames: list[np.ndarray]
    driving_poses: list[FramePose]
    target_poses: list[FramePose]
    target_frames: list[np.ndarray]


def sample_pair(seed: int, size: int | tuple[int, int] = 128, num_frames: int = 16) -> SyntheticPair:
    """Reference person A, driving person B and the ground truth of A performing B's motion."""
    width, height = _as_size(size)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    reference_identity, driving_identity = sample_identity(rng), sample_identity(rng)
    reference_motion = sample_motion(rng, 1)
    driving_motion = sample_motion(rng, num_frames)
    reference_pose = FramePose(width, height, [pose_at(reference_identity, reference_motion, 0, width, height)])
    driving_frames, driving_poses = render_video(driving_identity, driving_motion, width, height)
    target_frames, target_poses = render_video(reference_identity, driving_motion, width, height)
    return SyntheticPair(
        reference_identity=reference_identity,
        driving_identity=driving_identity,
        reference_frame=draw_person(reference_identity, reference_pose.people[0], width, height),
        reference_pose=reference_pose,
        driving_frames=driving_frames,
        driving_poses=driving_poses,
        target_poses=target_poses,
        target_frames=target_frames,
    )
