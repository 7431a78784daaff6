"""The motion stage's own parts: its motion module, its clips, its sample strips and its output folder.

Everything else (accelerate, the optimiser, exact resume, the checkpoint limit, the loss log) is
the engine's, shared with the image stages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import MotionAdapter
from PIL import Image

from magicpose_cli.files import atomic_directory, atomic_path
from magicpose_cli.models import MagicPosePipeline
from magicpose_cli.models.motion import motion_transformers
from magicpose_cli.training.clips import ClipDataset, evaluation_clip
from magicpose_cli.training.samples import SAMPLES_DIR, _to_uint8

MOTION_MODULE_DIR = "motion_module"
FRESH_MAX_FRAMES = 32  # positional table of a module trained from scratch, as the published ones


def fresh_motion_adapter(unet_config) -> MotionAdapter:
    """A motion module for this UNet, from scratch: the published layout (mid block, 8 heads where they divide
    the channels) with zero output projections, so before training it changes nothing."""
    channels = tuple(unet_config["block_out_channels"])
    heads = 8 if all(channel % 8 == 0 for channel in channels) else 1
    adapter = MotionAdapter(
        block_out_channels=channels, motion_layers_per_block=unet_config["layers_per_block"], motion_num_attention_heads=heads,
        motion_norm_num_groups=unet_config["norm_num_groups"], motion_max_seq_length=FRESH_MAX_FRAMES, use_motion_mid_block=True,
    )  # fmt: skip
    for transformer in motion_transformers(adapter):
        torch.nn.init.zeros_(transformer.proj_out.weight)
        torch.nn.init.zeros_(transformer.proj_out.bias)
    return adapter


def with_motion_module(pipeline: MagicPosePipeline, motion_module: Path | None) -> MagicPosePipeline:
    """``pipeline`` with a motion module: the one at ``motion_module`` (a file, folder or hub id), else a fresh one."""
    from magicpose_cli.models.motion import check_adapter_fits
    from magicpose_cli.models.motion_loading import load_motion_adapter
    from magicpose_cli.motion_store import motion_module_path

    if motion_module is None:
        adapter = fresh_motion_adapter(pipeline.unet.config)
    else:
        path = motion_module_path(motion_module, "--motion-module")
        adapter = load_motion_adapter(path)
        check_adapter_fits(adapter.config, pipeline.unet.config, str(path))
    return MagicPosePipeline(**{**pipeline.components, "motion_adapter": adapter})


def clip_dataset(videos, config, train: bool) -> ClipDataset:
    return ClipDataset(videos, config.resolution, config.seed, config.clip_frames, config.clip_stride, train=train)


@torch.no_grad()
def sample_strip(pipeline: MagicPosePipeline, dataset: ClipDataset, num_inference_steps: int, seed: int) -> Image.Image:
    """Rows: reference and pose maps | generated clip | real clip, for the fixed evaluation clip."""
    choice = evaluation_clip(dataset.clip_frames, dataset.clip_stride)
    sample = dataset.load(choice, 0)
    generated = pipeline(
        reference_image=sample["reference"].unsqueeze(0), pose_maps=sample["pose_map"], num_inference_steps=num_inference_steps,
        generator=torch.Generator().manual_seed(seed), output_type="pt", context_frames=dataset.clip_frames, context_overlap=0,
        frames_per_batch=dataset.clip_frames,
    ).images  # fmt: skip
    rows = [
        [_to_uint8(sample["reference"], signed=True)] + [_to_uint8(pose, signed=False) for pose in sample["pose_map"]],
        [np.zeros_like(_to_uint8(sample["reference"], signed=True))] + [_to_uint8(frame, signed=False) for frame in generated],
        [np.zeros_like(_to_uint8(sample["reference"], signed=True))] + [_to_uint8(frame, signed=True) for frame in sample["target"]],
    ]
    return Image.fromarray(np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0))


def save_sample_strip(strip: Image.Image, run_dir: Path, step: int) -> Path:
    path = Path(run_dir) / SAMPLES_DIR / f"step-{step:06d}.png"
    with atomic_path(path) as temporary:
        strip.save(temporary)
    return path


def save_motion_module(adapter: MotionAdapter, run_dir: Path) -> Path:
    """The trained motion module as a MotionAdapter folder (float32), which ``--motion-module`` loads."""
    saved = MotionAdapter.from_config(adapter.config)
    saved.load_state_dict({name: value.float().cpu() for name, value in adapter.state_dict().items()})
    target = Path(run_dir) / MOTION_MODULE_DIR
    with atomic_directory(target) as staging:
        saved.save_pretrained(staging, safe_serialization=True)
    return target
