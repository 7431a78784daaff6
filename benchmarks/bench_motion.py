"""What a motion module costs per frame and step: network evaluations and wall time, with and without one.

One mid-size random SD-like model (as bench_pipeline.py's), once as it is and once with a random
AnimateDiff motion module of its size, on the same video. With the module the whole video is
denoised step by step in context windows, so frames in an overlap are evaluated once per window
they are in: (windows x window length) / frames evaluations per frame-step; the appearance model
still runs once per step for the whole video and the ControlNet once per frame in each window.
Evaluations are images processed per frame and step; "motion UNet" counts the frames it runs.

    python benchmarks/bench_motion.py [--frames 24] [--context 16] [--overlap 4] [--steps 3] [--latent 32]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
from diffusers import MotionAdapter

from magicpose_cli.models import MagicPosePipeline, tiny_components
from magicpose_cli.models.context_windows import context_windows

NETWORKS = ("reference_unet", "controlnet", "unet")


def counting(pipe: MagicPosePipeline) -> Counter:
    """Images each network processes; a motion UNet's input is one video of F frames: it counts F."""
    counts: Counter = Counter()

    def hook(name):
        def count(_module, args):
            sample = args[0]
            counts.update({name: sample.shape[0] * (sample.shape[2] if sample.ndim == 5 else 1)})

        return count

    for name in NETWORKS:
        getattr(pipe, name).register_forward_pre_hook(hook(name))
    return counts


def run(pipe: MagicPosePipeline, counts: Counter, inputs: dict, frame_steps: int, **settings) -> tuple[float, dict]:
    counts.clear()
    started = time.perf_counter()
    pipe(**inputs, output_type="latent", **settings)
    return time.perf_counter() - started, {name: counts[name] / frame_steps for name in NETWORKS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--context", type=int, default=16)
    parser.add_argument("--overlap", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--latent", type=int, default=32, help="latent side (image side / 8)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    channels = (32, 64, 128)
    plain = MagicPosePipeline(**tiny_components(seed=0, block_out_channels=channels, cross_attention_dim=128))
    adapter = MotionAdapter(block_out_channels=channels, motion_layers_per_block=1, motion_norm_num_groups=8, motion_num_attention_heads=8)
    moving = MagicPosePipeline(**{**plain.components, "motion_adapter": adapter})
    side = args.latent * 8
    generator = torch.Generator().manual_seed(0)
    inputs = {"reference_image": torch.rand(1, 3, side, side, generator=generator) * 2 - 1,
              "pose_maps": torch.rand(args.frames, 3, side, side, generator=generator), "num_inference_steps": args.steps}  # fmt: skip
    frame_steps = args.frames * args.steps
    rows = []
    for name, pipe, settings in (
        ("no motion module, batch 4", plain, {"frames_per_batch": 4}),
        (f"no motion module, batch {args.context}", plain, {"frames_per_batch": args.context}),
        (f"motion module, windows of {args.context} overlapping by {args.overlap}", moving,
         {"context_frames": args.context, "context_overlap": args.overlap, "frames_per_batch": 4}),
    ):  # fmt: skip
        pipe.set_progress_bar_config(disable=True)
        counts = counting(pipe)
        run(pipe, counts, {**inputs, "num_inference_steps": 1}, args.frames, **settings)  # warm-up
        seconds, evaluations = run(pipe, counts, inputs, frame_steps, **settings)
        rows.append((name, evaluations, seconds))
    windows = context_windows(args.frames, args.context, args.overlap)
    print(f"{args.frames} frames, {args.steps} DDIM steps, latents {args.latent}x{args.latent}, UNet channels {channels}, "
          f"{len(windows)} windows; parameters: UNet {sum(p.numel() for p in plain.unet.parameters()) / 1e6:.2f} M, "
          f"motion module {sum(p.numel() for p in adapter.parameters()) / 1e6:.2f} M")  # fmt: skip
    print("| run | appearance model | ControlNet | UNet | wall time (s) | s per frame-step | vs no module, batch 4 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, evaluations, seconds in rows:
        print(f"| {name} | {evaluations['reference_unet']:.2f} | {evaluations['controlnet']:.2f} | {evaluations['unet']:.2f} "
              f"| {seconds:.1f} | {seconds / frame_steps:.3f} | x{seconds / rows[0][2]:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
