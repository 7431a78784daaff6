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


@pytest.fixture(scope="session")
def recommending_tiny_model(tiny_model_dir, tmp_path_factory):
    """``make(settings)``: a copy of the tiny model folder that recommends ``settings``, as a model author ships it."""
    import shutil

    def make(settings) -> Path:
        folder = tmp_path_factory.mktemp("recommending") / "model"
        shutil.copytree(tiny_model_dir, folder)
        settings.write(folder)
        return folder

    return make


@pytest.fixture(scope="session")
def tiny_checkpoint_with_clip(tmp_path_factory):
    """``model_state-tiny.th`` plus a tiny CLIP text encoder in the published key layout
    (``cond_stage_model.transformer.text_model.*``): a complete original checkpoint. Returns (path, clip)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from magicpose_cli.models.checkpoint_files import load_original_state_dict

    torch.manual_seed(0)
    clip = CLIPTextModel(
        CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=1, max_position_embeddings=77, hidden_act="quick_gelu")
    ).eval()  # fmt: skip
    state = dict(load_original_state_dict(FIXTURE_DIR / "model_state-tiny.th"))
    prefix = "cond_stage_model.transformer.text_model."
    state.update({prefix + key.removeprefix("text_model."): value for key, value in clip.state_dict().items()})
    path = tmp_path_factory.mktemp("with_clip") / "model_state-tiny.th"
    torch.save({key: value.clone() for key, value in state.items()}, path)
    return path, clip


@pytest.fixture(scope="module")
def reference_png(tmp_path_factory) -> Path:
    """scikit-image's astronaut (a real photo of a person) as a 128x128 PNG: the retarget tests' reference."""
    from PIL import Image
    from skimage.data import astronaut

    path = tmp_path_factory.mktemp("reference") / "astronaut.png"
    Image.fromarray(astronaut()).resize((128, 128)).save(path)
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: on a shared CI machine, two threads that wait on each other take several times longer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
