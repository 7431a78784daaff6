"""AnimateDiff motion modules: fidelity to the original, loading every published layout, and the pipeline with one.

The fixture (tests/fixtures/animatediff_motion_tiny) is one temporal module run by the original
AnimateDiff code; its README says what it computes. Published-size checkpoints are built here from
zero-stride tensors (a 453 M-parameter file of a few kilobytes), in the key layout of the fixture's
module, placed as the published files place it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import MotionAdapter
from safetensors.torch import load_file, save_file

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models import MagicPosePipeline, tiny_components
from magicpose_cli.models.context_windows import context_windows, fuse_window_predictions
from magicpose_cli.models.motion import check_adapter_fits, motion_transformers, original_temporal_module
from magicpose_cli.models.motion_loading import load_motion_adapter, motion_adapter_config

FIXTURE = Path(__file__).parent / "fixtures" / "animatediff_motion_tiny"
SD15_UNET = {"block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "norm_num_groups": 32,
             "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
             "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}  # fmt: skip


def test_temporal_module_reproduces_the_original_animatediff():
    settings = json.loads((FIXTURE / "fixture.json").read_text())
    expected = load_file(str(FIXTURE / "expected.safetensors"))
    module = original_temporal_module(
        load_file(str(FIXTURE / "motion_module.safetensors")), settings["in_channels"], settings["num_attention_heads"],
        settings["num_transformer_block"], settings["temporal_position_encoding_max_len"],
    )  # fmt: skip
    with torch.no_grad():
        output = module(expected["input"])
    assert (output - expected["output"]).abs().max() < 1e-5
    # diffusers' own GroupNorm (statistics over all frames at once) is far off on this input.
    transformer = module.transformer
    plain = torch.nn.GroupNorm(32, 64, eps=1e-6)
    plain.weight, plain.bias = transformer.norm.weight, transformer.norm.bias
    transformer.norm = plain
    with torch.no_grad():
        assert (module(expected["input"]) - expected["output"]).abs().max() > 1e-2


def original_layout(mid_block: bool, table_length: int = 32) -> dict[str, torch.Tensor]:
    """A published SD 1.5 motion checkpoint's keys and shapes, every tensor a zero-stride float16 view."""
    module = {key: tuple(value.shape) for key, value in load_file(str(FIXTURE / "motion_module.safetensors")).items()}
    zero = torch.zeros((), dtype=torch.float16)

    def placed(prefix: str, channels: int) -> dict[str, torch.Tensor]:
        scale = channels // 64
        tensors = {f"{prefix}.{key}": zero.expand(*[side * scale for side in shape]) for key, shape in module.items()}
        for attention in (0, 1):
            table = f"{prefix}.temporal_transformer.transformer_blocks.0.attention_blocks.{attention}.pos_encoder.pe"
            tensors[table] = zero.expand(1, table_length, channels)
        return tensors

    state = {}
    for block, channels in enumerate((320, 640, 1280, 1280)):
        for layer in range(2):
            state.update(placed(f"down_blocks.{block}.motion_modules.{layer}", channels))
        for layer in range(3):
            state.update(placed(f"up_blocks.{block}.motion_modules.{layer}", (1280, 1280, 640, 320)[block]))
    if mid_block:
        state.update(placed("mid_block.motion_modules.0", 1280))
    return state


