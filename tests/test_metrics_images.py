"""The per-frame and temporal metrics against independent computations on real photos (scikit-image's)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFilter
from skimage import data
from skimage.metrics import structural_similarity

from magicpose_cli.metrics.images import l1, l1_disco, psnr, psnr_disco, ssim
from magicpose_cli.metrics.temporal import flicker_excess, temporal_error, temporal_psnr


def photo(name: str = "astronaut", size: int = 96) -> np.ndarray:
    image = getattr(data, name)()
    image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.LANCZOS))


def degraded(image: np.ndarray, how: str, seed: int = 0) -> np.ndarray:
    """The photo with noise, shifted, or blurred: what a generated frame's errors look like."""
    if how == "noise":
        noise = np.random.default_rng(seed).normal(0, 20, image.shape)
        return np.clip(image + noise, 0, 255).astype(np.uint8)
    if how == "shift":
        return np.roll(image, (3, -5), axis=(0, 1))
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(2)))


def uint8_psnr_by_hand(generated: np.ndarray, target: np.ndarray) -> float:
    """DisCo's psnr_eval, written out: every difference and square taken modulo 256 as uint8 does."""
    total = 0
    for a, b in zip(generated.reshape(-1).tolist(), target.reshape(-1).tolist()):
        total += (((a - b) % 256) ** 2) % 256
    mse = total / generated.size
    return 100.0 if mse == 0 else 20 * math.log10(255 / math.sqrt(mse))


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
@pytest.mark.parametrize("how", ["noise", "shift", "blur"])
def test_ssim_psnr_and_l1_match_independent_computations(tmp_path, name, how):
    target = photo(name)
    generated = degraded(target, how)
    # SSIM as the original reads files: cv2.imread (BGR), OpenCV's grey conversion, scikit-image's defaults.
    Image.fromarray(target).save(tmp_path / "gt.png")
    Image.fromarray(generated).save(tmp_path / "gen.png")
    grey = [cv2.cvtColor(cv2.imread(str(tmp_path / file)), cv2.COLOR_BGR2GRAY) for file in ("gen.png", "gt.png")]
    assert ssim(generated, target) == pytest.approx(structural_similarity(grey[0], grey[1], full=True)[0], abs=1e-12)
    assert psnr_disco(generated, target) == pytest.approx(uint8_psnr_by_hand(generated, target), abs=1e-9)
    error = generated.astype(np.float64) - target.astype(np.float64)
    assert psnr(generated, target) == pytest.approx(10 * math.log10(255**2 / np.mean(error**2)), abs=1e-9)
    assert l1(generated, target) == pytest.approx(np.abs(error).mean() / 255, abs=1e-12)
    assert l1_disco(generated, target) == pytest.approx(np.abs(error).mean() / (96 * 96), abs=1e-15)
    assert psnr_disco(generated, target) > 24.0  # the wrap-around bug's floor
    assert psnr(generated / 255.0, target / 255.0) == pytest.approx(psnr(generated, target), abs=1e-9)  # float frames in [0, 1]


def test_psnr_worked_example_of_docs_evaluation():
    """docs/evaluation.md's figures (the astronaut at 512x512 with Gaussian noise): the published PSNR
    hardly moves as the error grows, and a photo 16 levels too bright everywhere scores 100 dB."""
    target = data.astronaut()
    rows = []
    for sigma in (2, 5, 10, 20, 40, 80):
        noisy = np.clip(target + np.random.default_rng(0).normal(0, sigma, target.shape), 0, 255).astype(np.uint8)
        rows.append((sigma, round(psnr(noisy, target), 2), round(psnr_disco(noisy, target), 2)))
    assert rows == [(2, 42.19, 42.19), (5, 34.53, 34.61), (10, 28.6, 30.71), (20, 22.73, 29.1), (40, 17.09, 28.42), (80, 11.98, 28.23)]
    brighter = np.where(target <= 239, target.astype(np.int64) + 16, target).astype(np.uint8)  # 16 levels up, where there is room
    assert psnr_disco(brighter, target) == 100.0  # every squared difference, 256, wraps to 0: "identical"
    assert round(psnr(brighter, target), 2) == 24.13


def test_identical_frames_and_colour_ssim():
    target = photo()
    assert math.isinf(psnr(target, target)) and psnr(target, target, identical=100.0) == 100.0
    assert psnr_disco(target, target) == 100.0 and ssim(target, target) == pytest.approx(1.0)
    colour = structural_similarity(target / 255.0, degraded(target, "noise") / 255.0, channel_axis=-1, data_range=1.0)
    assert ssim(degraded(target, "noise"), target, grayscale=False) == pytest.approx(colour)


def test_temporal_metrics_against_frame_differences():
    frames = np.stack([np.roll(photo(), shift, axis=1) for shift in range(4)])  # a panning camera
    generated = np.stack([degraded(frame, "noise", seed) for seed, frame in enumerate(frames)])
    g, t = generated / 255.0, frames / 255.0
    expected = np.mean([np.abs((g[i + 1] - g[i]) - (t[i + 1] - t[i])).mean() for i in range(3)])
    assert temporal_error(generated, frames) == pytest.approx(expected)
    mse = np.mean([((g[i + 1] - g[i]) - (t[i + 1] - t[i])) ** 2 for i in range(3)])
    assert temporal_psnr(generated, frames) == pytest.approx(-10 * math.log10(mse))
    still = np.stack([frames[0]] * 4)
    assert temporal_error(still, frames) == pytest.approx(np.abs(np.diff(t, axis=0)).mean())  # a still video misses all the motion
    assert temporal_error(frames, frames) == 0.0 and math.isinf(temporal_psnr(frames, frames))
    assert flicker_excess(generated, frames) > 0 > flicker_excess(still, frames)
    with pytest.raises(ValueError, match="ground truth"):
        temporal_error(generated[:2], frames)
