"""Over time: filling frames where detection failed, smoothing (One-Euro for body and hands, head
motion plus expression for the face)."""

import warnings

import numpy as np
import pytest

from magicpose_cli.pose.keypoints import NUM_BODY_POINTS, NUM_HAND_POINTS
from magicpose_cli.pose.temporal import NUM_TRACK_POINTS, fill_gaps, frame_statuses, smooth_track


def moving_track(frames: int = 10, points: int = 3) -> np.ndarray:
    """Points moving right by 10 px per frame, all present."""
    track = np.zeros((frames, points, 3), dtype=np.float32)
    track[:, :, 0] = 10 * np.arange(frames)[:, None] + 100 * np.arange(points)[None]
    track[:, :, 1] = 50
    track[:, :, 2] = 0.9
    return track


def test_undetected_frames_are_interpolated_inside_and_held_at_the_ends():
    track = moving_track()
    found = np.ones(10, dtype=bool)
    for t in (0, 1, 4, 5, 6, 9):
        track[t] = 0
        found[t] = False
    filled = fill_gaps(track, found)
    expected = moving_track()
    assert np.allclose(filled[4:7, :, :2], expected[4:7, :, :2])  # interpolated between frames 3 and 7
    assert np.allclose(filled[0:2, :, :2], expected[2, :, :2])  # held from the first detection
    assert np.allclose(filled[9, :, :2], expected[8, :, :2])  # held from the last one
    assert (filled[:, :, 2] > 0).all()
    assert frame_statuses(found, filled) == ["filled", "filled", "detected", "detected", "filled", "filled",
                                             "filled", "detected", "detected", "filled"]  # fmt: skip


def test_points_are_filled_one_by_one_short_gaps_only():
    track = moving_track(frames=20)
    found = np.ones(20, dtype=bool)
    track[3:5, 1] = 0  # point 1 flickers out for 2 frames: filled
    track[8:18, 2] = 0  # point 2 (say a hand) is gone for 10 frames: left out
    filled = fill_gaps(track, found, max_point_gap=5)
    assert np.allclose(filled[3:5, 1, :2], moving_track(frames=20)[3:5, 1, :2])
    assert (filled[8:18, 2, 2] == 0).all()
    assert np.array_equal(filled[:, 0], track[:, 0])  # point 0 untouched


def test_frames_without_a_person_get_no_limb_the_frames_around_them_lacked():
    """A leg seen only at the start, then out of the picture while the person is found, is not drawn
    into a later stretch where nobody is found; a leg seen right before such a stretch is held into it."""
    track = moving_track(frames=16)
    found = np.ones(16, dtype=bool)
    track[3:, 1] = 0  # point 1 (a knee) leaves the picture after frame 2 ...
    track[9:12] = 0  # ... and nobody is found in frames 9-11
    found[9:12] = False
    track[6:9, 2] = 0  # point 2 is lost for 3 frames, then comes back in frame 12
    filled = fill_gaps(track, found, max_point_gap=5)
    assert (filled[3:, 1, 2] == 0).all()  # formerly held from frame 2 through frames 9-11
    assert np.allclose(filled[9:12, 0, :2], moving_track(frames=16)[9:12, 0, :2])  # seen around the gap: interpolated
    assert np.allclose(filled[9:12, 2, :2], track[12, 2, :2])  # only its later neighbour has it: held from there
    assert (filled[6:9, 2, 2] == 0).all()  # absent while the person was found for 3 + 3 frames: not a short gap


def test_one_euro_reduces_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    frames = 120
    track = moving_track(frames=frames, points=1)
    track[:, :, 0] = 100 + 2 * np.arange(frames)[:, None]  # steady walk of 2 px per frame
    noisy = track.copy()
    noisy[:, :, :2] += rng.normal(0, 3, size=(frames, 1, 2))
    smoothed = smooth_track(noisy, fps=30, frame_size=512)
    error_before = np.abs(noisy[20:, 0, :2] - track[20:, 0, :2]).mean()
    error_after = np.abs(smoothed[20:, 0, :2] - track[20:, 0, :2]).mean()
    assert error_after < 0.8 * error_before
    stronger = smooth_track(noisy, fps=30, frame_size=512, strength=3.0)
    jitter = lambda t: np.abs(np.diff(t[20:, 0, 1])).mean()  # noqa: E731  (y is constant in truth)
    assert jitter(stronger) < jitter(smoothed) < jitter(noisy)
    assert np.array_equal(smooth_track(noisy, fps=30, frame_size=512, strength=0), noisy)


def test_smoothing_restarts_after_a_missing_point():
    track = moving_track(frames=6, points=1)
    track[3] = 0
    track[4:, 0, 0] += 500  # reappears far away: not dragged from the old place
    smoothed = smooth_track(track, fps=30, frame_size=512)
    assert smoothed[4, 0, 0] == track[4, 0, 0] and (smoothed[3] == 0).all()


# --- Expressions: a blink and a quick mouth opening survive smoothing; a still face's jitter does not.

FACE_START = NUM_BODY_POINTS + 2 * NUM_HAND_POINTS
UPPER_LIDS, LOWER_LIDS = [37, 38, 43, 44], [40, 41, 46, 47]
UPPER_INNER_LIP, LOWER_INNER_LIP = [61, 62, 63], [65, 66, 67]


