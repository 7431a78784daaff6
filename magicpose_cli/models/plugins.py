"""A MagicPose model plugged into another Stable Diffusion 1.5: its UNet, VAE and text encoder.

MagicPose trains the appearance model and the pose ControlNet and keeps the SD 1.5 UNet frozen,
so a community SD 1.5 fine-tune's UNet takes the main UNet's place and the appearance features and
pose residuals still fit it. A base model is a single-file checkpoint as people download them
(original SD key names: ``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.*``;
read without code), or a diffusers folder (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``).
The weights are read into the MagicPose model's own UNet layout by diffusers' single-file
converters; anything not shaped like SD 1.5 is refused in one line that says what it is.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, infer_diffusers_model_type

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models.plugin_options import Plugins, is_lora_state
from magicpose_cli.models.checkpoint_files import APPEARANCE_PREFIX, CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX, load_exactly, load_original_state_dict, text_encoder_from

_NOT_SD15 = {
    "xl_base": "an SDXL checkpoint", "xl_refiner": "an SDXL refiner checkpoint", "xl_inpaint": "an SDXL inpainting checkpoint",
    "playground-v2-5": "a Playground v2.5 (SDXL-sized) checkpoint", "v2": "a Stable Diffusion 2.x checkpoint",
    "inpainting": "an SD 1.5 inpainting checkpoint (its UNet takes 9 input channels, this one 4)",
    "inpainting_v2": "an SD 2.x inpainting checkpoint", "upscale": "an SD x4 upscaler checkpoint",
    "instruct-pix2pix": "an InstructPix2Pix checkpoint (8 input channels)",
}  # fmt: skip
_SD15_FIX = "A base model must be a Stable Diffusion 1.5 model (the UNet MagicPose was trained beside)."


def plugged_components(folder: Path, plugins: Plugins, dtype: torch.dtype) -> dict:
    """The components that replace the model folder's own in ``from_pretrained`` (no text encoder nor
    tokenizer without a prompt: the stored empty-prompt embedding serves)."""
    components: dict = {"text_encoder": None, "tokenizer": None}
    if plugins.text:
        from transformers import CLIPTokenizer

        components = {"tokenizer": CLIPTokenizer.from_pretrained(plugins.tokenizer)} if plugins.tokenizer else {}
        text_encoder = base_text_encoder(plugins.base_model) if plugins.base_model is not None else None
        if text_encoder is not None:
            components["text_encoder"] = text_encoder.to(dtype)
    if plugins.base_model is not None:
        components["unet"] = base_unet(plugins.base_model, UNet2DConditionModel.load_config(Path(folder) / "unet"), dtype)
    if plugins.base_vae is not None:
        components["vae"] = base_vae(plugins.base_vae, AutoencoderKL.load_config(Path(folder) / "vae"), dtype)
    return components


def read_base_file(path: Path, option: str = "--base-model") -> dict[str, torch.Tensor]:
    """The tensors of a single-file SD 1.5 checkpoint, refused in one line when it is something else."""
    state = load_original_state_dict(path)
    if is_lora_state(state):
        raise MagicPoseError(f"{path} is a LoRA, not a whole model: pass it as --lora {path} (and a full SD 1.5 checkpoint as {option})")
    if option == "--base-vae":
        return state
    if not any(key.startswith(UNET_PREFIX) for key in state):
        raise MagicPoseError(f"{path} holds no Stable Diffusion UNet (model.diffusion_model.*): {option} takes a whole SD 1.5 checkpoint")
    if any(key.startswith(APPEARANCE_PREFIX) for key in state):
        return state  # a MagicPose checkpoint: its main UNet is the frozen SD 1.5 one
    kind = infer_diffusers_model_type(state)
    if kind in _NOT_SD15 or kind not in ("v1", "controlnet"):
        raise MagicPoseError(f"{path} is {_NOT_SD15.get(kind, f'a {kind} checkpoint')}, not Stable Diffusion 1.5: {option} takes an SD 1.5 model")
    return state


def base_unet(source: Path, unet_config: dict, dtype: torch.dtype) -> UNet2DConditionModel:
    """The main UNet with ``source``'s weights, in the layout ``unet_config`` (the model folder's) describes."""
    config = {key: value for key, value in unet_config.items() if not key.startswith("_")}
    if Path(source).is_dir():
        weights = _folder_weights(source, "unet", UNet2DConditionModel)
    else:
        state = read_base_file(source)
        try:
            weights = convert_ldm_unet_checkpoint({key: value for key, value in state.items() if key.startswith(UNET_PREFIX)}, config)
        except (KeyError, IndexError, ValueError) as error:
            raise MagicPoseError(f"the UNet in {source} does not have this MagicPose model's layout ({error!r}). {_SD15_FIX}") from None
    return _built(UNet2DConditionModel, config, weights, "UNet", source, dtype)


def base_vae(source: Path, vae_config: dict, dtype: torch.dtype) -> AutoencoderKL:
    """The VAE of ``source``: a single file (ldm keys, with or without ``first_stage_model.``, or diffusers keys) or a folder."""
    config = {key: value for key, value in vae_config.items() if not key.startswith("_")}
    if Path(source).is_dir():
        weights = _folder_weights(source, "vae", AutoencoderKL)
    else:
        state = read_base_file(source, "--base-vae")
        if any(key.startswith(VAE_PREFIX) for key in state):
            state = {key: value for key, value in state.items() if key.startswith(VAE_PREFIX)}
        weights = state if "encoder.conv_in.weight" in state and "decoder.up_blocks.0.resnets.0.conv1.weight" in state else None
        if weights is None:
            try:
                weights = convert_ldm_vae_checkpoint(state, config)
            except (KeyError, IndexError, ValueError) as error:
                raise MagicPoseError(f"{source} holds no SD 1.5 VAE ({error!r}): --base-vae takes a VAE file or folder, or a whole SD 1.5 checkpoint") from None
    return _built(AutoencoderKL, config, weights, "VAE", source, dtype)


def base_text_encoder(source: Path):
    """The CLIP text encoder of a base model, or None when it has none (the model folder's is used then)."""
    if Path(source).is_dir():
        folder = Path(source) / "text_encoder"
        if not folder.is_dir():
            return None
        from transformers import CLIPTextModel

        return CLIPTextModel.from_pretrained(folder)
    clip = {key: value for key, value in read_base_file(source).items() if key.startswith(CLIP_PREFIX)}
    return text_encoder_from(clip)[0] if clip else None


def _folder_weights(source: Path, component: str, cls) -> dict[str, torch.Tensor]:
    """The weights of a diffusers folder's ``component`` (the folder itself when it is that component)."""
    folder = Path(source) / component if (Path(source) / component).is_dir() else Path(source)
    if not (folder / "config.json").is_file():
        raise MagicPoseError(f"{source} is a folder without {component}/config.json: give a diffusers SD 1.5 folder or a single .safetensors/.ckpt file")
    config = cls.load_config(folder)
    if cls is UNet2DConditionModel:
        _check_unet_config(config, source)
    return cls.from_pretrained(folder, torch_dtype=torch.float32).state_dict()


def _check_unet_config(config: dict, source: Path) -> None:
    """A diffusers UNet that is not SD 1.5, named by its config."""
    cross = config.get("cross_attention_dim")
    kind = (
        "an SDXL UNet" if config.get("addition_embed_type") == "text_time" else
        "an inpainting UNet (9 input channels)" if config.get("in_channels") == 9 else
        "a Stable Diffusion 2.x UNet (1024-wide text)" if cross == 1024 else None
    )  # fmt: skip
    if kind is not None:
        raise MagicPoseError(f"{source} holds {kind}, not Stable Diffusion 1.5: --base-model takes an SD 1.5 model")


def _built(cls, config: dict, weights: dict, what: str, source: Path, dtype: torch.dtype):
    """``cls(**config)`` holding ``weights`` exactly (every tensor of its layout, of its shape), in ``dtype``."""
    with torch.device("meta"):
        model = cls(**config)
    fix = f"{_SD15_FIX} (The model folder's {what} is the layout it must fit.)"
    load_exactly(model, weights, what, Path(source), fix)
    return model.to(dtype).eval()