@pytest.mark.parametrize(
    ("name", "mid_block", "table_length", "parameters"),
    [("mm_sd_v15_v2.ckpt", True, 32, 453_209_280), ("v3_sd15_mm.ckpt", False, 32, 417_137_600), ("mm_sd_v15.ckpt", False, 24, 417_137_600)],
)
def test_published_sd15_layouts_load_with_every_key_used(tmp_path, name, mid_block, table_length, parameters):
    path = tmp_path / name
    state = original_layout(mid_block, table_length)
    torch.save(state, path)
    assert path.stat().st_size < 5_000_000  # zero-stride views: the test costs no real memory
    config = motion_adapter_config(path)
    adapter = load_motion_adapter(path)  # raises on any key without a place, or any weight not given
    assert sum(parameter.numel() for parameter in adapter.parameters()) == parameters
    assert (config["use_motion_mid_block"], config["motion_max_seq_length"]) == (mid_block, table_length)
    assert adapter.config.block_out_channels == (320, 640, 1280, 1280) or list(adapter.config.block_out_channels) == [320, 640, 1280, 1280]
    assert not any(tensor.is_meta for tensor in [*adapter.parameters(), *adapter.buffers()])
    check_adapter_fits(adapter.config, SD15_UNET, name)
    with pytest.raises(MagicPoseError, match=r"channels \(320, 640, 1280, 1280\) per block; this model's UNet has \(32, 64\)"):
        check_adapter_fits(adapter.config, tiny_components()["unet"].config, name)


def tiny_adapter(seed: int = 0, zero_output: bool = False) -> MotionAdapter:
    """A random motion module for the tiny model (output projections scaled up so that it moves frames visibly)."""
    torch.manual_seed(seed)
    adapter = MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_norm_num_groups=8, motion_num_attention_heads=4)
    for transformer in motion_transformers(adapter):
        with torch.no_grad():
            transformer.proj_out.weight.mul_(0.0 if zero_output else 4.0)
            transformer.proj_out.bias.mul_(0.0 if zero_output else 1.0)
    return adapter


def test_every_published_form_of_a_module_loads_the_same_weights(tmp_path):
    """A MotionAdapter folder, its bare diffusers state dict, and the original names (Lightning's comfyui files)."""
    adapter = tiny_adapter(seed=3)
    adapter.save_pretrained(tmp_path / "folder")
    bare = tmp_path / "folder" / "diffusion_pytorch_model.safetensors"
    renamed = {}
    for key, value in load_file(str(bare)).items():
        name = key.replace("attn1.", "attention_blocks.0.").replace("attn2.", "attention_blocks.1.")
        name = name.replace("norm1.", "norms.0.").replace("norm2.", "norms.1.").replace("norm3.", "ff_norm.")
        block, rest = name.split(".motion_modules.")
        layer, rest = rest.split(".", 1)
        if rest.endswith("pos_embed.pe"):
            for attention in (0, 1):
                renamed[f"{block}.motion_modules.{layer}.temporal_transformer.{rest[: -len('pos_embed.pe')]}attention_blocks.{attention}.pos_encoder.pe"] = value.clone()
        else:
            renamed[f"{block}.motion_modules.{layer}.temporal_transformer.{rest}"] = value
    save_file(renamed, str(tmp_path / "original_names.safetensors"))
    save_file(load_file(str(bare)), str(tmp_path / "bare.safetensors"))
    expected = adapter.state_dict()
    for source in ("folder", "bare.safetensors", "original_names.safetensors"):
        loaded = load_motion_adapter(tmp_path / source).state_dict()
        assert loaded.keys() == expected.keys(), source
        assert all(torch.equal(loaded[key], expected[key]) for key in expected), source


def test_files_that_are_not_motion_modules_are_one_clear_line(tmp_path):
    from conftest import FIXTURE_DIR

    with pytest.raises(MagicPoseError, match="is not an AnimateDiff motion module"):
        load_motion_adapter(FIXTURE_DIR / "model_state-tiny.th")
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(MagicPoseError, match="cannot read the motion module"):
        load_motion_adapter(broken)
    state = {key: value for key, value in tiny_adapter().state_dict().items() if "down_blocks.0.motion_modules.0.proj_in" not in key}
    save_file(state, str(tmp_path / "incomplete.safetensors"))
    with pytest.raises(MagicPoseError, match="2 motion-module weights are missing"):
        load_motion_adapter(tmp_path / "incomplete.safetensors")


def pipelines(adapter: MotionAdapter) -> tuple[MagicPosePipeline, MagicPosePipeline]:
    """The tiny model without and with ``adapter`` (the same weights: the motion UNet is built from the UNet's modules)."""
    plain = MagicPosePipeline(**tiny_components(seed=0))
    moving = MagicPosePipeline(**{**plain.components, "motion_adapter": adapter})
    for pipe in (plain, moving):
        pipe.set_progress_bar_config(disable=True)
    return plain, moving


