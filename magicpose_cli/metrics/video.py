"""FID-VID and FVD: Fréchet distances between the features of 16-frame clips, as DisCo computes them.

A clip starts at every frame whose next 15 frames exist (stride 1, overlapping), so a missing frame
drops the clips across it; generated and ground-truth clips are featurised separately and the
distance is taken over all clips of all videos pooled. Each frame is resized to a square with PIL's
bicubic filter on float pixels, channel by channel (the clean-fid resizer DisCo uses), then:

- ``fid_vid`` ("FVD-3DRN50" in DisCo's code): 112x112, the Kinetics mean subtracted (no scaling),
  the 2048 average-pool features of a 3D ResNet-50;
- ``fvd`` ("FVD-3DInception"): 224x224 scaled to [-1, 1], I3D's 400 logits averaged over time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.metrics.video_networks import InceptionI3d, ResNet3d50
from magicpose_cli.metrics.weights import I3D_KINETICS, RESNET3D_KINETICS, WeightFile, checked_sha256, load_tensors, locate

CLIP_LENGTH = 16
KINETICS_MEAN = np.array([114.7748, 107.7354, 99.4750], dtype=np.float32)  # RGB, 0..255 (Hara et al.)


@dataclass(frozen=True)
class ClipMetric:
    name: str
    size: int
    weight: WeightFile


FID_VID = ClipMetric("fid_vid", 112, RESNET3D_KINETICS)
FVD = ClipMetric("fvd", 224, I3D_KINETICS)


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """A uint8 HxWx3 frame as size x size x 3 float32 (0..255), each channel resized bicubically as a float image."""
    channels = [Image.fromarray(frame[:, :, channel].astype(np.float32)).resize((size, size), Image.BICUBIC) for channel in range(3)]
    return np.stack([np.asarray(channel) for channel in channels], axis=-1)


def clip_input(metric: ClipMetric, frames: list[np.ndarray]) -> np.ndarray:
    """3 x T x S x S network input from T resized frames, normalised as the metric's network expects."""
    clip = np.stack(frames)
    clip = clip - KINETICS_MEAN if metric is FID_VID else clip / 127.5 - 1.0
    return np.ascontiguousarray(clip.transpose(3, 0, 1, 2), dtype=np.float32)


class ClipWindows:
    """The last :data:`CLIP_LENGTH` frames of a video, fed one at a time; a full window of consecutive
    frame numbers is a clip."""

    def __init__(self, length: int = CLIP_LENGTH):
        self.length = length
        self._frames: deque = deque(maxlen=length)
        self._last: int | None = None

    def push(self, number: int, frame) -> list | None:
        """Add frame ``number``; the clip ending at it, when its ``length`` frames are all there."""
        if self._last is not None and number != self._last + 1:
            self._frames.clear()
        self._last = number
        self._frames.append(frame)
        return list(self._frames) if len(self._frames) == self.length else None

    def reset(self) -> None:
        self._frames.clear()
        self._last = None


def clip_starts(numbers: list[int], length: int = CLIP_LENGTH) -> list[int]:
    """The frame numbers clips start at: those whose next ``length - 1`` numbers are all present."""
    windows, starts = ClipWindows(length), []
    for number in numbers:
        if windows.push(number, number) is not None:
            starts.append(number - length + 1)
    return starts


def load_clip_network(metric: ClipMetric, weights_dir, device) -> tuple[object, str]:
    """The metric's network with its published weights from ``weights_dir``, and their SHA-256."""
    path = locate(metric.weight, weights_dir)
    digest = checked_sha256(metric.weight, path)
    checkpoint = load_tensors(path)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    state = {key.removeprefix("module."): value for key, value in state.items()}  # saved from DataParallel
    network = ResNet3d50() if metric is FID_VID else InceptionI3d()
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise MagicPoseError(f"{path} does not fit the {metric.name} network ({str(error).splitlines()[0]}); is it {metric.weight.name}?") from None
    return network.to(device).eval(), digest


def clip_features(network, clips: list[np.ndarray], device) -> np.ndarray:
    """Features of a batch of 3 x T x S x S clips (one row per clip)."""
    import torch

    with torch.no_grad():
        return network(torch.from_numpy(np.stack(clips)).to(device)).cpu().numpy().astype(np.float64)
