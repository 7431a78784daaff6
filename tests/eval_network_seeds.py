"""Seeded weights and inputs for the metric networks' fixtures (tests/fixtures/eval_networks/README.md)."""

from __future__ import annotations

import zlib

import torch

def seeded_state_dict(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """Weights that depend only on each key's name: scaled normal weights, positive variances."""
    state = {}
    for key, shape in shapes.items():
        generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=generator)
        elif key.endswith(("running_mean", "bias")) or len(shape) == 1:
            state[key] = 0.1 * torch.randn(shape, generator=generator)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()))
            state[key] = torch.randn(shape, generator=generator) * (1.0 / fan_in) ** 0.5
    return state


def seeded_clip(size: int, frames: int) -> torch.Tensor:
    """One clip, 1 x 3 x frames x size x size, in the value range each network is fed."""
    return torch.rand((1, 3, frames, size, size), generator=torch.Generator().manual_seed(7)) * 2 - 1
