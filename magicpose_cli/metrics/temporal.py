"""Temporal metrics: does a video change from frame to frame the way its ground truth does?

Per-frame scores cannot see flicker: a video whose frames are each as good as the next may still
jitter. Two measures look at consecutive frames instead:

- :func:`temporal_error`: the mean absolute error of the frame differences ``frame[t+1] - frame[t]``
  against the ground truth's (0 when the video moves exactly as the ground truth does; a still
  video scores the ground truth's own motion, a flickering one more); :func:`temporal_psnr` is the
  same error as a PSNR over the [0, 1] scale.
- :func:`flicker_excess`: how much more the generated frames change than the ground truth's
  (:func:`flicker`, the mean absolute change between consecutive frames), signed.

Videos are N x H x W x 3 arrays, uint8 or float in [0, 1]; fewer than two frames have no motion.
"""

from __future__ import annotations

import math

import numpy as np

from magicpose_cli.metrics.images import to_unit


def frame_differences(frames) -> np.ndarray:
    """``frame[t+1] - frame[t]`` for each t, in [0, 1] units ((N-1) x H x W x 3)."""
    return np.diff(to_unit(frames), axis=0)


def _check_same_shape(generated: np.ndarray, target: np.ndarray) -> None:
    if generated.shape != target.shape:
        raise ValueError(f"generated frames are {generated.shape} but the ground truth is {target.shape}")


def temporal_error(generated, target) -> float:
    """Mean |(g[t+1] - g[t]) - (t[t+1] - t[t])| over all consecutive frames (0.0 for fewer than two)."""
    generated, target = np.asarray(generated), np.asarray(target)
    _check_same_shape(generated, target)
    if len(generated) < 2:
        return 0.0
    return float(np.abs(frame_differences(generated) - frame_differences(target)).mean())


def temporal_psnr(generated, target, identical: float = math.inf) -> float:
    """PSNR (dB, peak 1) of the generated frame differences against the ground truth's (``identical``
    when they are equal or there are fewer than two frames)."""
    generated, target = np.asarray(generated), np.asarray(target)
    _check_same_shape(generated, target)
    if len(generated) < 2:
        return float(identical)
    mse = float(np.mean((frame_differences(generated) - frame_differences(target)) ** 2))
    return float(identical) if mse == 0 else -10.0 * math.log10(mse)


def flicker(frames) -> float:
    """Mean absolute change between consecutive frames (0 for a still video or a single frame)."""
    frames = to_unit(frames)
    if len(frames) < 2:
        return 0.0
    return float(np.abs(np.diff(frames, axis=0)).mean())


def flicker_excess(generated, target) -> float:
    """Flicker of ``generated`` minus that of ``target``: positive when the generated video jitters more."""
    return flicker(generated) - flicker(target)
