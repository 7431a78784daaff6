"""How a synthetic person moves, and where their keypoints are in each frame.

A :class:`Motion` holds per-frame joint angles and expression channels, free of body size; forward
kinematics (:func:`pose_at`) turns an identity and a motion into OpenPose keypoints (18 body,
2 x 21 hand, 70 face points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.pose.keypoints import BODY, NUM_BODY_POINTS, NUM_FACE_POINTS, NUM_HAND_POINTS, FramePose, PersonPose
from magicpose_cli.synthetic.identity import Identity

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


def _arm_channels(rng: np.random.Generator, t: np.ndarray, beat: float, slow: float) -> dict[str, np.ndarray]:
    """Arms: mirrored, alternating or independent swings around a random base pose."""
    channels = {}
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
    return channels


def _leg_channels(rng: np.random.Generator, t: np.ndarray, beat: float) -> dict[str, np.ndarray]:
    """Legs: steps alternate (half a beat apart) or bounce together; knees bend out like a squat."""
    channels = {}
    leg_phase = rng.uniform(0, 2 * math.pi)
    together = rng.random() < 0.4
    for side in ("right", "left"):
        phase = leg_phase + (0.0 if together or side == "right" else math.pi)
        thigh = rng.uniform(0.03, 0.25) + _wave(rng, t, beat, rng.uniform(0, 0.25), 0.0, phase)
        channels[f"{side}_thigh"] = np.clip(thigh, -0.15, 1.1)
        knee = -rng.uniform(0, 0.25) + _wave(rng, t, beat, rng.uniform(0, 0.3), 0.0, phase + 0.5)
        channels[f"{side}_knee"] = np.clip(knee, -1.0, 0.05)
    return channels


def _body_channels(rng: np.random.Generator, t: np.ndarray, beat: float, slow: float) -> dict[str, np.ndarray]:
    """Sway, bounce and lean of the whole body, and the head's roll, turn and nod."""
    return {
        "root_x": rng.uniform(-0.08, 0.08) + _wave(rng, t, slow, rng.uniform(0, 0.1)) + _wave(rng, t, beat, rng.uniform(0, 0.02)),
        "bounce": _wave(rng, t, 2 * beat, rng.uniform(0, 0.015)),
        "lean": _wave(rng, t, beat, rng.uniform(0, 0.12)) + _wave(rng, t, slow, rng.uniform(0, 0.06)),
        "head_roll": _wave(rng, t, beat, rng.uniform(0, 0.2)),
        "head_yaw": np.clip(rng.uniform(-0.2, 0.2) + _wave(rng, t, slow, rng.uniform(0, 0.3)), -0.45, 0.45),
        "head_pitch": _wave(rng, t, beat, rng.uniform(0, 0.12)),
    }


def _face_channels(rng: np.random.Generator, t: np.ndarray, speed: float) -> dict[str, np.ndarray]:
    """Expressions drift on their own slower clocks; blinks are short bumps at random times."""

    def expression(low, high):
        frequency = speed / rng.uniform(20, 60)
        centre, spread = rng.uniform(low, high), rng.uniform(0.2, 0.6) * (high - low)
        return np.clip(centre + _wave(rng, t, frequency, spread), low, high)

    channels = {"mouth_open": expression(0.0, 1.0), "smile": expression(-0.5, 1.0), "brow_raise": expression(0.0, 1.0)}
    frames = np.arange(len(t), dtype=np.float64)
    blink = np.zeros(len(t))
    moment = rng.uniform(-10, 30)
    while moment < len(t) + 5:
        blink = np.maximum(blink, np.exp(-(((frames - moment) / (1.3 / max(speed, 0.1))) ** 2)))
        moment += rng.uniform(25, 70) / max(speed, 0.1)
    channels["blink"] = blink
    channels["gaze_x"] = expression(-0.6, 0.6)
    channels["gaze_y"] = expression(-0.3, 0.3)
    return channels


def sample_motion(rng: np.random.Generator, num_frames: int, speed: float = 1.0) -> Motion:
    """A smooth dance-like performance: limbs swing on a shared beat, the body sways, the face moves.

    ``speed`` scales every frequency (1.0: one beat every 28 to 56 frames).
    """
    if num_frames < 1:
        raise MagicPoseError(f"a motion needs at least one frame, got {num_frames}")
    t = np.arange(num_frames, dtype=np.float64) + rng.uniform(0, 1000)
    beat = speed / rng.uniform(28, 56)
    slow = beat / rng.uniform(2.0, 4.0)
    channels = _arm_channels(rng, t, beat, slow)
    channels.update(_leg_channels(rng, t, beat))
    channels.update(_body_channels(rng, t, beat, slow))
    channels.update(_face_channels(rng, t, speed))
    return Motion({name: channels[name].astype(np.float64) for name in MOTION_CHANNELS})


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


def rotate(vector: np.ndarray, angle: float) -> np.ndarray:
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
        hand_direction = rotate(forearm_direction, -outward * c[f"{side}_wrist"])
        thumb_side = rotate(hand_direction, -outward * math.pi / 2)
        hands[side] = _hand_points(wrist, hand_direction, thumb_side, identity.hand_length * unit, c[f"{side}_curl"])
        hip = pelvis + outward * identity.hip_half_width * unit * across
        knee, ankle, _ = limb(hip, c[f"{side}_thigh"], c[f"{side}_knee"], identity.thigh, identity.shin, outward)
        body[BODY[f"{side}_hip"]], body[BODY[f"{side}_knee"]], body[BODY[f"{side}_ankle"]] = hip, knee, ankle

    head_up = rotate(up, c["head_roll"])
    head_right = rotate(across, c["head_roll"])
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
