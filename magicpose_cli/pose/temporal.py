"""Poses over time: one person's track, filling frames where detection failed, and smoothing jitter.

A track is the main person of every frame stacked into one ``(T, P, 3)`` array (P = 18 body +
21 + 21 hand + 70 face points), so that gap filling and filtering work point by point.
"""

from __future__ import annotations

import numpy as np

from magicpose_cli.pose.keypoints import (
    NUM_BODY_POINTS,
    NUM_FACE_POINTS,
    NUM_HAND_POINTS,
    FramePose,
    PersonPose,
)

_PART_SLICES = {
    "body": slice(0, NUM_BODY_POINTS),
    "left_hand": slice(NUM_BODY_POINTS, NUM_BODY_POINTS + NUM_HAND_POINTS),
    "right_hand": slice(NUM_BODY_POINTS + NUM_HAND_POINTS, NUM_BODY_POINTS + 2 * NUM_HAND_POINTS),
    "face": slice(NUM_BODY_POINTS + 2 * NUM_HAND_POINTS, NUM_BODY_POINTS + 2 * NUM_HAND_POINTS + NUM_FACE_POINTS),
}
NUM_TRACK_POINTS = NUM_BODY_POINTS + 2 * NUM_HAND_POINTS + NUM_FACE_POINTS
# Inside a frame where the person was found, a point (a hand, the face) that flickers out is
# filled only for gaps up to this many frames; longer absences are taken to be real.
DEFAULT_MAX_POINT_GAP = 5

STATUS_DETECTED = "detected"
STATUS_FILLED = "filled"
STATUS_MISSING = "missing"


def main_person(frame_pose: FramePose) -> PersonPose | None:
    """The person with the largest visible body (MagicPose animates one person)."""

    def body_extent(person: PersonPose) -> float:
        points = person.body[person.body[:, 2] > 0, :2]
        if len(points) < 2:
            return float(len(points))
        return float(np.prod(points.max(axis=0) - points.min(axis=0) + 1.0))

    people = [person for person in frame_pose.people if (person.body[:, 2] > 0).any()]
    return max(people, key=body_extent) if people else None


def poses_to_track(poses: list[FramePose]) -> tuple[np.ndarray, np.ndarray]:
    """``(T, P, 3)`` keypoints of each frame's main person, and a ``(T,)`` mask of frames with one."""
    track = np.zeros((len(poses), NUM_TRACK_POINTS, 3), dtype=np.float32)
    found = np.zeros(len(poses), dtype=bool)
    for t, frame_pose in enumerate(poses):
        person = main_person(frame_pose)
        if person is None:
            continue
        found[t] = True
        for part, part_slice in _PART_SLICES.items():
            track[t, part_slice] = getattr(person, part)
    return track, found


def track_to_poses(track: np.ndarray, sizes: list[tuple[int, int]]) -> list[FramePose]:
    """The inverse of poses_to_track: one FramePose per frame, empty where no point is present."""
    poses = []
    for points, (width, height) in zip(track, sizes):
        if not (points[:, 2] > 0).any():
            poses.append(FramePose(width, height, []))
            continue
        person = PersonPose(**{part: points[part_slice] for part, part_slice in _PART_SLICES.items()})
        poses.append(FramePose(width, height, [person]))
    return poses


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``[start, end)`` runs where ``mask`` is True."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2], edges[1::2]))


def fill_gaps(track: np.ndarray, found: np.ndarray, max_point_gap: int = DEFAULT_MAX_POINT_GAP) -> np.ndarray:
    """Fill missing points from their neighbours in time, point by point.

    A point missing for up to ``max_point_gap`` frames between two frames that have it is
    linearly interpolated. Over longer absences only frames with no person are filled, and only
    from a neighbour frame that has the point with nothing but person-less frames between:
    interpolated between two such, else held from the one. So a hand that leaves the picture,
    or a leg that was never in it, is not invented. Filled points get the lower confidence of
    the two frames they come from.
    """
    filled = track.copy()
    frames = len(track)
    for point in range(track.shape[1]):
        present = track[:, point, 2] > 0
        if not present.any() or present.all():
            continue
        for start, end in _runs(~present):
            before, after = start - 1, end
            short = before >= 0 and after < frames and end - start <= max_point_gap
            for t in range(start, end):
                from_before = before >= 0 and (short or not found[before + 1 : t + 1].any())
                from_after = after < frames and (short or not found[t:after].any())
                if from_before and from_after:
                    weight = (t - before) / (after - before)
                    xy = (1 - weight) * track[before, point, :2] + weight * track[after, point, :2]
                    filled[t, point] = (*xy, min(track[before, point, 2], track[after, point, 2]))
                elif from_before or from_after:
                    filled[t, point] = track[before if from_before else after, point]
    return filled


