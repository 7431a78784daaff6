"""Model sizes: the published SD 1.5 MagicPose layout, and tiny random models for tests and demos."""

from __future__ import annotations

import copy
import dataclasses

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel

from magicpose_cli.models.settings import RecommendedSettings
from magicpose_cli.models.networks import AppearanceUNet, PromptEmbedding

ORIGINAL_SAMPLING_SETTINGS = RecommendedSettings(steps=50, guidance=7.0, scheduler="ddim")
"""How the original inference samples (test_any_image_pose.py): DDIM, 50 steps, guidance 7."""
SD15_RECOMMENDED_SETTINGS = dataclasses.replace(ORIGINAL_SAMPLING_SETTINGS, width=512, height=512)
"""The published model: the above at 512x512, the size it was trained and evaluated at."""

_SD15_UNET_PARAMS = {
    "image_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "attention_resolutions": [4, 2, 1],
    "num_res_blocks": 2,
    "channel_mult": [1, 2, 4, 4],
    "num_heads": 8,
    "use_spatial_transformer": True,
    "transformer_depth": 1,
    "context_dim": 768,
    "legacy": False,
}

SD15_ORIGINAL_CONFIG = {
    "model": {
        "params": {
            "linear_start": 0.00085,
            "linear_end": 0.012,
            "timesteps": 1000,
            "scale_factor": 0.18215,
            "unet_config": {"params": dict(_SD15_UNET_PARAMS)},
            "appearance_control_stage_config": {"params": dict(_SD15_UNET_PARAMS, hint_channels=3)},
            "pose_control_stage_config": {"params": dict(_SD15_UNET_PARAMS, hint_channels=3)},
            "first_stage_config": {
                "params": {
                    "embed_dim": 4,
                    "ddconfig": {
                        "double_z": True,
                        "z_channels": 4,
                        "resolution": 256,
                        "in_channels": 3,
                        "out_ch": 3,
                        "ch": 128,
                        "ch_mult": [1, 2, 4, 4],
                        "num_res_blocks": 2,
                        "attn_resolutions": [],
                        "dropout": 0.0,
                    },
                }
            },
        }
    }
}
"""The published ``cldm_v15_reference_only_pose.yaml``, reduced to what conversion reads."""


def sd15_original_config() -> dict:
    return copy.deepcopy(SD15_ORIGINAL_CONFIG)


def sd15_scheduler() -> DDIMScheduler:
    """The sampler of the original code: DDIM over SD 1.5's scaled-linear schedule, ldm spacing."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
    )


def tiny_components(
    seed: int = 0,
    block_out_channels: tuple[int, ...] = (32, 64),
    cross_attention_dim: int = 32,
    vae_channels: tuple[int, ...] = (16, 16, 32, 32),
) -> dict:
    """Small random SD-like components (latents at 1/8 of the image) that run fast on a CPU."""
    torch.manual_seed(seed)
    unet_config = dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=block_out_channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",) * len(block_out_channels),
        up_block_types=("CrossAttnUpBlock2D",) * len(block_out_channels),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=2,
        norm_num_groups=8,
    )
    unet = UNet2DConditionModel(**unet_config)
    reference_unet = AppearanceUNet(**unet_config)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    for residual_conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
        torch.nn.init.normal_(residual_conv.weight, std=0.02)  # untrained but not inert
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=vae_channels, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels), up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
        norm_num_groups=8, sample_size=64,
    )  # fmt: skip
    empty_prompt = PromptEmbedding(77, cross_attention_dim)
    empty_prompt.embeds.data.normal_()
    return {
        "unet": unet,
        "reference_unet": reference_unet,
        "controlnet": controlnet,
        "vae": vae,
        "scheduler": sd15_scheduler(),
        "empty_prompt": empty_prompt,
    }
