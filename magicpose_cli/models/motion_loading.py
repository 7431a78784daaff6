"""Reading a motion module from any published form into a diffusers ``MotionAdapter``.

Forms: an original AnimateDiff checkpoint (``mm_sd_v15*.ckpt``, ``v3_sd15_mm.ckpt``,
``AnimateLCM_sd15_t2v.ckpt``; AnimateDiff-Lightning's ``*_comfyui.safetensors``), a bare diffusers
state dict (Lightning's ``*_diffusers.safetensors``), or a diffusers ``MotionAdapter`` folder. The
layout is read from the weights themselves (channels per block, layers per block, mid block or
not, the positional table's length); what weights cannot show (attention heads, norm groups)
comes from the configuration shipped with the package (``motion_configs/animatediff_sd15.json``),
so nothing but weights is ever fetched. Checkpoints load with ``weights_only=True`` or safetensors;
every key must find its place, and every weight must be given.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from diffusers import MotionAdapter
from diffusers.models.embeddings import SinusoidalPositionalEmbedding
from torch import nn

from magicpose_cli.errors import MagicPoseError

SHIPPED_CONFIG = Path(__file__).parent / "motion_configs" / "animatediff_sd15.json"
ADAPTER_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.bin")
MOTION_FILE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".safetensors")
# Original AnimateDiff names -> diffusers names (diffusers' own single-file converter renames the same way).
_RENAMES = (
    (".temporal_transformer.", "."), (".attention_blocks.0.", ".attn1."), (".attention_blocks.1.", ".attn2."),
    (".norms.0.", ".norm1."), (".norms.1.", ".norm2."), (".ff_norm.", ".norm3."),
)  # fmt: skip
_ORIGINAL_TABLE = re.compile(r"(.*transformer_blocks\.\d+)\.attn[12]\.pos_encoder\.pe")
_MODULE_KEY = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.motion_modules\.(\d+)\.|^mid_block\.motion_modules\.(\d+)\.")


def diffusers_name(key: str) -> str:
    """One original AnimateDiff key name as its diffusers name (diffusers names pass unchanged)."""
    name = "." + key
    for old, new in _RENAMES:
        name = name.replace(old, new)
    table = _ORIGINAL_TABLE.fullmatch(name[1:])
    return f"{table[1]}.pos_embed.pe" if table else name[1:]


def diffusers_motion_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A motion-module state dict under diffusers names.

    The original keeps a positional table per attention (two equal sinusoids); diffusers one per
    transformer block: the first is kept, the others must equal it.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = diffusers_name(key)
        if name in converted and not (converted[name].shape == value.shape and torch.equal(converted[name], value)):
            raise MagicPoseError(f"the positional tables of {name.removesuffix('.pos_embed.pe')} differ; diffusers shares one")
        converted[name] = value
    return converted


def unwrap_checkpoint(state: dict) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint that may nest them (``{"state_dict": ...}``) or prefix them (``module.``)."""
    if isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    tensors = {key.removeprefix("module."): value for key, value in state.items() if isinstance(value, torch.Tensor)}
    return tensors


def adapter_config_from_shapes(shapes: dict[str, tuple[int, ...]], source: str) -> dict:
    """A MotionAdapter configuration from diffusers-named keys and their shapes, the rest from the shipped one."""
    config = json.loads(SHIPPED_CONFIG.read_text())
    layers: dict[str, dict[int, int]] = {"down_blocks": {}, "up_blocks": {}}
    mid_layers, foreign = 0, []
    for key in shapes:
        match = _MODULE_KEY.match(key)
        if match is None:
            foreign.append(key)
        elif match[1]:
            block, layer = int(match[2]), int(match[3])
            layers[match[1]][block] = max(layers[match[1]].get(block, 0), layer + 1)
        else:
            mid_layers = max(mid_layers, int(match[4]) + 1)
    if foreign or not layers["down_blocks"]:
        example = f" (e.g. {sorted(foreign)[0]})" if foreign else ""
        raise MagicPoseError(f"{source} is not an AnimateDiff motion module{example}")
    down = [layers["down_blocks"].get(block, 0) for block in range(len(layers["down_blocks"]))]
    up = [layers["up_blocks"].get(block, 0) for block in range(len(layers["down_blocks"]))]
    if 0 in down or up != [count + 1 for count in reversed(down)]:
        raise MagicPoseError(f"{source} has an unknown motion-module layout: {down} layers down, {up} up")
    per_block = [shapes[f"down_blocks.{block}.motion_modules.0.norm.weight"][0] for block in range(len(down))]
    depth = 1 + max(int(found[1]) for key in shapes if (found := re.search(r"transformer_blocks\.(\d+)\.", key)))
    table = next((shape for key, shape in shapes.items() if key.endswith("pos_embed.pe")), None)
    config.update(
        block_out_channels=per_block, motion_layers_per_block=down[0] if len(set(down)) == 1 else down,
        motion_transformer_layers_per_block=depth, motion_transformer_layers_per_mid_block=depth,
        use_motion_mid_block=mid_layers > 0, motion_mid_block_layers_per_block=max(mid_layers, 1),
    )  # fmt: skip
    if table is not None:
        config["motion_max_seq_length"] = table[1]
    return config


