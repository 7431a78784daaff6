"""AnimateDiff motion modules on MagicPose's main UNet, computing what the original AnimateDiff computes.

diffusers has the modules (``MotionAdapter`` holds them, ``UNetMotionModel`` runs a UNet with one
after each spatial layer). Two things are changed here, by swapping modules, never forward methods:

- the temporal GroupNorm: diffusers normalises the (B, C, F, H, W) video over all F frames at once,
  so a frame's result depends on which frames share its window; the original AnimateDiff folds the
  frames into the batch first and normalises each frame on its own (:class:`PerFrameGroupNorm`);
- the motion scale: the output projection is scaled (:class:`ScaledMotionOutput`), so a module
  returns ``x + s * (MM(x) - x)``, its output blended with its input.

The motion UNet is assembled from the very modules of the 2D UNet and of the adapter (no weight is
copied), so one set of weights serves a run with the motion module and one without.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D, MotionModules
from torch import nn

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models.motion_loading import diffusers_motion_keys, load_into

ORIGINAL_NORM_GROUPS = 32  # the original TemporalTransformer3DModel's GroupNorm
_SHARED_BLOCK_PARTS = ("resnets", "attentions", "downsamplers", "upsamplers")
_SHARED_TOP_PARTS = ("conv_in", "time_proj", "time_embedding", "conv_norm_out", "conv_act", "conv_out")
# UNet2DConditionModel settings UNetMotionModel cannot reproduce: (config key, the only value it runs).
_MOTION_UNET_LIMITS = (
    ("center_input_sample", False), ("flip_sin_to_cos", True), ("freq_shift", 0), ("time_embedding_type", "positional"),
    ("class_embed_type", None), ("addition_embed_type", None), ("encoder_hid_dim_type", None),
    ("only_cross_attention", False), ("upcast_attention", False), ("resnet_time_scale_shift", "default"),
    ("conv_in_kernel", 3), ("conv_out_kernel", 3), ("time_cond_proj_dim", None), ("mid_block_type", "UNetMidBlock2DCrossAttn"),
)  # fmt: skip


class PerFrameGroupNorm(nn.GroupNorm):
    """GroupNorm of a (B, C, F, H, W) video with each frame's own statistics, as the original AnimateDiff."""

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5:
            return super().forward(video)
        batch, channels, frames, height, width = video.shape
        folded = video.transpose(1, 2).reshape(batch * frames, channels, height, width)
        normed = F.group_norm(folded, self.num_groups, self.weight, self.bias, self.eps)
        return normed.reshape(batch, frames, channels, height, width).transpose(1, 2)


class ScaledMotionOutput(nn.Linear):
    """A motion module's output projection times ``motion_scale``: the module's residual, scaled."""

    motion_scale: float = 1.0

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002: diffusers passes it by this name
        projected = super().forward(input)
        return projected if self.motion_scale == 1.0 else projected * self.motion_scale


def motion_transformers(module: nn.Module) -> list[AnimateDiffTransformer3D]:
    return [child for child in module.modules() if isinstance(child, AnimateDiffTransformer3D)]


def make_faithful(transformer: AnimateDiffTransformer3D) -> AnimateDiffTransformer3D:
    """Swap in the per-frame norm and the scalable output projection, holding the same parameters."""
    norm, projection = transformer.norm, transformer.proj_out
    if not isinstance(norm, PerFrameGroupNorm):
        per_frame = PerFrameGroupNorm(norm.num_groups, norm.num_channels, norm.eps, norm.affine, device="meta")
        per_frame.weight, per_frame.bias = norm.weight, norm.bias
        transformer.norm = per_frame
    if not isinstance(projection, ScaledMotionOutput):
        scaled = ScaledMotionOutput(projection.in_features, projection.out_features, projection.bias is not None, device="meta")
        scaled.weight, scaled.bias = projection.weight, projection.bias
        transformer.proj_out = scaled
    return transformer


def set_motion_scale(module: nn.Module, scale: float) -> None:
    """Blend every motion module under ``module``: 1 is the module as trained, 0 switches it off."""
    if not 0.0 <= scale <= 1.0:
        raise ValueError(f"the motion scale must be in [0, 1], got {scale}")
    for transformer in motion_transformers(module):
        make_faithful(transformer).proj_out.motion_scale = float(scale)


