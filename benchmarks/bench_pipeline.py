"""Our batched sampling against the original schedule, on the same mid-size random model and inputs.

The original MagicPose code samples one frame at a time; per step it runs the appearance model,
the pose ControlNet for the conditional branch, the ControlNet again for the unconditional branch
(whose result the plain UNet then ignores) and the UNet twice. We batch frames, run the
appearance model once per batch and step, and skip the ignored ControlNet run. Both must give
the same frames. Prints network evaluations per frame and the wall-time ratio.

    python benchmarks/bench_pipeline.py [--frames 8] [--batch 4] [--steps 10] [--latent 64]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch

from magicpose_cli.models import MagicPosePipeline, tiny_components


def count_evaluations(pipe: MagicPosePipeline) -> Counter:
    """Images each network processes (a batch of 4 frames counts 4; the one reference counts 1)."""
    counts: Counter = Counter()
    for name in ("reference_unet", "controlnet", "unet"):
        network = getattr(pipe, name)
        network.register_forward_pre_hook(lambda _m, args, name=name: counts.update({name: args[0].shape[0]}))
    return counts


@torch.no_grad()
def original_schedule(pipe, reference, poses, noise, context, steps, guidance) -> torch.Tensor:
    """The original DDIM loop (``controlnet_important`` mode), one frame at a time."""
    denoiser, frames = pipe.denoiser, []
    reference_latents = pipe.encode_reference(reference)
    for pose in poses:
        pipe.scheduler.set_timesteps(steps)
        latents = noise.clone()
        for timestep in pipe.scheduler.timesteps:
            features = denoiser.reference_features(reference_latents, timestep, context)
            conditional = denoiser(latents, timestep, context, features, pose[None])
            denoiser.controlnet(latents, timestep, context, controlnet_cond=pose[None], return_dict=False)  # unused
            unconditional = denoiser(latents, timestep, context)
            noise_prediction = unconditional + guidance * (conditional - unconditional)
            latents = pipe.scheduler.step(noise_prediction, timestep, latents).prev_sample
        frames.append(latents)
    return torch.cat(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--latent", type=int, default=64, help="latent side (image side / 8)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    parts = tiny_components(seed=0, block_out_channels=(32, 64, 128), cross_attention_dim=128)
    pipe = MagicPosePipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    side = args.latent * 8
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(1, 3, side, side, generator=generator) * 2 - 1
    poses = torch.rand(args.frames, 3, side, side, generator=generator)
    noise = torch.randn(1, 4, args.latent, args.latent, generator=generator)
    context = pipe.empty_prompt()
    settings = dict(num_inference_steps=args.steps, guidance_scale=7.0, latents=noise, output_type="latent")

    counts = count_evaluations(pipe)
    start = time.perf_counter()
    original = original_schedule(pipe, reference, poses, noise, context, args.steps, 7.0)
    original_seconds = time.perf_counter() - start
    original_counts = {name: counts[name] / args.frames for name in sorted(counts)}

    counts.clear()
    start = time.perf_counter()
    ours = pipe(reference, poses, frames_per_batch=args.batch, **settings).images
    our_seconds = time.perf_counter() - start
    our_counts = {name: counts[name] / args.frames for name in sorted(counts)}

    difference = (ours - original).abs().max().item()
    print(f"model: UNet/appearance/ControlNet channels (32, 64, 128), latents {args.latent}x{args.latent}, "
          f"{args.frames} frames, {args.steps} steps, batch {args.batch}, {args.threads} CPU threads")  # fmt: skip
    print("network evaluations per frame (appearance model / ControlNet / UNet):")
    print(f"  original: {original_counts['reference_unet']:.2f} / {original_counts['controlnet']:.2f} / {original_counts['unet']:.2f}")
    print(f"  ours:     {our_counts['reference_unet']:.2f} / {our_counts['controlnet']:.2f} / {our_counts['unet']:.2f}")
    print(f"wall time: original {original_seconds:.1f} s, ours {our_seconds:.1f} s, speed-up x{original_seconds / our_seconds:.2f}")
    print(f"max |ours - original| over final latents: {difference:.2e} (latents up to {original.abs().max():.1f})")
    if difference > 1e-3:
        raise SystemExit("outputs disagree")


if __name__ == "__main__":
    main()
