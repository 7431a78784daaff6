"""Conversion at the published size: the exact layout of model_state-110000.th, from cheap tensors.

Every tensor of the published checkpoint (tests/fixtures/original_sd15_layout/keys.json) is one
distinct number expanded to its shape (stride 0), so torch.save stores a single element per
tensor and the 9 GB layout fits in a few megabytes. Conversion reads it memory-mapped and gives
the networks the mapped tensors themselves, so the numbers found in the built networks tell which
checkpoint key went where: every key must land in exactly one parameter, except the few the
published model never uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from magicpose_cli.models.configs import sd15_original_config
from magicpose_cli.models.conversion import OriginalCheckpoint, build_components

LAYOUT = json.loads((Path(__file__).parent / "fixtures" / "original_sd15_layout" / "keys.json").read_text())
SCHEDULE_BUFFERS = {entry["key"] for entry in LAYOUT["buffers"] if "." not in entry["key"]}
UNUSED_KEYS = {
    *(SCHEDULE_BUFFERS - {"betas"}),  # all derived from betas
    "cond_stage_model.transformer.text_model.embeddings.position_ids",  # a constant arange
    *(entry["key"] for entry in LAYOUT["keys"] if entry["key"].startswith("appearance_control_model.input_hint_block.")),
}  # the appearance model's hint block is built by the original class but never run

# SD 1.5 parameter counts (diffusers' UNet2DConditionModel, AutoencoderKL, ControlNetModel, CLIP ViT-L/14 text).
SD15_UNET, SD15_VAE, SD15_CONTROLNET, SD15_CLIP_TEXT = 859_520_964, 83_653_863, 361_279_120, 123_060_480


def ldm_betas() -> torch.Tensor:
    return torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64).pow(2).float()


@pytest.fixture(scope="module")
def cheap_checkpoint(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """The published layout with tensor i holding the value i + 1 everywhere; and each numbered key's value."""
    state, values = {}, {}
    for index, entry in enumerate(LAYOUT["keys"]):
        key, shape, dtype = entry["key"], entry["shape"], getattr(torch, entry["dtype"])
        values[key] = index + 1
        state[key] = torch.tensor(index + 1, dtype=dtype).expand(shape)
    state["betas"] = ldm_betas()  # real values: they become the scheduler (checked apart from the numbered tensors)
    del values["betas"]
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    path = tmp_path_factory.mktemp("sd15_layout") / "model_state-110000.th"
    torch.save(state, path)
    return path, values


def test_the_cheap_checkpoint_has_the_published_layout_in_a_few_megabytes(cheap_checkpoint):
    path, _ = cheap_checkpoint
    assert path.stat().st_size < 8 * 2**20
    state = torch.load(path, mmap=True, weights_only=True)
    assert len(state) == LAYOUT["num_keys"] == 2182
    assert sum(tensor.numel() for tensor in state.values()) == LAYOUT["total_elements"]
    assert {key: list(tensor.shape) for key, tensor in state.items()} == {e["key"]: e["shape"] for e in LAYOUT["keys"]}


def test_conversion_without_config_uses_every_key_and_gives_sd15_sized_networks(cheap_checkpoint):
    path, values = cheap_checkpoint
    checkpoint = OriginalCheckpoint(path)
    assert checkpoint.kind == "magicpose"
    components = dict(build_components(checkpoint, sd15_original_config()))  # stride-0 weights: no real memory

    networks = ("unet", "reference_unet", "controlnet", "vae", "text_encoder")
    counts = {name: sum(p.numel() for p in components[name].parameters()) for name in networks}
    hint_block = sum(
        torch.Size(e["shape"]).numel() for e in LAYOUT["keys"] if e["key"].startswith("appearance_control_model.input_hint_block.")
    )
    assert counts == {
        "unet": SD15_UNET,
        "reference_unet": LAYOUT["per_prefix"]["appearance_control_model."]["parameters"] - hint_block,
        "controlnet": SD15_CONTROLNET,
        "vae": SD15_VAE,
        "text_encoder": SD15_CLIP_TEXT,
    }
    assert counts["unet"] == LAYOUT["per_prefix"]["model.diffusion_model."]["parameters"]
    assert counts["reference_unet"] == SD15_UNET - 2 * 320 - (320 * 4 * 3 * 3 + 4)  # the UNet without its output norm and conv

    found = [int(p[(0,) * p.dim()].item()) for name in networks for p in components[name].parameters()]
    assert len(found) == len(set(found)), "a checkpoint tensor was used twice"
    unused = set(values.values()) - set(found)
    assert {key for key, value in values.items() if value in unused} == UNUSED_KEYS
    assert torch.equal(components["scheduler"].betas.float(), ldm_betas())
    assert components["empty_prompt"]().shape == (1, 77, 768)


def test_a_published_sd15_single_file_plugs_in_as_base_model_and_vae_with_every_key_used(tmp_path):
    """A community SD 1.5 file (UNet, VAE and CLIP under the original names; numbered cheap tensors, a
    .ckpt read without code) becomes the main UNet and the VAE in the published layout, every UNet and VAE key used."""
    from magicpose_cli.models.conversion import unet_config, vae_config
    from magicpose_cli.models.plugins import base_unet, base_vae

    sd_prefixes = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")
    entries = [entry for entry in LAYOUT["keys"] if entry["key"].startswith(sd_prefixes)]
    values = {entry["key"]: index + 1 for index, entry in enumerate(entries)}
    state = {entry["key"]: torch.tensor(values[entry["key"]], dtype=getattr(torch, entry["dtype"])).expand(entry["shape"]) for entry in entries}
    path = tmp_path / "community-sd15.ckpt"
    torch.save({"state_dict": state}, path)
    unet = base_unet(path, unet_config(sd15_original_config(), "unet_config"), torch.float32)
    vae = base_vae(path, vae_config(sd15_original_config()), torch.float32)
    assert sum(p.numel() for p in unet.parameters()) == SD15_UNET and sum(p.numel() for p in vae.parameters()) == SD15_VAE
    found = [int(p[(0,) * p.dim()].item()) for network in (unet, vae) for p in network.parameters()]
    assert len(found) == len(set(found)), "a checkpoint tensor was used twice"
    used = {key for key, value in values.items() if value in set(found)}
    assert used == {key for key in values if key.startswith(("model.diffusion_model.", "first_stage_model."))}
