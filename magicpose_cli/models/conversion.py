"""Published checkpoints (original ldm layout) to our diffusers-format model folder.

The key mapping is diffusers' own single-file converters; this module only routes each part
of a MagicPose checkpoint (main UNet, appearance model, pose ControlNet, VAE, CLIP) to them
and refuses checkpoints that would execute code when loaded.

A published checkpoint is 9 GB at float32, so it is never held twice: the file is read
memory-mapped, one part at a time (each part from its own mapping, released once the part is
written), and each network is built on the meta device and takes the mapped tensors as its
weights. Only a dtype cast copies.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import yaml
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_controlnet_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    create_unet_diffusers_config_from_ldm,
    create_vae_diffusers_config_from_ldm,
)

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_directory
from magicpose_cli.models.checkpoint_files import (
    APPEARANCE_PREFIX, CLIP_PREFIX, CONTROLNET_PREFIX, POSE_PREFIX, UNET_PREFIX, VAE_PREFIX, load_exactly, load_original_state_dict, text_encoder_from,
)  # fmt: skip
from magicpose_cli.models.configs import ORIGINAL_SAMPLING_SETTINGS, SD15_RECOMMENDED_SETTINGS, sd15_original_config
from magicpose_cli.models.loading import TORCH_DTYPES, Precision
from magicpose_cli.models.networks import AppearanceUNet

CONVERTER_VERSION = 2
"""Raised whenever the same checkpoint would convert to different files (converted caches are keyed by it)."""


class OriginalCheckpoint:
    """An original checkpoint read part by part, so that memory holds one part at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        state = load_original_state_dict(self.path)
        self.kind = checkpoint_kind(state)
        self.keys = frozenset(state)
        self.betas = state["betas"].clone() if "betas" in state else None

    def has(self, prefix: str) -> bool:
        return any(key.startswith(prefix) for key in self.keys)

    def read(self, prefix: str, new_prefix: str = "") -> dict[str, torch.Tensor]:
        """The tensors under ``prefix``, renamed to ``new_prefix``, from a fresh mapping of the file."""
        return _with_prefix(load_original_state_dict(self.path, prefix), prefix, new_prefix)


