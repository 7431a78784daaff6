"""Network evaluations and wall time of three sampling schedules on one mid-size random model.

- original: the original MagicPose code's loop, one frame at a time; per step the appearance
  model, the pose ControlNet for both guidance branches (the unconditional one ignores it) and
  the UNet twice;
- per-batch appearance: our pipeline before reference features were shared across batches (one
  pipeline call per batch, as `retarget` made them: the appearance model once per batch and step);
- ours: one pipeline call for the whole video: the appearance model once per step, its features
  kept on the CPU between batches, the ControlNet only in the branch that uses it.

All three must give the same frames. Evaluations are images processed per frame and step.

    python benchmarks/bench_pipeline.py [--frames 8] [--batches 1 4] [--steps 5] [--latent 32]
"""

from __future__ import annotations

import argparse
import time

import torch

from magicpose_cli.models import MagicPosePipeline, tiny_components
from magicpose_cli.models.counting import NetworkEvaluations

NETWORKS = ("appearance", "controlnet", "unet")  # images each processes: a batch of 4 frames counts 4, the one reference 1


@torch.no_grad()
def original_schedule(pipe, reference, poses, noise, steps, guidance) -> torch.Tensor:
    """The original DDIM loop (``controlnet_important`` mode), one frame at a time."""
    denoiser, context, frames = pipe.denoiser, pipe.empty_prompt(), []
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


def per_batch_calls(pipe, reference, poses, batch, **settings) -> torch.Tensor:
    """One pipeline call per batch: each computes the reference features again."""
    return torch.cat([pipe(reference, poses[start : start + batch], frames_per_batch=batch, **settings).images for start in range(0, len(poses), batch)])


def timed(pipe, counts: NetworkEvaluations, frame_steps: int, run) -> tuple[torch.Tensor, float, dict]:
    counts.clear()
    start = time.perf_counter()
    latents = run()
    return latents, time.perf_counter() - start, {name: counts.total(name) / frame_steps for name in NETWORKS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--latent", type=int, default=32, help="latent side (image side / 8)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = MagicPosePipeline(**tiny_components(seed=0, block_out_channels=(32, 64, 128), cross_attention_dim=128))
    pipe.set_progress_bar_config(disable=True)
    side = args.latent * 8
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(1, 3, side, side, generator=generator) * 2 - 1
    poses = torch.rand(args.frames, 3, side, side, generator=generator)
    noise = torch.randn(1, 4, args.latent, args.latent, generator=generator)
    settings = dict(num_inference_steps=args.steps, guidance_scale=7.0, latents=noise, output_type="latent")
    counts, frame_steps = NetworkEvaluations(pipe), args.frames * args.steps

    print(f"model: UNet/appearance/ControlNet channels (32, 64, 128), latents {args.latent}x{args.latent}, "
          f"{args.frames} frames, {args.steps} DDIM steps, {args.threads} CPU threads")  # fmt: skip
    print("| schedule | batch | appearance model | ControlNet | UNet | wall time (s) | vs original |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    original, original_seconds, evaluations = timed(pipe, counts, frame_steps, lambda: original_schedule(pipe, reference, poses, noise, args.steps, 7.0))
    rows = [("original", 1, evaluations, original_seconds)]
    worst = 0.0
    for batch in args.batches:
        for name, run in (
            ("per-batch appearance (before)", lambda: per_batch_calls(pipe, reference, poses, batch, **settings)),
            ("ours (after)", lambda: pipe(reference, poses, frames_per_batch=batch, **settings).images),
        ):
            latents, seconds, evaluations = timed(pipe, counts, frame_steps, run)
            worst = max(worst, (latents - original).abs().max().item())
            rows.append((name, batch, evaluations, seconds))
    for name, batch, evaluations, seconds in rows:
        per_network = " | ".join(f"{evaluations[network]:.2f}" for network in NETWORKS)
        print(f"| {name} | {batch} | {per_network} | {seconds:.1f} | x{original_seconds / seconds:.2f} |")
    print(f"max |schedule - original| over final latents: {worst:.2e} (latents up to {original.abs().max():.1f})")
    if worst > 1e-3:
        raise SystemExit("outputs disagree")


if __name__ == "__main__":
    main()
