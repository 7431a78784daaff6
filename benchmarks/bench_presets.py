"""Network evaluations per frame of each preset and speed option, counted, and their wall time against `quality`.

Counts: every variant samples a video on a tiny random model with its real step count, at batch 1
and 4, without and with a tiny random motion module (AnimateDiff's MotionAdapter; windows of 16
frames overlapping by 4, so frames in an overlap run once per window), while ``NetworkEvaluations``
(hooks on the UNet, ControlNet and appearance model) counts the images each network processes,
split into conditional and plain (unconditional) calls and into calls that ran the deep blocks and
calls that reused them. Counts do not depend on the model's size; the UNet-equivalents weigh each
kind of call by its FLOPs at SD 1.5 size and 512x512, measured with torch's FLOP counter on the
meta device (no weights are allocated); with a motion module each motion-UNet frame also costs
what the published SD 1.5 motion module adds per frame, measured the same way (``--motion-cost``
skips building it, about a minute on the CPU, and takes a ratio given).
Two schedules are the quality baseline: the published model's (no recommendation: 50 DDIM steps)
and the demo model's (its recommended 20 DPM-Solver++ steps).

Times: the presets against `quality` in one run on a mid-size random model.

    python benchmarks/bench_presets.py [--frames 8] [--variants quality preset=balanced preset=fast deep=2 ...]
    python benchmarks/bench_presets.py --skip-timing
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from diffusers import MotionAdapter

sys.path.insert(0, str(Path(__file__).parent))
from bench_gpu import sd15_pipeline  # noqa: E402
from speed_variants import describe, resolve_variant, sampler_for  # noqa: E402

from magicpose_cli.model_store import DEMO_MODEL_DIR  # noqa: E402
from magicpose_cli.models import MagicPosePipeline, tiny_components  # noqa: E402
from magicpose_cli.models.configs import SD15_RECOMMENDED_SETTINGS  # noqa: E402
from magicpose_cli.models.counting import NetworkEvaluations, count_flops, measure_costs  # noqa: E402
from magicpose_cli.models.motion_loading import SHIPPED_CONFIG  # noqa: E402
from magicpose_cli.models.settings import RecommendedSettings  # noqa: E402

SCHEDULES = {"published": ("published model (50 DDIM steps)", SD15_RECOMMENDED_SETTINGS),
             "demo": ("demo model (20 DPM-Solver++ steps)", RecommendedSettings.read(DEMO_MODEL_DIR))}
DEFAULT_VARIANTS = ["quality", "preset=balanced", "preset=fast", "interval=0.2-1", "interval=0.5-1", "deep=2", "app=2"]
MOTION_VARIANTS = ["quality", "preset=balanced", "preset=fast", "interval=0.2-1", "app=2", "deep=2"]
COLUMNS = [("unet", "conditional", "deep"), ("unet", "conditional", "shallow"), ("unet", "plain", "deep"), ("unet", "plain", "shallow"),
           ("controlnet", "conditional", "deep"), ("controlnet", "conditional", "shallow"), ("appearance", "conditional", "deep")]  # fmt: skip


def inputs(frames: int, latent: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    side = latent * 8
    return torch.rand(1, 3, side, side, generator=generator) * 2 - 1, torch.rand(frames, 3, side, side, generator=generator)


def sample(pipe, config, spec, recommended, frames, batch, latent, **motion) -> tuple[object, float, torch.Tensor]:
    """(resolved settings, seconds, latents) of one variant's video (``motion``: the context windows, with a module)."""
    sampling = resolve_variant(spec, recommended, batch_size=batch)
    reference, poses = inputs(frames, latent)
    started = time.perf_counter()
    latents = sampler_for(pipe, sampling, config)(
        reference, poses, num_inference_steps=sampling.steps, guidance_scale=sampling.guidance, frames_per_batch=batch,
        generator=torch.Generator().manual_seed(0), output_type="latent", **motion,
    ).images  # fmt: skip
    return sampling, time.perf_counter() - started, latents


def motion_cost() -> float:
    """What the published SD 1.5 motion module adds to a UNet call, per frame of a 16-frame window, in plain-UNet calls."""
    plain = sd15_pipeline()
    adapter = MotionAdapter(**{name: value for name, value in json.loads(SHIPPED_CONFIG.read_text()).items() if not name.startswith("_")})
    moving = MagicPosePipeline(**{**plain.components, "motion_adapter": adapter})  # built on the CPU: the motion UNet checks its weights
    plain.to("meta")
    moving.to("meta")
    with torch.device("meta"):
        latents, context, timestep = torch.zeros(16, 4, 64, 64), torch.zeros(1, 77, 768), torch.tensor(500)
        return count_flops(lambda: moving.denoiser(latents, timestep, context)) / count_flops(lambda: plain.denoiser(latents, timestep, context)) - 1