def face_points(eye_open: float = 1.0, mouth_open: float = 0.0) -> np.ndarray:
    """A frontal 70-point face about 100 px wide (a face in a 512 px frame), iBUG order.

    ``eye_open`` scales the 8 px lid gap (0.1: closed); ``mouth_open`` drops the lower lip by up to 14 px.
    """
    face = np.zeros((70, 2))
    face[:17] = np.stack([np.linspace(-50, 50, 17), 10 + 55 * np.sin(np.linspace(0, np.pi, 17))], axis=1)
    face[17:22] = np.stack([np.linspace(-38, -8, 5), np.full(5, -22)], axis=1)
    face[22:27] = np.stack([np.linspace(8, 38, 5), np.full(5, -22)], axis=1)
    face[27:31] = np.stack([np.zeros(4), np.linspace(-10, 15, 4)], axis=1)
    face[31:36] = np.stack([np.linspace(-10, 10, 5), np.full(5, 20)], axis=1)
    lid = 4 * eye_open
    for start, x in ((36, -22), (42, 22)):
        face[start : start + 6] = [(x - 11, -10), (x - 4, -10 - lid), (x + 4, -10 - lid), (x + 11, -10),
                                   (x + 4, -10 + lid), (x - 4, -10 + lid)]  # fmt: skip
    drop = 14 * mouth_open
    face[48:60] = [(-22, 38), (-14, 34), (-5, 33), (0, 34), (5, 33), (14, 34), (22, 38), (14, 44 + drop),
                   (5, 46 + drop), (0, 46 + drop), (-5, 46 + drop), (-14, 44 + drop)]  # fmt: skip
    face[60:68] = [(-18, 38), (-6, 37), (0, 37), (6, 37), (18, 38), (6, 39 + drop), (0, 39 + drop), (-6, 39 + drop)]
    face[68], face[69] = face[36:42].mean(axis=0), face[42:48].mean(axis=0)
    return face + (256, 150)


def expression_sequence(blink_frames: int) -> np.ndarray:
    """60 frames at 30 fps: a blink of ``blink_frames`` frames at frame 20, the mouth open 36..40."""
    eye_open = np.ones(60)
    eye_open[20 : 20 + blink_frames] = 0.1
    mouth_open = np.zeros(60)
    mouth_open[36:41] = (0.4, 1.0, 1.0, 0.6, 0.2)
    return np.stack([face_points(eye, mouth) for eye, mouth in zip(eye_open, mouth_open)])


def face_track(faces: np.ndarray) -> np.ndarray:
    track = np.zeros((len(faces), NUM_TRACK_POINTS, 3), dtype=np.float32)
    track[:, :NUM_BODY_POINTS] = (256, 300, 0.9)
    track[:, FACE_START:, :2] = faces
    track[:, FACE_START:, 2] = 0.9
    return track


def gap(faces: np.ndarray, upper: list[int], lower: list[int]) -> np.ndarray:
    return faces[:, lower, 1].mean(axis=1) - faces[:, upper, 1].mean(axis=1)


@pytest.mark.parametrize("blink_frames", [2, 3])
def test_smoothing_keeps_blinks_and_mouth_movements(blink_frames):
    clean = expression_sequence(blink_frames)
    blink, mouth = slice(20, 20 + blink_frames), slice(37, 39)
    for seed in range(3):  # MediaPipe-like jitter: 0.6 px per coordinate on a 100 px face
        noisy = clean + np.random.default_rng(seed).normal(0, 0.6, clean.shape)
        smoothed = smooth_track(face_track(noisy), fps=30, frame_size=512)[:, FACE_START:, :2]
        for upper, lower, frames in ((UPPER_LIDS, LOWER_LIDS, blink), (UPPER_INNER_LIP, LOWER_INNER_LIP, mouth)):
            rest = np.median(gap(clean, upper, lower))
            truth = np.mean(gap(clean, upper, lower)[frames] - rest)
            kept = np.mean(gap(smoothed, upper, lower)[frames] - rest) / truth
            assert kept >= 0.9, (seed, upper, kept)


def test_smoothing_halves_jitter_on_a_still_face_and_follows_the_head():
    still = np.stack([face_points()] * 90)
    noisy = still + np.random.default_rng(0).normal(0, 0.6, still.shape)
    smoothed = smooth_track(face_track(noisy), fps=30, frame_size=512)
    rms = lambda faces: np.sqrt(((faces - still) ** 2).sum(axis=-1).mean())  # noqa: E731
    assert rms(smoothed[:, FACE_START:, :2]) <= 0.5 * rms(noisy)
    moving = still.copy()
    moving[..., 0] += 3 * np.arange(90)[:, None]  # the head walks 3 px per frame
    followed = smooth_track(face_track(moving), fps=30, frame_size=512)[:, FACE_START:, :2]
    assert np.abs(followed[30:] - moving[30:]).max() < 2.0  # less than a frame behind, like the body points
    assert np.array_equal(smooth_track(face_track(noisy), 30, 512, strength=0), face_track(noisy))


def test_a_face_shrunk_to_one_point_stays_finite():
    """All 70 face points on one spot (a detector that sees only a dot): no 0/0, no NaN."""
    dot = np.repeat(face_points()[:1], 70, axis=0)
    faces = np.stack([dot + (t, 0) for t in range(10)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        smoothed = smooth_track(face_track(faces), fps=30, frame_size=512)
    assert np.isfinite(smoothed).all()
    assert np.allclose(smoothed[:, FACE_START:, :2] - smoothed[:, FACE_START : FACE_START + 1, :2], 0)
