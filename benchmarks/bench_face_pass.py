"""What the face pass costs: network evaluations per frame of the main pass and of the face pass, at each preset.

Both passes sample on a tiny random model, counted by ``NetworkEvaluations`` (hooks on the UNet,
ControlNet and appearance model) as benchmarks/bench_presets.py counts the presets: the main pass
from noise, then the face pass image-to-image from the main frames at each ``--strengths`` (the
pipeline's ``image`` and ``strength``, as retarget runs it), with the same preset's schedule. Counts
do not depend on the model's size; a face canvas of F x F costs (F x F) / (W x H) of a main-pass
evaluation on a W x H canvas (at SD 1.5's 512x896 portrait, a 512x512 face is 0.57 of one).

    python benchmarks/bench_face_pass.py [--frames 8] [--strengths 0.3 0.5 0.7]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_presets import SCHEDULES, inputs, sample  # noqa: E402

from magicpose_cli.models import MagicPosePipeline, tiny_components  # noqa: E402
from magicpose_cli.models.counting import NetworkEvaluations  # noqa: E402

PRESETS = ["quality", "preset=balanced", "preset=fast"]
NETWORKS = ("unet", "controlnet", "appearance")


def per_frame(counter: NetworkEvaluations, frames: int) -> dict[str, float]:
    return {network: counter.total(network) / frames for network in NETWORKS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    args = parser.parse_args()
    pipe = MagicPosePipeline(**tiny_components(seed=0))
    pipe.set_progress_bar_config(disable=True)
    counter, config = NetworkEvaluations(pipe), pipe.scheduler.config
    _, init = inputs(args.frames, 8)  # any init frames: the count does not depend on them
    print("| schedule | preset | pass | UNet images per frame | ControlNet | appearance | all networks | vs main pass |\n|---|---|---|---:|---:|---:|---:|---:|")
    for schedule, recommended in SCHEDULES.values():
        for preset in PRESETS:
            counter.clear()
            sample(pipe, config, preset, recommended, args.frames, args.batch, 8)
            main_pass = per_frame(counter, args.frames)
            rows = [("main", main_pass)]
            for strength in args.strengths:
                counter.clear()
                sample(pipe, config, preset, recommended, args.frames, args.batch, 8, image=init, strength=strength)
                rows.append((f"face pass, strength {strength:g}", per_frame(counter, args.frames)))
            for name, counts in rows:
                total = sum(counts.values())
                print(f"| {schedule} | {preset} | {name} | " + " | ".join(f"{counts[n]:.2f}" for n in NETWORKS)
                      + f" | {total:.2f} | {total / sum(main_pass.values()):.2f}x |", flush=True)  # fmt: skip
    counter.remove()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
