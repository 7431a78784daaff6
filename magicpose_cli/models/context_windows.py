"""Context windows: a motion module sees a fixed number of frames, a video may have any number.

Each denoising step predicts the noise of every window of ``length`` frames (consecutive windows
overlap by ``overlap`` frames; the last one is shifted to end at the last frame, so every window is
whole), then fuses the predictions frame by frame as a weighted mean. Pyramid weights (1, 2, ...,
up to the middle and down again) let a window's edge frames count least, so one window hands over
to the next gradually; flat weights average plainly. A video no longer than one window is one window.

Prediction and fusion are separate steps over a list of windows, so the windows of one step can be
predicted anywhere (several processes, say) and fused from their weighted sums.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from magicpose_cli.choices import ContextFusion


def context_windows(num_frames: int, length: int, overlap: int) -> list[range]:
    """The frame ranges of the windows covering ``num_frames`` frames, in order."""
    if length < 1 or not 0 <= overlap < length:
        raise ValueError(f"context windows need length >= 1 and 0 <= overlap < length, got {length} and {overlap}")
    if num_frames <= length:
        return [range(num_frames)]
    stride = length - overlap
    starts = list(range(0, num_frames - length, stride)) + [num_frames - length]
    return [range(start, start + length) for start in dict.fromkeys(starts)]


def window_weights(length: int, fusion: ContextFusion | str) -> torch.Tensor:
    """Per-frame weights of one window: pyramid ``min(k + 1, length - k)``, or flat ones."""
    if ContextFusion(fusion) is ContextFusion.flat:
        return torch.ones(length)
    positions = torch.arange(length)
    return torch.minimum(positions + 1, length - positions).float()


def weighted_window_sum(
    windows: list[range], predictions: Iterable[torch.Tensor], num_frames: int, fusion: ContextFusion | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of weight x prediction per frame, sum of weights per frame) over the windows given.

    Both are sums, so the parts of several processes add up to the whole before :func:`fused`.
    """
    total = weights_total = None
    for window, prediction in zip(windows, predictions, strict=True):
        weights = window_weights(len(window), fusion).to(prediction.device, torch.float32)
        if total is None:
            total = prediction.new_zeros((num_frames, *prediction.shape[1:]), dtype=torch.float32)
            weights_total = torch.zeros(num_frames, device=prediction.device)
        frames = slice(window.start, window.stop)
        total[frames] += weights.view(-1, *[1] * (prediction.ndim - 1)) * prediction.float()
        weights_total[frames] += weights
    if total is None:
        raise ValueError("no windows to fuse")
    return total, weights_total


def fused(total: torch.Tensor, weights_total: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The weighted mean per frame, from :func:`weighted_window_sum`'s sums."""
    if bool((weights_total == 0).any()):
        raise ValueError("some frames are in no window")
    return (total / weights_total.view(-1, *[1] * (total.ndim - 1))).to(dtype)


def fuse_window_predictions(
    windows: list[range], predictions: Iterable[torch.Tensor], num_frames: int, fusion: ContextFusion | str
) -> torch.Tensor:
    """One prediction per frame from the windows' overlapping predictions (weighted mean); a single
    window over the whole video is its prediction unchanged (one pass)."""
    if len(windows) == 1 and windows[0] == range(num_frames):
        return next(iter(predictions))
    dtypes: list[torch.dtype] = []

    def noting_dtype():
        for prediction in predictions:
            dtypes.append(prediction.dtype)
            yield prediction

    total, weights_total = weighted_window_sum(windows, noting_dtype(), num_frames, fusion)
    return fused(total, weights_total, dtypes[0])
