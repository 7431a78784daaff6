"""Per-frame image metrics: PSNR, SSIM and L1, correct and as the published tables computed them.

The MagicPose paper reports the numbers of DisCo's ``tool/metrics`` (copied into MagicDance), which
reads frames with OpenCV as uint8 and computes:

- PSNR on the uint8 arrays without a cast, so ``a - b`` and its square wrap modulo 256: each pixel
  adds ``(a - b)**2 mod 256`` (a difference of 16 adds nothing) and the value never falls below
  ``10*log10(255) = 24.07`` dB. :func:`psnr_disco` reproduces that bit for bit, only to compare with
  published tables; :func:`psnr` is the correct value (what DisCo computes since its commit 6190108).
- SSIM on OpenCV's grey conversion of the frames with scikit-image's defaults (:func:`ssim`).
- L1 as ``mean |a - b| / (H * W)`` on 0..255 values, which depends on the resolution
  (:func:`l1_disco`); :func:`l1` is the plain mean absolute difference in [0, 1].

Frames are HxWx3 RGB arrays, uint8 (0..255) or float (0..1).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from magicpose_cli.images import to_uint8  # noqa: F401  (also this module's: the metrics take either kind)

DISCO_IDENTICAL_PSNR = 100.0
"""What DisCo's scripts give identical frames (zero error), so that a mean over frames stays finite."""


def to_unit(frames) -> np.ndarray:
    """Frames as float64 in [0, 1] (uint8 input is divided by 255, floats are kept)."""
    array = np.asarray(frames)
    return array.astype(np.float64) / 255.0 if array.dtype == np.uint8 else array.astype(np.float64)


def psnr(generated, target, identical: float = math.inf) -> float:
    """Peak signal-to-noise ratio in dB, computed in float (``identical`` for zero error; DisCo's
    scripts use :data:`DISCO_IDENTICAL_PSNR`)."""
    generated, target = to_unit(generated), to_unit(target)
    if np.array_equal(generated, target):
        return float(identical)
    return float(peak_signal_noise_ratio(target, generated, data_range=1.0))


def psnr_disco(generated, target) -> float:
    """The PSNR of the published tables: uint8 arithmetic that wraps modulo 256 (see the module notes)."""
    wrapped = (to_uint8(generated) - to_uint8(target)) ** 2  # stays uint8, on purpose: the original's bug
    mse = float(np.mean(wrapped))
    if mse == 0:
        return DISCO_IDENTICAL_PSNR
    return 20 * math.log10(255.0 / math.sqrt(mse))


def ssim(generated, target, grayscale: bool = True) -> float:
    """Structural similarity. ``grayscale``: the paper's (OpenCV's grey conversion of the uint8 frames,
    scikit-image's defaults: 7x7 window, uniform weights, data range 255); otherwise the mean over
    the three colour channels of the [0, 1] frames."""
    if grayscale:
        grey = [cv2.cvtColor(np.ascontiguousarray(to_uint8(frame)), cv2.COLOR_RGB2GRAY) for frame in (target, generated)]
        return float(structural_similarity(grey[0], grey[1], data_range=255))
    return float(structural_similarity(to_unit(target), to_unit(generated), channel_axis=-1, data_range=1.0))


def l1(generated, target) -> float:
    """Mean absolute difference over [0, 1] intensities."""
    return float(np.abs(to_unit(generated) - to_unit(target)).mean())


def l1_disco(generated, target) -> float:
    """The L1 of the published tables: mean absolute difference of 0..255 values divided by H*W
    (so it shrinks with the resolution: 0.81e-4 at 512x512 is a mean difference of 21 levels)."""
    generated, target = to_uint8(generated), to_uint8(target)
    height, width = target.shape[:2]
    return float(np.abs(generated.astype(np.float64) - target.astype(np.float64)).mean() / (height * width))
