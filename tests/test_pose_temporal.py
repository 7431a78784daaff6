"""Over time: filling frames where detection failed, One-Euro smoothing."""

import numpy as np

from magicpose_cli.pose.temporal import fill_gaps, frame_statuses, smooth_track


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
