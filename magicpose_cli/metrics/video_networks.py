"""The two video networks of the published video metrics, with the state-dict layout of their checkpoints.

- :class:`ResNet3d50`: Hara et al.'s 3D ResNet-50 ("shortcut B": a 1x1x1 convolution on every
  projection shortcut), trained on Kinetics-400 (``resnet-50-kinetics.pth``). FID-VID takes the
  2048 features of its final average pool; the classifier is kept only so the checkpoint loads whole.
- :class:`InceptionI3d`: Carreira and Zisserman's I3D (Inflated Inception-v1) with TensorFlow's
  "same" padding, 400 Kinetics classes (``i3d_pretrained_400.pt``). FVD takes its 400 logits
  averaged over time.

Module names, shapes and numerics follow the networks DisCo's ``tool/metrics`` builds
(``resnet3d.resnet50(shortcut_type="B", sample_size=112, sample_duration=16, last_fc=False)`` and
``InceptionI3d(400)``), so the published files load key for key: tests/fixtures/eval_networks
lists those keys and the original's outputs for seeded weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

RESNET_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride) of layer1..layer4
EXPANSION = 4


class Bottleneck3d(nn.Module):
    """1x1x1 -> 3x3x3 (strided) -> 1x1x1 convolutions, with a projection shortcut when the shape changes."""

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv3d(in_channels, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False), nn.BatchNorm3d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet3d50(nn.Module):
    """3D ResNet-50 for ``clip_length`` x ``size`` x ``size`` clips; ``forward`` gives the 2048 pooled features."""

    def __init__(self, num_classes: int = 400, clip_length: int = 16, size: int = 112):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        channels = 64
        for index, (width, blocks, stride) in enumerate(RESNET_STAGES, start=1):
            layer = []
            for block in range(blocks):
                layer.append(Bottleneck3d(channels, width, stride if block == 0 else 1))
                channels = width * EXPANSION
            setattr(self, f"layer{index}", nn.Sequential(*layer))
        pooled = (math.ceil(clip_length / 16), math.ceil(size / 32), math.ceil(size / 32))
        self.avgpool = nn.AvgPool3d(pooled, stride=1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(clips))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one dimension: (before, after), the odd pixel after."""
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """Zero-pad a B x C x T x H x W tensor so a (kernel, stride) window gives ceil(size / stride) outputs."""
    pads = [same_padding(size, k, s) for size, k, s in zip(x.shape[2:], kernel, stride)]
    return F.pad(x, [value for pair in reversed(pads) for value in pair])


class Unit3d(nn.Module):
    """A "same"-padded 3D convolution, with batch norm and ReLU unless told otherwise."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1), batch_norm=True, relu=True, bias=False):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, stride=self.stride, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame3d(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four branches concatenated: 1x1x1; 1x1x1 -> 3x3x3; 1x1x1 -> 3x3x3; 3x3x3 max pool -> 1x1x1."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3d(in_channels, widths[0])
        self.b1a = Unit3d(in_channels, widths[1])
        self.b1b = Unit3d(widths[1], widths[2], kernel=(3, 3, 3))
        self.b2a = Unit3d(in_channels, widths[3])
        self.b2b = Unit3d(widths[3], widths[4], kernel=(3, 3, 3))
        self.b3a = MaxPoolSame3d((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3d(in_channels, widths[5])
        self.out_channels = widths[0] + widths[2] + widths[4] + widths[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# The I3D stages in order: (name, inception widths) or (name, (kernel, stride)) for a max pool.
I3D_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2)),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class InceptionI3d(nn.Module):
    """I3D on B x 3 x T x 224 x 224 clips in [-1, 1]; ``forward`` gives the class logits averaged over time."""

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.stages = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3", *I3D_MIXED]
        self.Conv3d_1a_7x7 = Unit3d(3, 64, kernel=(7, 7, 7), stride=(2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame3d((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3d(64, 64)
        self.Conv3d_2c_3x3 = Unit3d(64, 192, kernel=(3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame3d((1, 3, 3), (1, 2, 2))
        channels = 192
        for name, spec in I3D_MIXED.items():
            if name.startswith("MaxPool"):
                setattr(self, name, MaxPoolSame3d(*spec))
            else:
                block = InceptionBlock(channels, spec)
                setattr(self, name, block)
                channels = block.out_channels
        self.avg_pool = nn.AvgPool3d(kernel_size=(1, 7, 7), stride=1)
        self.logits = Unit3d(channels, num_classes, batch_norm=False, relu=False, bias=True)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips
        for name in self.stages:
            x = getattr(self, name)(x)
        logits = self.logits(self.avg_pool(x))  # B x classes x T' x 1 x 1
        return logits.flatten(2).mean(dim=2)
