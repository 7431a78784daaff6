"""What a run plugs into the model (models/plugins.py does it): light, so that options and stores need no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LoraWeights:
    """A LoRA file and the scale it is applied at (its own alpha/rank included by the loader)."""

    path: Path
    scale: float = 1.0


@dataclass(frozen=True)
class Plugins:
    """What replaces or adds to the model folder's networks: all optional, nothing by default.

    ``base_model``/``base_vae``: a single file or a diffusers folder; ``loras`` go into the main
    UNet (and the text encoder with ``text``); ``text``: a prompt is given, so the text encoder (the
    base model's when it has one) and the CLIP tokenizer in the ``tokenizer`` folder are loaded.
    """

    base_model: Path | None = None
    base_vae: Path | None = None
    loras: tuple[LoraWeights, ...] = field(default_factory=tuple)
    text: bool = False
    tokenizer: Path | None = None

    def files(self) -> tuple[Path, ...]:
        """The files and folders these plugins read (what a kept pipeline is keyed on)."""
        return tuple(path for path in (self.base_model, self.base_vae, *(lora.path for lora in self.loras), self.tokenizer) if path is not None)


def is_lora_state(keys) -> bool:
    """LoRA keys in any of the published formats (kohya ``lora_down``/``lora_up``, diffusers/PEFT ``lora_A``/``lora_B``, ``.lora.``)."""
    return any(marker in key for key in keys for marker in ("lora_down", "lora_up", "lora_A", "lora_B", ".lora.", "lora_unet_"))