class OneEuroFilter:
    """The One-Euro filter (Casiez et al., CHI 2012) on arrays: a low-pass whose cutoff rises with speed,
    so slow jitter is removed while fast moves keep up."""

    def __init__(self, rate: float, min_cutoff: float, beta: float, derivative_cutoff: float = 1.0):
        self.rate = rate
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.derivative_cutoff = derivative_cutoff
        self._value: np.ndarray | None = None
        self._derivative: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau * self.rate)

    def reset(self) -> None:
        self._value = self._derivative = None

    def __call__(self, value: np.ndarray) -> np.ndarray:
        if self._value is None:
            self._value, self._derivative = value.copy(), np.zeros_like(value)
            return value.copy()
        derivative = (value - self._value) * self.rate
        alpha_derivative = self._alpha(self.derivative_cutoff)
        self._derivative = alpha_derivative * derivative + (1 - alpha_derivative) * self._derivative
        cutoff = self.min_cutoff + self.beta * np.abs(self._derivative)
        alpha = self._alpha(cutoff)
        self._value = alpha * value + (1 - alpha) * self._value
        return self._value.copy()


# Body and hands: One-Euro on coordinates measured in frame sizes (so they hold at any resolution)
# and time in seconds: a still point's jitter is cut above 1 Hz, and the cutoff rises by 30 Hz per
# (frame size per second) of speed, so a limb crossing the frame in a second is followed without lag.
# (Tuned on 3 px jitter at 512 px, 30 fps: the error halves at rest and drops by a third at 2-8 px/frame.)
DEFAULT_MIN_CUTOFF = 1.0
DEFAULT_BETA = 30.0
# Face: no filter on single points can keep a 2-frame blink (>= 90 %) and halve white jitter (a
# linear one would need two taps summing to 0.9, so a noise gain >= 0.64), so the face is smoothed
# as a whole head motion plus an expression. The head (the face points' centre) goes through the
# One-Euro filter above; each point's offset from it is averaged with the offsets of nearby frames
# that are close in value (a bilateral filter in time): jitter is averaged away, while the frames
# of a blink or an opening mouth differ by many jitter widths and keep their own value.
FACE_TIME_SIGMA = 0.1  # seconds: 3 frames at 30 fps
FACE_VALUE_SIGMA = 0.03  # of the face's size (RMS distance of its points from their centre)
# The parts of the 70-point face that move together (iBUG numbering): 0 jaw, 1-2 brows, 3 nose,
# 4-5 the eyelids of each eye (what a blink moves), 6 the eye corners and pupils, 7 the mouth.
_FACE_GROUPS = np.array(
    [0] * 17 + [1] * 5 + [2] * 5 + [3] * 9 + [6, 4, 4, 6, 4, 4] + [6, 5, 5, 6, 5, 5] + [7] * 20 + [6, 6]
)


def _one_euro_points(track: np.ndarray, smoothed: np.ndarray, fps: float, frame_size: float, strength: float) -> None:
    """One-Euro smoothing of every point of ``track`` into ``smoothed``, restarting after each gap."""
    for point in range(track.shape[1]):
        present = track[:, point, 2] > 0
        for start, end in _runs(present):
            one_euro = OneEuroFilter(fps, DEFAULT_MIN_CUTOFF / strength, DEFAULT_BETA / strength)
            for t in range(start, end):
                smoothed[t, point, :2] = one_euro(track[t, point, :2] / frame_size) * frame_size