def video_inputs(num_frames: int, steps: int = 3) -> dict:
    generator = torch.Generator().manual_seed(1)
    poses = torch.rand(1, 3, 64, 64, generator=generator).repeat(num_frames, 1, 1, 1)
    poses += 0.05 * torch.arange(num_frames).view(-1, 1, 1, 1) / num_frames  # a pose that drifts
    return {"reference_image": torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1, "pose_maps": poses.clamp(0, 1),
            "num_inference_steps": steps, "generator": torch.Generator().manual_seed(0)}  # fmt: skip


def test_a_module_with_zero_output_projections_gives_the_frames_of_no_module():
    plain, moving = pipelines(tiny_adapter(zero_output=True))
    without = plain(**video_inputs(6), frames_per_batch=6, output_type="np").images
    with_module = moving(**video_inputs(6), frames_per_batch=6, noise="shared", output_type="np").images
    assert np.abs(without - with_module).max() < 1e-5
    # A module that does move the frames is far from them, and so is motion scale 1 against 0.
    _, random = pipelines(tiny_adapter())
    assert np.abs(random(**video_inputs(6), noise="shared", output_type="np").images - without).max() > 1e-2
    off = random(**video_inputs(6), noise="shared", motion_scale=0.0, frames_per_batch=6, output_type="np").images
    assert np.abs(off - without).max() < 1e-5


def test_a_window_as_long_as_the_video_is_one_pass_of_the_motion_unet():
    _, moving = pipelines(tiny_adapter())
    inputs = video_inputs(5)
    one_window = moving(**inputs, context_frames=5, output_type="latent").images
    longer = moving(**video_inputs(5), context_frames=12, output_type="latent").images
    assert torch.equal(one_window, longer)
    # The same loop written out: all frames through the motion UNet together at every step.
    with torch.no_grad():
        prompt, _ = moving.encode_prompt(None, None, None)
        reference = moving.encode_reference(inputs["reference_image"])
        latents = moving.prepare_latents(5, 64, 64, torch.Generator().manual_seed(0), None, moving.noise_mode(None), 16).expand(5, -1, -1, -1)
        moving.scheduler.set_timesteps(3)
        for timestep in moving.scheduler.timesteps:
            features = moving.denoiser.reference_features(reference, timestep, prompt)
            noise = moving.guided_noise(latents, timestep, inputs["pose_maps"], features, None, prompt, prompt, 7.0, "image")
            latents = moving.scheduler.step(noise, timestep, latents).prev_sample
    assert torch.allclose(one_window, latents, atol=1e-6)


def test_windows_cover_any_length_and_fuse_without_seams():
    assert context_windows(5, 16, 4) == [range(5)]
    assert context_windows(40, 16, 4) == [range(0, 16), range(12, 28), range(24, 40)]
    assert context_windows(41, 16, 4)[-1] == range(25, 41)  # the last window is shifted to end at the last frame
    windows = context_windows(20, 8, 2)  # 2.5 windows
    ramps = [torch.full((8, 1), float(index)) for index, _ in enumerate(windows)]
    fused = fuse_window_predictions(windows, ramps, 20, "pyramid").flatten()
    assert torch.all(fused[1:] >= fused[:-1]) and fused[0] == 0 and fused[-1] == len(windows) - 1

    _, moving = pipelines(tiny_adapter())
    frames = moving(**video_inputs(20, steps=4), context_frames=8, context_overlap=2, noise="tiled", output_type="np").images
    steps = np.abs(np.diff(frames.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))  # frame t -> t+1
    inside = [t for t in range(19) if any(window.start <= t and t + 1 < window.stop for window in windows[:1])]
    handovers = [window.start - 1 + offset for window in windows[1:] for offset in range(2)]  # where the next window takes over
    assert max(steps[handovers]) <= max(steps[inside]), (steps[handovers], steps[inside])
