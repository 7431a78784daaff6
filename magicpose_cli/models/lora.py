"""LoRAs for the main UNet (and the text encoder when a prompt is given), through diffusers' LoRA loading.

kohya/sd-scripts (``lora_unet_*.lora_down/lora_up/alpha``), diffusers (``unet.*.lora_A/lora_B``) and
PEFT (``base_model.model.*`` with ``adapter_config.json``) files are read as diffusers' Stable
Diffusion LoRA loader reads them and injected as PEFT adapters, one per file, at its scale.

Only the main UNet takes them: it is SD 1.5's own UNet, frozen in MagicPose's training, which is
what an SD 1.5 LoRA was trained against. The appearance model started as a copy of that UNet but
was trained on, so an SD 1.5 LoRA's deltas no longer match its weights. PEFT wraps the attention's
Linear layers, not the Attention modules, so the reference-attention processors stay in place and
project the reference tokens through the same LoRA-adapted layers as the frame's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models.checkpoint_files import load_original_state_dict
from magicpose_cli.models.plugin_options import LoraWeights, is_lora_state

_PEFT_PREFIX = "base_model.model."


def read_lora(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a LoRA file (or of the one ``.safetensors`` file of a diffusers/PEFT LoRA folder), refused in one line otherwise."""
    path = Path(path)
    file = _lora_file(path) if path.is_dir() else path
    state = load_original_state_dict(file)
    if not is_lora_state(state):
        raise MagicPoseError(f"{path} is not a LoRA (no lora_down/lora_A weights): a whole SD 1.5 model goes to --base-model")
    if any(key.startswith(_PEFT_PREFIX) for key in state):
        state = _from_peft(state, path / "adapter_config.json" if path.is_dir() else file.with_name("adapter_config.json"))
    return state


def _lora_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1:
        raise MagicPoseError(f"LoRA folder {folder} must hold one .safetensors file (pytorch_lora_weights or adapter_model), it holds {len(files)}")
    return files[0]


def _from_peft(state: dict, config_path: Path) -> dict:
    """A PEFT adapter's UNet keys as diffusers names them, its ``lora_alpha / r`` folded into the up weights."""
    ratio = 1.0
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        ratio = float(config.get("lora_alpha", config.get("r", 1))) / float(config.get("r", 1))
    return {
        "unet." + key.removeprefix(_PEFT_PREFIX): value * ratio if "lora_B" in key else value
        for key, value in state.items()
    }  # fmt: skip


def apply_loras(pipe, loras: tuple[LoraWeights, ...], with_text: bool) -> None:
    """Inject each LoRA (scale 0: left out, so exactly no LoRA) into the main UNet, and into the text
    encoder when ``with_text``; a LoRA naming layers these networks lack is refused in one line."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin as Loader

    used = [lora for lora in loras if lora.scale != 0]
    names = []
    for index, lora in enumerate(used):
        state, alphas = Loader.lora_state_dict(read_lora(lora.path))
        name = f"lora{index}"
        unet_state = {key: value for key, value in state.items() if key.startswith("unet.")}
        _check_targets(pipe.unet, unet_state, lora.path, "unet.", "UNet")
        if not unet_state and not (with_text and any(key.startswith("text_encoder.") for key in state)):
            raise MagicPoseError(f"LoRA {lora.path} holds no SD 1.5 UNet layers (only text encoder layers, used with --prompt)")
        if unet_state:
            Loader.load_lora_into_unet(unet_state, _only(alphas, "unet."), unet=pipe.unet, adapter_name=name)
        if with_text and pipe.text_encoder is not None and any(key.startswith("text_encoder.") for key in state):
            text_state = {key: value for key, value in state.items() if key.startswith("text_encoder.")}
            try:
                Loader.load_lora_into_text_encoder(text_state, _only(alphas, "text_encoder."), text_encoder=pipe.text_encoder, adapter_name=name)
            except (ValueError, RuntimeError, KeyError) as error:  # peft: no such layer, or another width
                raise MagicPoseError(f"LoRA {lora.path} does not fit this model's text encoder ({str(error).splitlines()[0]})") from None
        names.append((name, lora.scale, bool(unet_state)))
    if any(in_unet for _, _, in_unet in names):
        pipe.unet.set_adapters([name for name, _, in_unet in names if in_unet], [scale for _, scale, in_unet in names if in_unet])
    if with_text and pipe.text_encoder is not None and getattr(pipe.text_encoder, "peft_config", None):
        from diffusers.utils.peft_utils import set_weights_and_activate_adapters

        text_names = [name for name, _, _ in names if name in pipe.text_encoder.peft_config]
        set_weights_and_activate_adapters(pipe.text_encoder, text_names, [scale for name, scale, _ in names if name in text_names])


def _only(alphas: dict | None, prefix: str) -> dict | None:
    return None if alphas is None else {key: value for key, value in alphas.items() if key.startswith(prefix)}


def _check_targets(network: torch.nn.Module, state: dict, path: Path, prefix: str, what: str) -> None:
    """Every layer the LoRA names must be one of ``network``'s, with the LoRA's shapes fitting it."""
    from diffusers.utils import convert_unet_state_dict_to_peft

    peft_state = convert_unet_state_dict_to_peft({key.removeprefix(prefix): value for key, value in state.items()})
    modules = dict(network.named_modules())
    targets = {key.split(".lora_")[0]: value for key, value in peft_state.items() if ".lora_A." in key}
    missing = sorted(name for name in targets if name not in modules)
    if missing:
        raise MagicPoseError(
            f"LoRA {path} names {len(missing)} layers this model's {what} does not have (e.g. {missing[0]}): it is not a LoRA for this SD 1.5 {what}"
        )
    misfit = [name for name, down in targets.items() if getattr(modules[name], "in_features", down.shape[1]) != down.shape[1]]
    if misfit:
        raise MagicPoseError(f"LoRA {path} does not fit this model's {what} (layer {misfit[0]} has another width): it is for another model size")