class OriginalTemporalModule(nn.Module):
    """One temporal module on a (B, C, F, H, W) video, as the original ``VanillaTemporalModule(x, None, None)``."""

    def __init__(self, transformer: AnimateDiffTransformer3D):
        super().__init__()
        self.transformer = make_faithful(transformer)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, height, width = video.shape
        folded = video.transpose(1, 2).reshape(batch * frames, channels, height, width)
        moved = self.transformer(folded, num_frames=frames)
        return moved.reshape(batch, frames, channels, height, width).transpose(1, 2)


def original_temporal_module(
    state_dict: dict[str, torch.Tensor], in_channels: int, num_attention_heads: int, num_layers: int, max_frames: int
) -> nn.Module:
    """The module one original AnimateDiff ``state_dict`` (``temporal_transformer.*`` names) describes.

    Built exactly as the motion modules ``retarget`` runs (diffusers' MotionModules, made faithful
    here), so what this reproduces is what a video gets.
    """
    transformer = MotionModules(
        in_channels, layers_per_block=1, transformer_layers_per_block=num_layers, num_attention_heads=num_attention_heads,
        norm_num_groups=ORIGINAL_NORM_GROUPS, max_seq_length=max_frames,
    ).motion_modules[0]  # fmt: skip
    load_into(transformer, diffusers_motion_keys(state_dict), "the temporal module's state dict")
    return OriginalTemporalModule(transformer).eval()


def check_adapter_fits(adapter_config, unet_config, source: str) -> None:
    """One clear line when a motion module cannot run in this model's UNet."""
    channels, unet_channels = tuple(adapter_config["block_out_channels"]), tuple(unet_config["block_out_channels"])
    if channels != unet_channels:
        raise MagicPoseError(
            f"the motion module {source} was made for a UNet with channels {channels} per block; this model's UNet has "
            f"{unet_channels} (SD 1.5 motion modules fit SD 1.5 models only)"
        )
    layers, unet_layers = adapter_config["motion_layers_per_block"], unet_config["layers_per_block"]
    per_block = (lambda value: tuple(value) if isinstance(value, (list, tuple)) else (value,) * len(channels))
    if per_block(layers) != per_block(unet_layers):
        raise MagicPoseError(f"the motion module {source} has {layers} layers per block; this model's UNet has {unet_layers}")
    heads = adapter_config["motion_num_attention_heads"]
    if any(channel % head for channel, head in zip(channels, per_block(heads))):
        raise MagicPoseError(f"the motion module {source}: {heads} attention heads do not divide its channels {channels}")
    unsupported = [f"{key}={unet_config.get(key)!r}" for key, value in _MOTION_UNET_LIMITS if unet_config.get(key, value) != value]
    kinds = set(unet_config["down_block_types"]) | set(unet_config["up_block_types"])
    unsupported += sorted(kinds - {"CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"})
    if unsupported:
        raise MagicPoseError(f"this model's UNet cannot take a motion module ({', '.join(unsupported)})")


def motion_unet(unet: UNet2DConditionModel, adapter: MotionAdapter) -> UNetMotionModel:
    """``unet`` with ``adapter``'s modules between its layers, built from their own modules (no copy)."""
    check_adapter_fits(adapter.config, unet.config, "given")
    nn.Module.to(adapter, unet.device, unet.dtype)  # ModelMixin.to warns about fp32 modules MotionAdapter has none of
    for transformer in motion_transformers(adapter):
        make_faithful(transformer)
    with torch.device("meta"):
        model = UNetMotionModel.from_unet2d(unet, adapter, load_weights=False)
    for name in _SHARED_TOP_PARTS:
        setattr(model, name, getattr(unet, name))
    for motion_blocks, blocks, adapter_blocks in ((model.down_blocks, unet.down_blocks, adapter.down_blocks),
                                                  (model.up_blocks, unet.up_blocks, adapter.up_blocks)):  # fmt: skip
        for motion_block, block, adapter_block in zip(motion_blocks, blocks, adapter_blocks):
            _share_block(motion_block, block, adapter_block)
    if hasattr(model.mid_block, "motion_modules"):
        _share_block(model.mid_block, unet.mid_block, adapter.mid_block)
    else:
        model.mid_block = unet.mid_block
    left = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if left:
        raise RuntimeError(f"the motion UNet has parts neither the UNet nor the adapter filled: {left[:3]}")
    return model


def _share_block(motion_block: nn.Module, block: nn.Module, adapter_block: nn.Module) -> None:
    for name in _SHARED_BLOCK_PARTS:
        if hasattr(motion_block, name):
            setattr(motion_block, name, getattr(block, name))
    motion_block.motion_modules = adapter_block.motion_modules