def fill_positional_tables(module: nn.Module) -> None:
    """Compute the fixed sinusoid tables that were built on the meta device (nothing to load there)."""
    for child in module.modules():
        if isinstance(child, SinusoidalPositionalEmbedding) and child.pe.is_meta:
            _, length, channels = child.pe.shape
            child.pe = SinusoidalPositionalEmbedding(channels, length).pe


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str, assign: bool = False) -> None:
    """Load ``state`` strictly, except the positional tables, which are fixed sinusoids (computed when absent)."""
    missing, unexpected = module.load_state_dict(state, strict=False, assign=assign)
    missing = [key for key in missing if not key.endswith("pos_embed.pe")]
    if unexpected:
        raise MagicPoseError(f"{source}: {len(unexpected)} weights have no place in the motion module (e.g. {unexpected[0]})")
    if missing:
        raise MagicPoseError(f"{source}: {len(missing)} motion-module weights are missing (e.g. {missing[0]})")
    fill_positional_tables(module)


def adapter_from_state_dict(state: dict[str, torch.Tensor], source: str, config: dict | None = None) -> MotionAdapter:
    """A MotionAdapter holding exactly the tensors of ``state`` (no copy, no random initialisation)."""
    converted = diffusers_motion_keys(unwrap_checkpoint(state))
    inferred = adapter_config_from_shapes({key: tuple(value.shape) for key, value in converted.items()}, source)
    with torch.device("meta"):
        adapter = MotionAdapter(**(config or inferred))
    load_into(adapter, converted, source, assign=True)
    return adapter


def adapter_weights_file(folder: Path) -> Path | None:
    return next((folder / name for name in ADAPTER_WEIGHTS if (folder / name).is_file()), None)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, safely: safetensors, or torch.load with ``weights_only=True`` (memory-mapped)."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a legacy (non-zip) file cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001: any unreadable file is one line for the user
        raise MagicPoseError(f"cannot read the motion module {path}: {str(error).splitlines()[0]}") from None
    if not isinstance(state, dict):
        raise MagicPoseError(f"the motion module {path} holds no state dict")
    return state


def load_motion_adapter(path: Path) -> MotionAdapter:
    """The motion module at ``path``: a checkpoint file, or a MotionAdapter folder (its config.json used)."""
    path = Path(path)
    config = None
    if path.is_dir():
        weights = adapter_weights_file(path)
        if weights is None or not (path / "config.json").is_file():
            raise MagicPoseError(f"{path} is not a MotionAdapter folder (config.json and {ADAPTER_WEIGHTS[0]})")
        config = {key: value for key, value in json.loads((path / "config.json").read_text()).items() if not key.startswith("_")}
        path = weights
    return adapter_from_state_dict(read_state_dict(path), str(path), config)


def motion_adapter_config(path: Path) -> dict:
    """The configuration of the motion module at ``path`` without loading its weights (for checks before slow work)."""
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return json.loads((path / "config.json").read_text())
        raise MagicPoseError(f"{path} is not a MotionAdapter folder (no config.json)")
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as handle:
                shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        except Exception as error:  # noqa: BLE001
            raise MagicPoseError(f"cannot read the motion module {path}: {str(error).splitlines()[0]}") from None
        return adapter_config_from_shapes({diffusers_name(key): shape for key, shape in shapes.items()}, str(path))
    converted = diffusers_motion_keys(unwrap_checkpoint(read_state_dict(path)))
    return adapter_config_from_shapes({key: tuple(value.shape) for key, value in converted.items()}, str(path))
