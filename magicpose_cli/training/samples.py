"""Sample grids during training: per fixed evaluation pair, reference | pose | generated | real target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from magicpose_cli.files import atomic_path
from magicpose_cli.models import MagicPosePipeline
from magicpose_cli.training.data import PairChoice, PairDataset

SAMPLES_DIR = "samples"


def _to_uint8(image: torch.Tensor, signed: bool) -> np.ndarray:
    """A 3xHxW tensor ([-1, 1] when ``signed``, else [0, 1]) as HxWx3 uint8."""
    unit = (image + 1) / 2 if signed else image
    return (unit.clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255).round().astype(np.uint8)


@torch.no_grad()
def sample_grid(
    pipeline: MagicPosePipeline,
    dataset: PairDataset,
    pairs: list[PairChoice],
    num_inference_steps: int,
    seed: int,
) -> Image.Image:
    """Generate each pair's target from its reference and pose map, as ``magicpose retarget`` would.

    The initial noise comes from ``seed`` alone, so grids of different steps differ only by the weights.
    """
    rows = []
    for index, pair in enumerate(pairs):
        sample = dataset.load(pair, index)
        generated = pipeline(
            reference_image=sample["reference"].unsqueeze(0),
            pose_maps=sample["pose_map"].unsqueeze(0),
            num_inference_steps=num_inference_steps,
            generator=torch.Generator().manual_seed(seed),
            output_type="pt",
        ).images[0]
        columns = [
            _to_uint8(sample["reference"], signed=True),
            _to_uint8(sample["pose_map"], signed=False),
            _to_uint8(generated, signed=False),
            _to_uint8(sample["target"], signed=True),
        ]
        rows.append(np.concatenate(columns, axis=1))
    return Image.fromarray(np.concatenate(rows, axis=0))


def save_sample_grid(grid: Image.Image, run_dir: Path, step: int) -> Path:
    path = Path(run_dir) / SAMPLES_DIR / f"step-{step:06d}.png"
    with atomic_path(path) as temporary:
        grid.save(temporary)
    return path
