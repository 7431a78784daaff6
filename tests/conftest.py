"""Shared fixtures: the original implementation's tiny checkpoint and its converted model folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "original_tiny"


@pytest.fixture(scope="session")
def original_tiny() -> dict[str, torch.Tensor]:
    """Inputs and outputs of the original MagicPose code for ``model_state-tiny.th``."""
    return load_file(str(FIXTURE_DIR / "expected.safetensors"))


@pytest.fixture(scope="session")
def converted_tiny_dir(tmp_path_factory) -> Path:
    """``model_state-tiny.th`` converted (with its yaml) into our model folder."""
    from magicpose_cli.models.conversion import convert_checkpoint

    output = tmp_path_factory.mktemp("converted") / "tiny"
    return convert_checkpoint(FIXTURE_DIR / "model_state-tiny.th", output, FIXTURE_DIR / "model_config.yaml")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random MagicPose saved as a model folder (64x64 images, 8x8 latents)."""
    from magicpose_cli.models import MagicPosePipeline, tiny_components

    output = tmp_path_factory.mktemp("tiny_model") / "model"
    MagicPosePipeline(**tiny_components(seed=0)).save_pretrained(output)
    return output
