"""Our model reproduces the original MagicPose implementation (tests/fixtures/original_tiny).

Tolerances are the fixture README's: an exact re-implementation reaches them in float32 on CPU,
and each is far below what a missing or misplaced path changes (about 1e-2).
"""

from __future__ import annotations

import pytest
import torch

from magicpose_cli.models import MagicPosePipeline

EPS_TOLERANCE = 1e-5
LATENT_TOLERANCE = 5e-4
IMAGE_TOLERANCE = 2e-4


@pytest.fixture(scope="module")
def pipe(converted_tiny_dir) -> MagicPosePipeline:
    pipe = MagicPosePipeline.from_pretrained(converted_tiny_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a.float() - b.float()).abs().max().item()


def generate(pipe, original_tiny, **kwargs):
    settings = dict(
        reference_image=original_tiny["reference_image"],
        pose_maps=original_tiny["pose_maps"],
        num_inference_steps=10,
        guidance_scale=7.0,
        latents=original_tiny["initial_noise"],
        prompt_embeds=original_tiny["text_context"],
        output_type="latent",
    )
    return pipe(**{**settings, **kwargs}).images


def test_reference_latent_is_vae_posterior_mode_scaled(pipe, original_tiny):
    latent = pipe.encode_reference(original_tiny["reference_image"])
    assert max_difference(latent, original_tiny["reference_latent"]) < EPS_TOLERANCE


def test_vae_roundtrip_matches(pipe, original_tiny):
    with torch.no_grad():
        posterior = pipe.vae.encode(original_tiny["reference_image"]).latent_dist
        decoded = pipe.vae.decode(posterior.mode()).sample
    assert max_difference(decoded, original_tiny["vae_roundtrip"]) < IMAGE_TOLERANCE


def test_conditional_and_unconditional_noise_predictions(pipe, original_tiny):
    timestep = torch.tensor(500)
    context = original_tiny["text_context"]
    with torch.no_grad():
        features = pipe.denoiser.reference_features(original_tiny["reference_latent"], timestep, context)
        conditional = pipe.denoiser(
            original_tiny["initial_noise"], timestep, context, features, original_tiny["pose_maps"][:1]
        )
        unconditional = pipe.denoiser(original_tiny["initial_noise"], timestep, context)
    assert max_difference(conditional, original_tiny["eps_cond_t500"]) < EPS_TOLERANCE
    assert max_difference(unconditional, original_tiny["eps_uncond_t500"]) < EPS_TOLERANCE
    # Each path matters at this scale, so the tolerance above can tell them apart.
    assert max_difference(conditional, unconditional) > 1e-2


@pytest.mark.parametrize("frames_per_batch", [3, 2, 1])
def test_frames_batched_match_original_one_at_a_time(pipe, original_tiny, frames_per_batch):
    latents = generate(pipe, original_tiny, frames_per_batch=frames_per_batch)
    assert max_difference(latents, original_tiny["frames_latent"]) < LATENT_TOLERANCE


def test_decoded_frames_match(pipe, original_tiny):
    images = generate(pipe, original_tiny, frames_per_batch=2, output_type="pt")
    expected = (original_tiny["frames_image"] / 2 + 0.5).clamp(0, 1)
    assert max_difference(images, expected) < IMAGE_TOLERANCE


def test_text_guidance_mode_matches_balance_mode(pipe, original_tiny):
    latent = generate(pipe, original_tiny, pose_maps=original_tiny["pose_maps"][:1], guidance_mode="text")
    assert max_difference(latent, original_tiny["balance_latent_frame0"]) < LATENT_TOLERANCE


def test_swapped_poses_are_told_apart(pipe, original_tiny):
    """The tolerance is meaningful: the frames of two swapped pose maps differ far beyond it."""
    swapped = generate(pipe, original_tiny, pose_maps=original_tiny["pose_maps"][[1, 0, 2]])
    assert max_difference(swapped[0], original_tiny["frames_latent"][0]) > 10 * LATENT_TOLERANCE


def test_pil_inputs_give_the_same_frames_as_tensors(pipe, original_tiny):
    from diffusers.image_processor import VaeImageProcessor

    processor = VaeImageProcessor()
    reference = processor.postprocess(original_tiny["reference_image"], output_type="pil")[0]
    poses = processor.postprocess(original_tiny["pose_maps"], output_type="pil", do_denormalize=[False] * 3)
    latents = generate(pipe, original_tiny, reference_image=reference, pose_maps=poses)
    # 8-bit quantisation of the inputs moves the result a little (about 5e-4), far less than a
    # pose swap (about 2e-2).
    assert max_difference(latents, original_tiny["frames_latent"]) < 5e-3
