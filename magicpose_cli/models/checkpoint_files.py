"""Reading checkpoint files without running code, and the key names of the original SD layout.

Shared by the conversion of whole MagicPose checkpoints (conversion.py) and by the SD 1.5 models
and LoRAs plugged into a converted model (plugins.py, lora.py).
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch
from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models.networks import PromptEmbedding

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


def load_original_state_dict(path: str | Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors (under ``prefix``) of a ``.th/.ckpt/.pth/.bin`` pickle, loaded memory-mapped and
    without code, or of a ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise MagicPoseError(f"checkpoint not found: {path} (check the path, or give a hub repo such as Boese0601/MagicDance)")
    state = _load_safetensors(path, prefix) if path.suffix == ".safetensors" else _load_pickle(path)
    return {key: value for key, value in state.items() if key.startswith(prefix)}


def _load_safetensors(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys() if key.startswith(prefix)}
    except Exception as error:  # safetensors reports corrupt headers with several types
        raise MagicPoseError(f"{path} is not a readable safetensors file ({error})") from None


def _torch_load(path: Path):
    """``torch.load`` without code, memory-mapped (files written before torch 1.6 cannot be mapped).

    torch's warning about a plain pickle's protocol is silenced: such a file is refused in one line.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = _torch_load(path)
    except pickle.UnpicklingError as error:
        needs_code = next((line for line in str(error).splitlines() if "GLOBAL" in line), None)
        if needs_code is None:
            raise MagicPoseError(f"{path} is not a readable checkpoint (not a torch file, or corrupt)") from None
        raise MagicPoseError(
            f"refusing to load {path}: loading it would run code it names ({needs_code.strip()}). "
            "Use a .safetensors file or a checkpoint saved as a plain state dict of tensors."
        ) from None
    except Exception as error:  # weights_only unpickling runs no code: any other failure is a damaged file
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MagicPoseError(f"{path} is not a readable checkpoint ({detail})") from None
    while isinstance(state, dict) and len(state) <= 4 and isinstance(state.get("state_dict", state.get("module")), dict):
        state = state.get("state_dict", state.get("module"))
    if not isinstance(state, dict) or not any(isinstance(value, torch.Tensor) for value in state.values()):
        raise MagicPoseError(f"{path} holds no state dict of tensors")
    return {key.removeprefix("module."): value for key, value in state.items() if isinstance(value, torch.Tensor)}


def load_exactly(model: torch.nn.Module, state: dict, what: str, source: Path, fix: str = "Pass the model's original yaml with --config.") -> None:
    """Give ``model`` (built on the meta device) the checkpoint's tensors themselves, or explain the misfit (and ``fix`` it)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    shapes = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or shapes:
        detail = f"missing {missing[:3]}" if missing else f"shape mismatch at {shapes[:3]}"
        raise MagicPoseError(
            f"the {what} in {source} does not fit the configured sizes ({detail}, ...). "
            f"{fix}"
        )
    model.load_state_dict({key: state[key] for key in expected}, assign=True)


def text_encoder_from(clip_weights: dict[str, torch.Tensor]):
    """The CLIP text encoder of ``cond_stage_model.transformer.*`` weights, sized from them, and its embedding of the empty prompt."""
    from transformers import CLIPTextConfig, CLIPTextModel

    weights = {  # published checkpoints say text_model.*, newer transformers drop that level
        key.removeprefix("text_model."): value
        for key, value in convert_ldm_clip_checkpoint(clip_weights).items()
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
