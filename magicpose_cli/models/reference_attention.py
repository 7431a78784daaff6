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
_CPU = torch.device("cpu")


class _ReferenceComplete(Exception):
    """Raised after the last recorded block: the rest of the appearance model feeds nothing."""


def self_attention_names(unet: UNet2DConditionModel) -> list[str]:
    """Names of the spatial self-attention modules (``...attn1``) of a UNet, in the order they run
    (a motion UNet's temporal attentions are not among them: they never see reference tokens)."""
    names = [
        name for name, module in unet.named_modules()
        if isinstance(module, Attention) and name.endswith("attn1") and ".motion_modules." not in name
    ]  # fmt: skip
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
    so a batch of frames shares one reference computation (R references serve R equal runs of
    frames: the clips of a motion training batch). Without reference features this is exactly
    diffusers' plain self-attention.
    """

    def __init__(self, name: str):
        self.name = name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, reference_features=None):
        if reference_features is None or encoder_hidden_states is not None or attention_mask is not None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        reference = reference_features[self.name].to(hidden_states.dtype)
        batch, tokens, _ = hidden_states.shape
        if batch % reference.shape[0]:
            raise ValueError(f"reference features for {reference.shape[0]} images cannot serve {batch} frames")

        def heads(projected: torch.Tensor) -> torch.Tensor:
            return projected.unflatten(-1, (attn.heads, -1)).transpose(1, 2)

        def per_frame(projected: torch.Tensor) -> torch.Tensor:
            if projected.shape[0] == 1:
                return projected.expand(batch, -1, -1, -1)
            return projected.repeat_interleave(batch // projected.shape[0], dim=0)

        query = heads(attn.to_q(hidden_states))
        key = torch.cat([heads(attn.to_k(hidden_states)), per_frame(heads(attn.to_k(reference)))], 2)
        value = torch.cat([heads(attn.to_v(hidden_states)), per_frame(heads(attn.to_v(reference)))], 2)
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


StepFeatures = tuple[ReferenceFeatures, ReferenceFeatures | None]
"""The reference features of one step: for the conditional branch, and for ``"text"`` mode's negative one."""


def _features_on(features: ReferenceFeatures | None, device: torch.device) -> ReferenceFeatures | None:
    return None if features is None else {name: feature.to(device, non_blocking=True) for name, feature in features.items()}


class StepReferenceFeatures:
    """The appearance model's features at each denoising step, computed once for the whole video.

    They depend only on the reference, the timestep and the text, never on the frames, so the
    first batch computes them and the later batches reuse them. Between batches they wait on the
    CPU (at 512x512 the SD 1.5 self-attention inputs are 11.6 M values per step: 23 MB in
    float16, 1.2 GB for 50 steps), so the accelerator holds only the current step's.
    With ``reuse_interval`` k > 1 step i is served by the features of step i - i % k, computed at
    that step's timestep, so a run resumed at any step gets the features an uninterrupted one has.
    """

    def __init__(self, compute: Callable[[torch.Tensor], StepFeatures], keep: bool, reuse_interval: int = 1):
        if reuse_interval < 1:
            raise ValueError(f"the appearance reuse interval must be at least 1, got {reuse_interval}")
        self.compute, self.keep, self.reuse_interval = compute, keep, reuse_interval
        self.kept: dict[int, StepFeatures] = {}
        self.latest: tuple[int, StepFeatures] | None = None

    def at(self, step_index: int, timesteps: torch.Tensor, device: torch.device) -> StepFeatures:
        """The features serving ``step_index`` of the schedule ``timesteps``."""
        source = step_index - step_index % self.reuse_interval
        if self.latest is not None and self.latest[0] == source:
            return self.latest[1]  # on the device already: the steps reusing it copy nothing
        if source in self.kept:
            features = tuple(_features_on(kept, device) for kept in self.kept[source])
        else:
            features = self.compute(timesteps[source])
            if self.keep:
                self.kept[source] = tuple(_features_on(computed, _CPU) for computed in features)
        self.latest = (source, features) if self.reuse_interval > 1 else None
        return features
