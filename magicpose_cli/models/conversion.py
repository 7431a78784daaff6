"""Published checkpoints (original ldm layout) to our diffusers-format model folder.

The key mapping is diffusers' own single-file converters; this module only routes each part
of a MagicPose checkpoint (main UNet, appearance model, pose ControlNet, VAE, CLIP) to them
and refuses checkpoints that would execute code when loaded.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import torch
import yaml
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_controlnet_checkpoint,
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    create_unet_diffusers_config_from_ldm,
    create_vae_diffusers_config_from_ldm,
)

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_directory
from magicpose_cli.models.configs import sd15_original_config
from magicpose_cli.models.networks import AppearanceUNet, PromptEmbedding

UNET_PREFIX = "model.diffusion_model."
APPEARANCE_PREFIX = "appearance_control_model."
POSE_PREFIX = "pose_control_model."
CONTROLNET_PREFIX = "control_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

# CLIP's tokenizer (openai/clip-vit-large-patch14, as SD 1.5 uses it) turns "" into
# <|startoftext|> followed by <|endoftext|>, and pads to 77 tokens with <|endoftext|>.
CLIP_START_OF_TEXT = 49406
CLIP_END_OF_TEXT = 49407
CLIP_SEQUENCE_LENGTH = 77
EMPTY_PROMPT_TOKEN_IDS = [CLIP_START_OF_TEXT] + [CLIP_END_OF_TEXT] * (CLIP_SEQUENCE_LENGTH - 1)


def load_original_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.th/.ckpt/.pth/.bin`` (pickle, loaded without code) or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise MagicPoseError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:  # safetensors reports corrupt headers with several types
            raise MagicPoseError(f"{path} is not a readable safetensors file ({error})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        needs_code = next((line for line in str(error).splitlines() if "GLOBAL" in line), None)
        if needs_code is None:
            raise MagicPoseError(f"{path} is not a readable checkpoint (not a torch file, or corrupt)") from None
        raise MagicPoseError(
            f"refusing to load {path}: loading it would run code it names ({needs_code.strip()}). "
            "Use a .safetensors file or a checkpoint saved as a plain state dict of tensors."
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise MagicPoseError(f"{path} is not a readable checkpoint ({str(error).splitlines()[0]})") from None
    while isinstance(state, dict) and len(state) <= 4 and isinstance(state.get("state_dict", state.get("module")), dict):
        state = state.get("state_dict", state.get("module"))
    if not isinstance(state, dict) or not any(isinstance(value, torch.Tensor) for value in state.values()):
        raise MagicPoseError(f"{path} holds no state dict of tensors")
    return {key.removeprefix("module."): value for key, value in state.items() if isinstance(value, torch.Tensor)}


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


def _unet_config(original: dict, network_key: str) -> dict:
    config = create_unet_diffusers_config_from_ldm(_network_config(original, network_key), {})
    config.pop("sample_size")
    return config


def _load_exactly(model: torch.nn.Module, state: dict, what: str, source: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    shapes = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or shapes:
        detail = f"missing {missing[:3]}" if missing else f"shape mismatch at {shapes[:3]}"
        raise MagicPoseError(
            f"the {what} in {source} does not fit the configured sizes ({detail}, ...). "
            "Pass the model's original yaml with --config."
        )
    model.load_state_dict({key: state[key] for key in expected})


def _build_unet(cls, state: dict, prefix: str, original: dict, network_key: str, what: str, source: Path):
    config = _unet_config(original, network_key)
    model = cls(**config)
    converted = convert_ldm_unet_checkpoint(_with_prefix(state, prefix, UNET_PREFIX), config)
    _load_exactly(model, converted, what, source)
    return model


def _build_controlnet(state: dict, prefix: str, original: dict, source: Path) -> ControlNetModel:
    network_key = "pose_control_stage_config"
    unet_config = _unet_config(original, network_key)
    hint_channels = original["model"]["params"].get(network_key, {}).get("params", {}).get("hint_channels", 3)
    keep = ("in_channels", "down_block_types", "block_out_channels", "layers_per_block", "cross_attention_dim")
    keep += ("attention_head_dim", "use_linear_projection", "transformer_layers_per_block")
    model = ControlNetModel(conditioning_channels=hint_channels, **{key: unet_config[key] for key in keep})
    converted = convert_controlnet_checkpoint(_with_prefix(state, prefix), unet_config)
    _load_exactly(model, converted, "pose ControlNet", source)
    return model


def _published_controlnet(state: dict, original: dict, source: Path) -> ControlNetModel:
    """A ControlNet published on its own: keys under ``control_model.``, or bare."""
    prefix = CONTROLNET_PREFIX if any(key.startswith(CONTROLNET_PREFIX) for key in state) else ""
    return _build_controlnet(state, prefix, original, source)


def _build_vae(state: dict, original: dict, source: Path) -> AutoencoderKL:
    config = create_vae_diffusers_config_from_ldm(original, {}, image_size=None)
    model = AutoencoderKL(**config)
    converted = convert_ldm_vae_checkpoint(_with_prefix(state, VAE_PREFIX, VAE_PREFIX), config)
    _load_exactly(model, converted, "VAE", source)
    return model


def _scheduler(state: dict, original: dict) -> DDIMScheduler:
    params = original["model"]["params"]
    betas = state.get("betas")
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


def _text_encoder(state: dict):
    """The CLIP text encoder, sized from its own tensors, and its embedding of the empty prompt."""
    from transformers import CLIPTextConfig, CLIPTextModel

    weights = {  # published checkpoints say text_model.*, newer transformers drop that level
        key.removeprefix("text_model."): value
        for key, value in convert_ldm_clip_checkpoint(state).items()
        if not key.endswith("position_ids")
    }
    token_embedding = weights["embeddings.token_embedding.weight"]
    hidden = token_embedding.shape[1]
    layers = len({key.split(".")[2] for key in weights if key.startswith("encoder.layers.")})
    config = CLIPTextConfig(
        vocab_size=token_embedding.shape[0],
        hidden_size=hidden,
        intermediate_size=weights["encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        max_position_embeddings=weights["embeddings.position_embedding.weight"].shape[0],
        hidden_act="quick_gelu",
        bos_token_id=CLIP_START_OF_TEXT,
        eos_token_id=CLIP_END_OF_TEXT,
    )
    model = CLIPTextModel(config)
    level = "text_model." if next(iter(model.state_dict())).startswith("text_model.") else ""
    model.load_state_dict({level + key: value for key, value in weights.items()})
    model.eval()
    with torch.no_grad():
        ids = torch.tensor([EMPTY_PROMPT_TOKEN_IDS])
        empty = model(ids).last_hidden_state
    embedding = PromptEmbedding(empty.shape[1], empty.shape[2])
    embedding.embeds.data.copy_(empty)
    return model, embedding


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


def convert_checkpoint(
    checkpoint_path: str | Path,
    output_dir: str | Path,
    config_path: str | Path | None = None,
    controlnet_path: str | Path | None = None,
) -> Path:
    """Convert an original-layout checkpoint into a ``save_pretrained`` folder; returns the folder.

    - a MagicPose checkpoint becomes a complete MagicPose model folder;
    - an SD 1.5 checkpoint becomes a MagicPose *initialisation* (appearance model copied from the
      UNet, as the original training does; pose ControlNet from ``controlnet_path`` if given, else
      initialised from the UNet);
    - a ControlNet checkpoint (e.g. ``control_v11p_sd15_openpose.pth``) becomes a ControlNet folder.
    """
    from magicpose_cli.models.pipeline import MagicPosePipeline

    source = Path(checkpoint_path)
    output_dir = Path(output_dir)
    state = load_original_state_dict(source)
    original = read_original_config(config_path)
    kind = checkpoint_kind(state)

    if kind == "controlnet":
        controlnet = _published_controlnet(state, original, source)
        with atomic_directory(output_dir) as folder:
            controlnet.save_pretrained(folder, safe_serialization=True)
        return output_dir

    unet = _build_unet(UNet2DConditionModel, state, UNET_PREFIX, original, "unet_config", "main UNet", source)
    if kind == "magicpose":
        reference_unet = _build_unet(
            AppearanceUNet, state, APPEARANCE_PREFIX, original, "appearance_control_stage_config", "appearance model", source
        )
        controlnet = _build_controlnet(state, POSE_PREFIX, original, source)
    else:
        reference_unet = AppearanceUNet(**unet.config)
        reference_unet.load_state_dict(unet.state_dict(), strict=False)
        if controlnet_path is not None:
            controlnet_state = load_original_state_dict(controlnet_path)
            controlnet = _published_controlnet(controlnet_state, original, Path(controlnet_path))
        else:
            controlnet = ControlNetModel.from_unet(unet)

    text_encoder = empty_prompt = None
    if any(key.startswith(CLIP_PREFIX) for key in state):
        text_encoder, empty_prompt = _text_encoder(state)

    pipeline = MagicPosePipeline(
        unet=unet,
        reference_unet=reference_unet,
        controlnet=controlnet,
        vae=_build_vae(state, original, source),
        scheduler=_scheduler(state, original),
        empty_prompt=empty_prompt,
        text_encoder=text_encoder,
    )
    with atomic_directory(output_dir) as folder:
        pipeline.save_pretrained(folder, safe_serialization=True)
    return output_dir
