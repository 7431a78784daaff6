"""Behaviour of the pipeline and the reference attention on tiny random models."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import UNet2DConditionModel

from magicpose_cli.models import MagicPoseDenoiser, MagicPosePipeline, tiny_components


@pytest.fixture()
def pipe() -> MagicPosePipeline:
    pipe = MagicPosePipeline(**tiny_components(seed=0))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def inputs(num_frames: int = 3, seed: int = 1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "reference_image": torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1,
        "pose_maps": torch.rand(num_frames, 3, 64, 64, generator=generator),
        "num_inference_steps": 3,
    }


def count_calls(module: torch.nn.Module) -> list:
    calls = []
    module.register_forward_pre_hook(lambda _module, args: calls.append(args[0].shape[0]))
    return calls


def test_save_and_load_round_trip_gives_identical_frames(pipe, tmp_path):
    before = pipe(**inputs(), generator=torch.Generator().manual_seed(0), output_type="pt").images
    pipe.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "reference_unet" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = MagicPosePipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    after = loaded(**inputs(), generator=torch.Generator().manual_seed(0), output_type="pt").images
    for name in ("unet", "reference_unet", "controlnet", "vae", "empty_prompt"):
        saved, restored = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert saved.keys() == restored.keys()
        assert all(torch.equal(saved[key], restored[key]) for key in saved), name
    # Same weights; kernels may round differently for freshly loaded memory (seen: 3e-6).
    assert torch.allclose(before, after, atol=1e-5)
    assert loaded.reference_unet.conv_out.__class__.__name__ == "Identity"  # no output head


def test_shared_noise_makes_equal_poses_give_equal_frames(pipe):
    settings = inputs(num_frames=1)
    settings["pose_maps"] = settings["pose_maps"].repeat(2, 1, 1, 1)
    shared = pipe(**settings, generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert torch.allclose(shared[0], shared[1], atol=1e-5)
    per_frame = pipe(**settings, generator=torch.Generator().manual_seed(0), noise="per-frame", output_type="latent").images
    assert (per_frame[0] - per_frame[1]).abs().max() > 0.1


def test_frames_do_not_depend_on_their_batch(pipe):
    settings = inputs(num_frames=3)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    together = pipe(**settings, latents=noise, frames_per_batch=3, output_type="latent").images
    alone = torch.cat(
        [pipe(**{**settings, "pose_maps": settings["pose_maps"][i : i + 1]}, latents=noise, output_type="latent").images for i in range(3)]
    )
    assert torch.allclose(together, alone, atol=1e-4)


@pytest.mark.parametrize("frames_per_batch", [5, 2, 1])
def test_appearance_model_runs_once_per_step_whatever_the_batches_and_controlnet_only_where_used(pipe, frames_per_batch):
    reference_calls, controlnet_calls, unet_calls = count_calls(pipe.reference_unet), count_calls(pipe.controlnet), count_calls(pipe.unet)
    pipe(**inputs(num_frames=5), frames_per_batch=frames_per_batch, output_type="latent")
    steps, batches = 3, -(-5 // frames_per_batch)
    assert reference_calls == [1] * steps  # one reference image, once per step for the whole video
    assert len(controlnet_calls) == steps * batches and sum(controlnet_calls) == 5 * steps  # conditional branch only
    assert len(unet_calls) == 2 * steps * batches


def test_text_mode_with_another_negative_prompt_computes_both_features_once_per_step(pipe):
    reference_calls, unet_calls = count_calls(pipe.reference_unet), count_calls(pipe.unet)
    negative = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(5))
    pipe(**inputs(num_frames=3), guidance_mode="text", negative_prompt_embeds=negative, frames_per_batch=1, output_type="latent")
    assert len(reference_calls) == 2 * 3 and len(unet_calls) == 2 * 3 * 3


def test_text_mode_with_the_same_prompt_skips_the_identical_branch(pipe):
    reference_calls, unet_calls = count_calls(pipe.reference_unet), count_calls(pipe.unet)
    pipe(**inputs(num_frames=2), guidance_mode="text", output_type="latent")
    assert len(reference_calls) == len(unet_calls) == 3


def test_reference_switched_off_is_the_plain_sd_unet():
    parts = tiny_components(seed=0)
    plain_unet = copy.deepcopy(parts["unet"])  # default diffusers processors
    denoiser = MagicPoseDenoiser(parts["unet"], parts["reference_unet"], parts["controlnet"])
    latents, context = torch.randn(2, 4, 8, 8), torch.randn(1, 77, 32)
    timestep = torch.tensor(400)
    with torch.no_grad():
        ours = denoiser(latents, timestep, context)
        plain = plain_unet(latents, timestep, context.expand(2, -1, -1)).sample
        features = denoiser.reference_features(torch.randn(1, 4, 8, 8), timestep, context)
        with_reference = denoiser(latents, timestep, context, features)
    assert torch.allclose(ours, plain, atol=1e-6)
    assert (with_reference - plain).abs().max() > 1e-3


def test_reference_is_broadcast_not_copied_and_matches_per_frame_references():
    parts = tiny_components(seed=0)
    denoiser = MagicPoseDenoiser(parts["unet"], parts["reference_unet"], parts["controlnet"])
    reference, latents, context = torch.randn(1, 4, 8, 8), torch.randn(3, 4, 8, 8), torch.randn(1, 77, 32)
    timestep = torch.tensor(300)
    with torch.no_grad():
        shared = denoiser.reference_features(reference, timestep, context)
        per_frame = denoiser.reference_features(reference.expand(3, -1, -1, -1), timestep, context.expand(3, -1, -1))
        broadcast = denoiser(latents, timestep, context, shared)
        copied = denoiser(latents, timestep, context, per_frame)
    assert all(feature.shape[0] == 1 for feature in shared.values())
    assert torch.allclose(broadcast, copied, atol=1e-5)


def test_appearance_model_stops_after_its_last_recorded_block_without_changing_features():
    parts = tiny_components(seed=0)
    denoiser = MagicPoseDenoiser(parts["unet"], parts["reference_unet"], parts["controlnet"])
    reference, context, timestep = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 32), torch.tensor(10)
    with torch.no_grad():
        inference = denoiser.reference_features(reference, timestep, context)  # stops early
    training = denoiser.reference_features(reference, timestep, context)  # runs to the end, for gradients
    assert inference.keys() == training.keys() and len(inference) == 7  # 1+1 down, 1 mid, 2+2 up
    assert all(torch.equal(inference[name], training[name].detach()) for name in inference)
    assert training[denoiser.reference_attention.last_name].requires_grad


def test_mismatched_appearance_model_is_refused():
    parts = tiny_components(seed=0)
    other = UNet2DConditionModel(**{**parts["unet"].config, "block_out_channels": (32, 64, 64),
                                    "down_block_types": ("CrossAttnDownBlock2D",) * 3,
                                    "up_block_types": ("CrossAttnUpBlock2D",) * 3})  # fmt: skip
    with pytest.raises(ValueError, match="do not match"):
        MagicPoseDenoiser(parts["unet"], other, parts["controlnet"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pose_maps": torch.rand(2, 3, 60, 64)}, "multiples of"),
        ({"pose_maps": torch.rand(2, 1, 64, 64)}, "N x 3 x H x W"),
        ({"reference_image": torch.rand(1, 3, 32, 32)}, "reference image"),
        ({"latents": torch.randn(3, 4, 8, 8)}, "latents must be"),
        ({"guidance_mode": "both"}, "guidance_mode"),
    ],
)
def test_wrong_inputs_are_explained(pipe, change, message):
    with pytest.raises(ValueError, match=message):
        pipe(**{**inputs(num_frames=2), **change}, output_type="latent")


def test_output_types(pipe):
    def run(output_type: str):
        return pipe(**inputs(num_frames=2), generator=torch.Generator().manual_seed(0), output_type=output_type).images

    pil, array, tensor = run("pil"), run("np"), run("pt")
    assert len(pil) == 2 and pil[0].size == (64, 64)
    assert array.shape == (2, 64, 64, 3) and tensor.shape == (2, 3, 64, 64)
    assert 0 <= tensor.min() and tensor.max() <= 1
    assert torch.allclose(torch.from_numpy(array).permute(0, 3, 1, 2), tensor, atol=1e-6)


def test_step_callback_sees_every_step_of_every_batch(pipe):
    seen = []

    def on_step(_pipe, step_index, _timestep, info):
        seen.append((info["batch_index"], info["num_batches"], step_index))
        return {}

    pipe(**inputs(num_frames=3), frames_per_batch=2, callback_on_step_end=on_step, output_type="latent")
    assert seen == [(b, 2, s) for b in range(2) for s in range(3)]


def test_reference_switched_off_at_inference_ignores_the_reference(pipe):
    reference_calls = count_calls(pipe.reference_unet)
    settings = inputs(num_frames=2)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    off = pipe(**settings, latents=noise, use_reference=False, output_type="latent").images
    other_reference = {**settings, "reference_image": -settings["reference_image"]}
    off_other = pipe(**other_reference, latents=noise, use_reference=False, output_type="latent").images
    on = pipe(**settings, latents=noise, output_type="latent").images
    assert torch.equal(off, off_other)
    assert len(reference_calls) == 3  # only the run with the reference on
    assert (on - off).abs().max() > 1e-3


def test_pose_maps_as_uint8_arrays_pil_images_or_tensors_give_the_same_frames(pipe):
    import numpy as np
    from PIL import Image

    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # an untrained ControlNet ignores its input (zero convolution); let the maps matter
        pipe.controlnet.controlnet_cond_embedding.conv_out.weight.normal_(0, 0.5, generator=generator)
    maps = torch.randint(0, 256, (2, 64, 64, 3), generator=generator, dtype=torch.uint8).numpy()
    maps[1] = np.minimum(maps[1], 1)  # a dark map (values 0 and 1) is still read as 0..1/255, not guessed as [0, 1]
    reference = torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1
    common = dict(reference_image=reference, num_inference_steps=2, output_type="latent")

    def run(pose_maps):
        return pipe(pose_maps=pose_maps, generator=torch.Generator().manual_seed(0), **common).images

    as_tensor = run(torch.from_numpy(maps).permute(0, 3, 1, 2).float() / 255.0)
    assert torch.equal(run(list(maps)), as_tensor)
    assert torch.equal(run(maps), as_tensor)
    assert torch.equal(run([Image.fromarray(pose_map) for pose_map in maps]), as_tensor)
    full_scale = run(torch.from_numpy(maps).permute(0, 3, 1, 2).float())
    assert (full_scale[1] - as_tensor[1]).abs().max() > 1e-3  # the scale matters, so the test can fail


def test_batches_can_be_skipped_without_changing_the_others(pipe):
    settings = {**inputs(num_frames=5), "frames_per_batch": 2, "output_type": "latent"}
    everything = pipe(**settings, generator=torch.Generator().manual_seed(0)).images
    reference_calls = count_calls(pipe.reference_unet)
    batches = list(pipe.generate_batches(**settings, generator=torch.Generator().manual_seed(0), skip_batch=lambda frames: frames.start < 2))
    assert [frames for frames, _ in batches] == [range(2, 4), range(4, 5)]
    assert torch.allclose(torch.cat([latents for _, latents in batches]), everything[2:], atol=1e-5)
    assert len(reference_calls) == 3  # once per step for the two batches left
    assert list(pipe.generate_batches(**settings, skip_batch=lambda frames: True)) == []


def test_the_denoiser_follows_a_swapped_unet(pipe):
    before = pipe.denoiser
    assert pipe.denoiser is before  # built once, not per call
    other = tiny_components(seed=1)["unet"]
    pipe.unet = other
    assert pipe.denoiser.unet is other and pipe.denoiser is not before
    first = pipe(**inputs(num_frames=1), generator=torch.Generator().manual_seed(0), output_type="latent").images
    with torch.no_grad():
        other.conv_out.weight.mul_(2)
    second = pipe(**inputs(num_frames=1), generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert (first - second).abs().max() > 1e-3



def test_a_float16_vae_that_overflows_is_decoded_again_in_float32(pipe):
    with torch.no_grad():
        pipe.vae.decoder.conv_in.weight.mul_(1e5)  # activations beyond float16's 65504, as SD 1.5's VAE reaches at large sizes
    pipe.vae.to(torch.float16)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * pipe.vae.config.scaling_factor
    with torch.no_grad():
        plain = pipe.vae.decode(latents.half() / pipe.vae.config.scaling_factor).sample
        upcast = copy.deepcopy(pipe.vae).float().decode(latents / pipe.vae.config.scaling_factor).sample
        images = pipe.vae_decode(latents)
    assert not torch.isfinite(plain).all()  # the overflow is real
    assert torch.isfinite(upcast).all() and torch.isfinite(images).all()
    assert torch.allclose(images.float(), upcast, atol=1e-5)
    assert pipe.vae.dtype == torch.float16  # back in its own dtype afterwards