def _bilateral_in_time(
    offsets: np.ndarray, present: np.ndarray, groups: np.ndarray, time_sigma: float, value_sigma: float
) -> np.ndarray:
    """Each present ``(T, P, 2)`` offset averaged with those of nearby frames weighted by closeness in
    time (``time_sigma`` frames) and in value: the RMS distance over the point's group (``groups``:
    a group number per point; a whole eye moves in a blink) against ``value_sigma``."""
    frames = len(offsets)
    reach = int(np.ceil(3 * time_sigma))
    result = offsets.copy()
    membership = np.eye(groups.max() + 1)[groups]  # (P, groups) one-hot
    for t in range(frames):
        window = np.arange(max(0, t - reach), min(frames, t + reach + 1))
        closeness = np.exp(-0.5 * ((window - t) / time_sigma) ** 2)[:, None]
        both = present[window] & present[t]
        squared = np.linalg.norm(offsets[window] - offsets[t], axis=-1) ** 2 * both
        group_mean = (squared @ membership) / np.maximum(both @ membership, 1)
        distance = np.sqrt(group_mean)[:, groups]
        weights = closeness * np.exp(-0.5 * (distance / value_sigma) ** 2) * present[window]
        total = weights.sum(axis=0)
        averaged = (weights[..., None] * offsets[window]).sum(axis=0) / np.maximum(total, 1e-12)[:, None]
        result[t] = np.where((present[t] & (total > 0))[:, None], averaged, offsets[t])
    return result


def smooth_face(face: np.ndarray, fps: float, frame_size: float, strength: float = 1.0) -> np.ndarray:
    """A ``(T, 70, 3)`` face track smoothed as head motion (One-Euro) plus expression (bilateral in
    time), separately over each run of frames where the face is seen."""
    smoothed = face.copy()
    present = face[:, :, 2] > 0
    for start, end in _runs(present.any(axis=1)):
        points, seen = face[start:end, :, :2], present[start:end]
        head = np.ones((end - start, 1, 3), dtype=np.float32)  # the centre, as a one-point track
        head[:, 0, :2] = (points * seen[..., None]).sum(axis=1) / seen.sum(axis=1)[:, None]
        smoothed_head = head.copy()
        _one_euro_points(head, smoothed_head, fps, frame_size, strength)
        offsets = points - head[:, :, :2]
        radius = np.sqrt((np.linalg.norm(offsets, axis=-1) ** 2 * seen).sum(axis=1) / seen.sum(axis=1))
        value_sigma = max(FACE_VALUE_SIGMA * float(np.median(radius)), 1e-6)  # a face shrunk to a dot: no averaging
        expression = _bilateral_in_time(offsets, seen, _FACE_GROUPS, FACE_TIME_SIGMA * fps * strength, value_sigma)
        smoothed[start:end, :, :2] = np.where(seen[..., None], smoothed_head[:, :, :2] + expression, points)
    return smoothed


def smooth_track(track: np.ndarray, fps: float, frame_size: float, strength: float = 1.0) -> np.ndarray:
    """Smoothing of every point's x, y, per part: One-Euro for body and hands, head motion plus
    expression for the face (smooth_face). ``strength`` > 1 smooths more, 0 leaves the track as is."""
    if strength <= 0 or len(track) < 2:
        return track.copy()
    rate = fps if fps > 0 else 30.0
    smoothed = track.copy()
    face = _PART_SLICES["face"]
    _one_euro_points(track[:, : face.start], smoothed[:, : face.start], rate, frame_size, strength)
    smoothed[:, face] = smooth_face(track[:, face], rate, frame_size, strength)
    return smoothed


def frame_statuses(found: np.ndarray, filled: np.ndarray) -> list[str]:
    """Per frame: detected (the detector found the person), filled (from neighbours) or missing."""
    statuses = []
    for t, was_found in enumerate(found):
        if was_found:
            statuses.append(STATUS_DETECTED)
        elif (filled[t, :, 2] > 0).any():
            statuses.append(STATUS_FILLED)
        else:
            statuses.append(STATUS_MISSING)
    return statuses
