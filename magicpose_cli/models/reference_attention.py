"""Appearance (reference) attention: how the appearance model passes identity to the main UNet.

The appearance model is a UNet that sees the clean reference latent. In each of its transformer
blocks we record the input of the self-attention (the ``norm1`` output). The matching
self-attention of the main UNet (same block name) then uses its own tokens as queries and
``[own tokens, reference tokens]`` as keys and values, so every frame can copy appearance from
the reference wherever it needs it. Everything is done by swapping diffusers attention
processors; no UNet code is forked. The features reach the main UNet's processors as
``cross_attention_kwargs={"reference_features": ...}``, so they travel with the call (and with
gradient checkpointing's recomputation) instead of living in shared state.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

ReferenceFeatures = dict[str, torch.Tensor]
"""Self-attention inputs of the appearance model, by block name; each ``(R, tokens, channels)``."""


class _ReferenceComplete(Exception):
    """Raised after the last recorded block: the rest of the appearance model feeds nothing."""


def self_attention_names(unet: UNet2DConditionModel) -> list[str]:
    """Names of the self-attention modules (``...attn1``) of a UNet, in the order they run."""
    names = [name for name, module in unet.named_modules() if isinstance(module, Attention) and name.endswith("attn1")]
    order = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
    return sorted(names, key=lambda name: order[name.split(".")[0]])  # stable within each part


class RecordSelfAttentionInput:
    """Appearance-model processor: keep the self-attention input, then attend as usual."""

    def __init__(self, bridge: "ReferenceAttention", name: str):
        self.bridge, self.name = bridge, name
        self.plain = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self.bridge.recorded[self.name] = hidden_states
        if self.name == self.bridge.last_name and not torch.is_grad_enabled():
            raise _ReferenceComplete
        return self.plain(attn, hidden_states, *args, **kwargs)


class IgnoreReference(AttnProcessor2_0):
    """Main-UNet processor for the other attentions: plain, and quiet about ``reference_features``."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, reference_features=None):
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class AttendToReference(IgnoreReference):
    """Main-UNet self-attention processor: attention over its own tokens plus the reference tokens.

    The reference keys and values are projected once per call and broadcast over the frames,
    so a batch of frames shares one reference computation. Without reference features this is
    exactly diffusers' plain self-attention.
    """

    def __init__(self, name: str):
        self.name = name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, reference_features=None):
        if reference_features is None or encoder_hidden_states is not None or attention_mask is not None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        reference = reference_features[self.name].to(hidden_states.dtype)
        batch, tokens, _ = hidden_states.shape
        if reference.shape[0] not in (1, batch):
            raise ValueError(f"reference features for {reference.shape[0]} images cannot serve {batch} frames")

        def heads(projected: torch.Tensor) -> torch.Tensor:
            return projected.unflatten(-1, (attn.heads, -1)).transpose(1, 2)

        query = heads(attn.to_q(hidden_states))
        key = torch.cat([heads(attn.to_k(hidden_states)), heads(attn.to_k(reference)).expand(batch, -1, -1, -1)], 2)
        value = torch.cat([heads(attn.to_v(hidden_states)), heads(attn.to_v(reference)).expand(batch, -1, -1, -1)], 2)
        attended = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
        attended = attended.transpose(1, 2).flatten(2)
        return attn.to_out[1](attn.to_out[0](attended)) / attn.rescale_output_factor


class ReferenceAttention:
    """Installs the processors on both UNets; ``encode`` turns a reference latent into features."""

    def __init__(self, unet: UNet2DConditionModel, reference_unet: UNet2DConditionModel):
        self.names = self_attention_names(unet)
        reference_names = self_attention_names(reference_unet)
        if reference_names != self.names:
            raise ValueError("the appearance model's transformer blocks do not match the main UNet's")
        self.reference_unet = reference_unet
        self.last_name = self.names[-1]
        self.recorded: ReferenceFeatures = {}
        unet.set_attn_processor(self._processors(unet, AttendToReference, IgnoreReference))
        reference_unet.set_attn_processor(
            self._processors(reference_unet, lambda name: RecordSelfAttentionInput(self, name), AttnProcessor2_0)
        )

    def _processors(self, unet: UNet2DConditionModel, self_attention: Callable[[str], object], other: type) -> dict:
        """A processor per attention: ``self_attention(block name)`` for matched ``attn1``, else ``other()``."""
        names = set(self.names)
        return {
            key: self_attention(key.removesuffix(".processor")) if key.removesuffix(".processor") in names else other()
            for key in unet.attn_processors
        }

    def encode(self, reference_latents: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor) -> ReferenceFeatures:
        """Run the appearance model on clean reference latents; return its self-attention inputs."""
        self.recorded = {}
        try:
            self.reference_unet(reference_latents, timestep, encoder_hidden_states)
        except _ReferenceComplete:
            pass
        features, self.recorded = self.recorded, {}
        return features