def count_rows(pipe, config, counter, costs, variants, recommended, frames, batch, motion_extra, motion) -> None:
    """One table row per variant: images per frame by kind of call, UNet-equivalents per frame, their ratio to the first's.
    ``config``: the model's own scheduler config (each variant's sampler replaces ``pipe.scheduler``)."""
    baseline = None
    for spec in variants:
        counter.clear()
        try:
            sampling, _, _ = sample(pipe, config, spec, recommended, frames, batch, latent=8, **motion)
        except ValueError as refused:
            print(f"| {spec} | refused: {refused} | {batch} |" + " |" * (len(COLUMNS) + 2))
            continue
        per_frame = [counter.counts[column] / frames for column in COLUMNS]
        equivalents = (counter.unet_equivalents(costs) + motion_extra * counter.total("unet")) / frames
        baseline = baseline or equivalents
        print(f"| {spec} | {describe(sampling)} | {batch} | " + " | ".join(f"{value:.2f}" for value in per_frame)
              + f" | {equivalents:.1f} | {equivalents / baseline:.2f}x |", flush=True)  # fmt: skip


def count_table(costs, variants, motion_variants, frames, motion_frames, motion_extra, motion_schedules) -> None:
    plain = MagicPosePipeline(**tiny_components(seed=0))
    torch.manual_seed(0)
    adapter = MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_norm_num_groups=8, motion_num_attention_heads=4)
    moving = MagicPosePipeline(**{**plain.components, "motion_adapter": adapter})
    header = " | ".join("/".join(column) for column in COLUMNS)
    runs = [("no motion module", plain, variants, frames, 0.0, {}, list(SCHEDULES)),
            ("motion module", moving, motion_variants, motion_frames, motion_extra, {"context_frames": 16, "context_overlap": 4}, motion_schedules)]  # fmt: skip
    for name, pipe, run_variants, video_frames, extra, motion, schedules in runs:
        pipe.set_progress_bar_config(disable=True)
        counter, config = NetworkEvaluations(pipe), pipe.scheduler.config
        for schedule, recommended in (SCHEDULES[schedule] for schedule in schedules):
            print(f"\n{schedule}, {name}, {video_frames} frames; images per frame, UNet-equivalents at SD 1.5 size\n")
            print(f"| variant | settings | batch | {header} | UNet-eq. per frame | vs quality |\n|---|---|---:|" + "---:|" * (len(COLUMNS) + 2))
            for batch in (1, 4):
                count_rows(pipe, config, counter, costs, run_variants, recommended, video_frames, batch, extra, motion)
        counter.remove()


def timing_table(variants, frames, batch, latent, threads) -> None:
    pipe = MagicPosePipeline(**tiny_components(seed=0, block_out_channels=(32, 64, 128), cross_attention_dim=128))
    pipe.set_progress_bar_config(disable=True)
    config = pipe.scheduler.config
    print(f"\nwall time: UNet channels (32, 64, 128), latents {latent}x{latent}, {frames} frames at batch {batch}, {threads} CPU threads\n")
    print("| schedule | variant | settings | seconds per frame | vs quality | max abs latent difference to quality |\n|---|---|---|---:|---:|---:|")
    for schedule, recommended in SCHEDULES.values():
        baseline = None
        for spec in variants:
            sampling, seconds, latents = sample(pipe, config, spec, recommended, frames, batch, latent)
            baseline = baseline or (seconds, latents)
            difference = (latents - baseline[1]).abs().max().item()
            print(f"| {schedule} | {spec} | {describe(sampling)} | {seconds / frames:.2f} | x{baseline[0] / seconds:.2f} | {difference:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=8, help="Frames of the counted video without a motion module.")
    parser.add_argument("--motion-frames", type=int, default=28, help="Frames of the counted video with one (windows of 16 overlapping by 4).")
    parser.add_argument("--motion-cost", type=float, default=None, help="The motion module's extra per UNet frame, if measured before.")
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, help="The first is the baseline (speed_variants.py).")
    parser.add_argument("--motion-schedules", nargs="+", choices=list(SCHEDULES), default=list(SCHEDULES), help="Those counted with a motion module.")
    parser.add_argument("--motion-variants", nargs="+", default=MOTION_VARIANTS, help="Those counted with a motion module.")
    parser.add_argument("--timed-variants", nargs="+", default=["quality", "preset=balanced", "preset=fast"])
    parser.add_argument("--time-frames", type=int, default=4)
    parser.add_argument("--time-batch", type=int, default=4)
    parser.add_argument("--time-latent", type=int, default=32, help="Latent side of the timed model (image side / 8).")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with torch.device("meta"):
        costs = measure_costs(sd15_pipeline(), 64, 64)
    print("per image, in plain-UNet calls (SD 1.5, 512x512; a plain UNet call is "
          f"{costs.unet_flops / 1e9:.0f} GFLOP): conditional UNet {costs.unet_conditional:.3f} (shallow {costs.unet_conditional_shallow:.3f}), "
          f"plain UNet 1 (shallow {costs.unet_plain_shallow:.3f}), ControlNet {costs.controlnet:.3f} (shallow {costs.controlnet_shallow:.3f}), "
          f"appearance model {costs.appearance:.3f}")  # fmt: skip
    motion_extra = motion_cost() if args.motion_cost is None else args.motion_cost
    print(f"the SD 1.5 motion module adds {motion_extra:.3f} plain-UNet calls per motion-UNet frame")
    count_table(costs, args.variants, args.motion_variants, args.frames, args.motion_frames, motion_extra, args.motion_schedules)
    if not args.skip_timing:
        timing_table(args.timed_variants, args.time_frames, args.time_batch, args.time_latent, args.threads)


if __name__ == "__main__":
    main()
