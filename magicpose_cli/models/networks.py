"""The networks of MagicPose beyond stock diffusers ones, and the noise predictor that joins them."""

from __future__ import annotations

import functools

import torch
from diffusers import ConfigMixin, ControlNetModel, ModelMixin, UNet2DConditionModel, UNetMotionModel
from diffusers.configuration_utils import register_to_config
from torch import nn

from magicpose_cli.models.reference_attention import ReferenceAttention, ReferenceFeatures


class AppearanceUNet(UNet2DConditionModel):
    """The appearance control model: an SD UNet whose only product is its self-attention inputs.

    Nothing reads its noise prediction, so it has no output head (no weights, no work).
    """

    @functools.wraps(UNet2DConditionModel.__init__)  # keeps the signature diffusers reads configs by
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.conv_norm_out = None
        self.conv_out = nn.Identity()


class PromptEmbedding(ModelMixin, ConfigMixin):
    """A stored text embedding (CLIP of the empty prompt) so that the default needs no tokenizer."""

    @register_to_config
    def __init__(self, sequence_length: int = 77, embedding_dim: int = 768):
        super().__init__()
        self.embeds = nn.Parameter(torch.zeros(1, sequence_length, embedding_dim), requires_grad=False)

    def forward(self) -> torch.Tensor:
        return self.embeds


class MagicPoseDenoiser:
    """Noise prediction of MagicPose: main UNet + appearance attention + pose ControlNet residuals.

    Shared by the sampling pipeline and by training, so both compute exactly the same thing. With
    a motion UNet the latents are ``videos x num_frames`` frames (one video by default) that the
    UNet runs together; the ControlNet still runs per frame.
    """

    def __init__(self, unet: UNet2DConditionModel, reference_unet: UNet2DConditionModel, controlnet: ControlNetModel):
        self.unet, self.reference_unet, self.controlnet = unet, reference_unet, controlnet
        self.reference_attention = ReferenceAttention(unet, reference_unet)

    def reference_features(
        self, reference_latents: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor
    ) -> ReferenceFeatures:
        """Appearance features of clean reference latents at ``timestep`` (one run for all frames)."""
        return self.reference_attention.encode(reference_latents, timestep, encoder_hidden_states)

    def __call__(
        self,
        latents: torch.Tensor,
        timestep,
        encoder_hidden_states: torch.Tensor,
        reference_features: ReferenceFeatures | None = None,
        pose_maps: torch.Tensor | None = None,
        pose_scale: float = 1.0,
        num_frames: int | None = None,
    ) -> torch.Tensor:
        """Predict the noise in ``latents``; a path given as None is off (both None: plain SD UNet).

        ``timestep``: one, or one per video (per image without a motion UNet)."""
        encoder_hidden_states = encoder_hidden_states.expand(latents.shape[0], -1, -1)
        runs_videos = isinstance(self.unet, UNetMotionModel)
        num_frames = (num_frames or latents.shape[0]) if runs_videos else 1
        per_video = torch.is_tensor(timestep) and timestep.ndim == 1 and num_frames > 1
        frame_timestep = timestep.repeat_interleave(num_frames) if per_video else timestep
        down_residuals = mid_residual = None
        if pose_maps is not None:
            down_residuals, mid_residual = self.controlnet(
                latents,
                frame_timestep,
                encoder_hidden_states,
                controlnet_cond=pose_maps.to(latents.dtype),
                conditioning_scale=pose_scale,
                return_dict=False,
            )
        noise = self.unet(
            latents.unflatten(0, (-1, num_frames)).transpose(1, 2) if runs_videos else latents,
            timestep,
            encoder_hidden_states,
            cross_attention_kwargs={"reference_features": reference_features} if reference_features else None,
            down_block_additional_residuals=down_residuals,
            mid_block_additional_residual=mid_residual,
            return_dict=False,
        )[0]
        return noise.transpose(1, 2).flatten(0, 1) if runs_videos else noise