def read_original_config(config_path: str | Path | None) -> dict:
    """The original model yaml (e.g. ``cldm_v15_reference_only_pose.yaml``); SD 1.5 sizes without one."""
    if config_path is None:
        return sd15_original_config()
    try:
        config = yaml.safe_load(Path(config_path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise MagicPoseError(f"cannot read config {config_path}: {error}") from None
    if not isinstance(config, dict) or "params" not in config.get("model", {}):
        raise MagicPoseError(f"{config_path} is not an original-format model config (no model.params)")
    return config


def _with_prefix(state: dict, prefix: str, new_prefix: str = "") -> dict:
    return {new_prefix + key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def _network_config(original: dict, network_key: str) -> dict:
    """An ldm config whose ``unet_config`` is the named sub-network, as diffusers' helpers read it."""
    config = copy.deepcopy(original)
    params = config["model"]["params"]
    params["unet_config"] = copy.deepcopy(params.get(network_key) or params["unet_config"])
    params["unet_config"]["params"].setdefault("out_channels", params["unet_config"]["params"]["in_channels"])
    return config


def unet_config(original: dict, network_key: str) -> dict:
    """The diffusers UNet config of one of the ldm config's networks (``unet_config``, ...)."""
    config = create_unet_diffusers_config_from_ldm(_network_config(original, network_key), {})
    config.pop("sample_size")
    return config


def _build_unet(cls, checkpoint: OriginalCheckpoint, prefix: str, original: dict, network_key: str, what: str):
    config = unet_config(original, network_key)
    with torch.device("meta"):
        model = cls(**config)
    converted = convert_ldm_unet_checkpoint(checkpoint.read(prefix, UNET_PREFIX), config)
    load_exactly(model, converted, what, checkpoint.path)
    return model


def _build_controlnet(checkpoint: OriginalCheckpoint, prefix: str, original: dict) -> ControlNetModel:
    network_key = "pose_control_stage_config"
    network_config = unet_config(original, network_key)
    hint_channels = original["model"]["params"].get(network_key, {}).get("params", {}).get("hint_channels", 3)
    keep = ("in_channels", "down_block_types", "block_out_channels", "layers_per_block", "cross_attention_dim")
    keep += ("attention_head_dim", "use_linear_projection", "transformer_layers_per_block")
    with torch.device("meta"):
        model = ControlNetModel(conditioning_channels=hint_channels, **{key: network_config[key] for key in keep})
    converted = convert_controlnet_checkpoint(checkpoint.read(prefix), network_config)
    load_exactly(model, converted, "pose ControlNet", checkpoint.path)
    return model


def _published_controlnet(checkpoint: OriginalCheckpoint, original: dict) -> ControlNetModel:
    """A ControlNet published on its own: keys under ``control_model.``, or bare."""
    return _build_controlnet(checkpoint, CONTROLNET_PREFIX if checkpoint.has(CONTROLNET_PREFIX) else "", original)


def vae_config(original: dict) -> dict:
    """The diffusers AutoencoderKL config of the ldm config's first stage."""
    return create_vae_diffusers_config_from_ldm(original, {}, image_size=None)


def _build_vae(checkpoint: OriginalCheckpoint, original: dict) -> AutoencoderKL:
    config = vae_config(original)
    with torch.device("meta"):
        model = AutoencoderKL(**config)
    converted = convert_ldm_vae_checkpoint(checkpoint.read(VAE_PREFIX, VAE_PREFIX), config)
    load_exactly(model, converted, "VAE", checkpoint.path)
    return model


def _scheduler(checkpoint: OriginalCheckpoint, original: dict) -> DDIMScheduler:
    params = original["model"]["params"]
    betas = checkpoint.betas
    return DDIMScheduler(
        num_train_timesteps=int(params.get("timesteps", 1000)),
        beta_start=float(params.get("linear_start", 0.00085)),
        beta_end=float(params.get("linear_end", 0.012)),
        beta_schedule="scaled_linear",
        trained_betas=betas.double().tolist() if betas is not None else None,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
    )


def checkpoint_kind(state: dict) -> str:
    """``magicpose`` (full model), ``sd15`` (a Stable Diffusion checkpoint) or ``controlnet``."""
    if any(key.startswith(APPEARANCE_PREFIX) for key in state):
        return "magicpose"
    if any(key.startswith(UNET_PREFIX) for key in state):
        return "sd15"
    if any(key.startswith(CONTROLNET_PREFIX) for key in state) or "input_hint_block.0.weight" in state:
        return "controlnet"
    raise MagicPoseError(
        "unrecognised checkpoint layout: expected MagicPose (appearance_control_model.*), "
        "Stable Diffusion (model.diffusion_model.*) or ControlNet (control_model.*) weights"
    )


def conversion_dtype(dtype: str, kind: str) -> torch.dtype:
    """The folder's weight dtype: ``auto`` is float16 for a MagicPose checkpoint (an inference model,
    half the size) and float32 for the pieces that start a training run."""
    try:
        precision = Precision(dtype)
    except ValueError:
        raise MagicPoseError(f"--dtype must be one of {', '.join(choice.value for choice in Precision)}, got {dtype!r}") from None
    if precision is Precision.auto:
        return torch.float16 if kind == "magicpose" else torch.float32
    return TORCH_DTYPES[precision]


def build_components(
    checkpoint: OriginalCheckpoint, original: dict, controlnet: OriginalCheckpoint | None = None
) -> Iterator[tuple[str, object]]:
    """The (name, component) pairs of the model folder, built one at a time from their own reads.

    A MagicPose checkpoint gives all of them; an SD 1.5 one gives a training initialisation (the
    appearance model is the UNet's copy, as the original training starts; the pose ControlNet
    comes from the ``controlnet`` checkpoint, else from the UNet).
    """
    if checkpoint.has(CLIP_PREFIX):
        text_encoder, empty_prompt = text_encoder_from(checkpoint.read(CLIP_PREFIX, CLIP_PREFIX))
        yield "empty_prompt", empty_prompt
        yield "text_encoder", text_encoder
    yield "unet", _build_unet(UNet2DConditionModel, checkpoint, UNET_PREFIX, original, "unet_config", "main UNet")
    if checkpoint.kind == "magicpose":
        appearance_key = "appearance_control_stage_config"
        yield "reference_unet", _build_unet(AppearanceUNet, checkpoint, APPEARANCE_PREFIX, original, appearance_key, "appearance model")
        yield "controlnet", _build_controlnet(checkpoint, POSE_PREFIX, original)
    else:
        yield "reference_unet", _build_unet(AppearanceUNet, checkpoint, UNET_PREFIX, original, "unet_config", "main UNet")
        if controlnet is not None:
            yield "controlnet", _published_controlnet(controlnet, original)
        else:
            unet = _build_unet(UNet2DConditionModel, checkpoint, UNET_PREFIX, original, "unet_config", "main UNet")
            yield "controlnet", ControlNetModel.from_unet(unet)
    yield "vae", _build_vae(checkpoint, original)
    yield "scheduler", _scheduler(checkpoint, original)


def _save_component(component, folder: Path, dtype: torch.dtype) -> None:
    """Write one component in ``dtype``; mapped checkpoint tensors are copied only where they must be."""
    if isinstance(component, torch.nn.Module):
        component.to(dtype)
        for tensor in itertools.chain(component.parameters(), component.buffers()):
            if not tensor.is_contiguous():
                tensor.data = tensor.data.contiguous()
    component.save_pretrained(folder, safe_serialization=True)


def _write_model_folder(
    checkpoint: OriginalCheckpoint,
    folder: Path,
    original: dict,
    controlnet: OriginalCheckpoint | None,
    dtype: torch.dtype,
    on_component: Callable[[str], None],
) -> None:
    """Write the components into ``folder`` one at a time, then model_index.json."""
    from magicpose_cli.models.pipeline import MagicPosePipeline

    if checkpoint.kind == "controlnet":
        on_component("controlnet")
        _save_component(_published_controlnet(checkpoint, original), folder, dtype)
        return
    written = {}
    for name, component in build_components(checkpoint, original, controlnet):
        on_component(name)
        _save_component(component, folder / name, dtype)
        # keep an empty shell (weights on the meta device) for model_index.json; free the weights
        written[name] = component.to("meta") if isinstance(component, torch.nn.Module) else component
    MagicPosePipeline(**written).save_config(folder)


def convert_checkpoint(
    checkpoint_path: str | Path, output_dir: str | Path, config_path: str | Path | None = None,
    controlnet_path: str | Path | None = None, dtype: str = "fp32", overwrite: bool = False,
    on_component: Callable[[str], None] = lambda name: None,
) -> Path:  # fmt: skip
    """Convert an original-layout checkpoint into a ``save_pretrained`` folder, written atomically.

    - a MagicPose checkpoint becomes a complete MagicPose model folder, recommending the original
      inference's settings;
    - an SD 1.5 checkpoint becomes a MagicPose *initialisation* (see ``build_components``);
    - a ControlNet checkpoint (e.g. ``control_v11p_sd15_openpose.pth``) becomes a ControlNet folder.

    ``dtype``: fp32 (the checkpoint's precision), fp16, bf16, or auto (see ``conversion_dtype``).
    Every input is checked before anything is written; a failure leaves nothing behind.
    ``on_component(name)`` is called as each component starts (for progress).
    """
    output_dir = Path(output_dir)
    check_output_folder(output_dir, overwrite)
    checkpoint = OriginalCheckpoint(checkpoint_path)
    original = read_original_config(config_path)
    weights_dtype = conversion_dtype(dtype, checkpoint.kind)
    controlnet = OriginalCheckpoint(controlnet_path) if controlnet_path is not None else None
    if controlnet is not None and checkpoint.kind != "sd15":
        raise MagicPoseError("--controlnet goes with a Stable Diffusion 1.5 checkpoint (a training start); "
                             f"{checkpoint.path.name} is a {checkpoint.kind} checkpoint")  # fmt: skip
    with atomic_directory(output_dir) as folder:
        _write_model_folder(checkpoint, folder, original, controlnet, weights_dtype, on_component)
        if checkpoint.kind == "magicpose":
            (SD15_RECOMMENDED_SETTINGS if config_path is None else ORIGINAL_SAMPLING_SETTINGS).write(folder)
    return output_dir


def check_output_folder(output_dir: Path, overwrite: bool) -> None:
    """Refuse a file (or a path under one), or (without ``overwrite``) a folder that holds something, as the output."""
    nearest = next(path for path in (output_dir, *output_dir.parents) if path.exists())
    if not nearest.is_dir():
        raise MagicPoseError(f"{nearest} is a file; the output is a folder (name a new or empty one)")
    if nearest == output_dir and any(output_dir.iterdir()) and not overwrite:
        raise MagicPoseError(f"{output_dir} exists and is not empty; pass --overwrite to replace it")
