"""The demo model with and without a motion module, and the three initial-noise modes, on held-out synthetic people.

Rows: the demo model as it ships (no motion module, shared noise, the model card's row), then the
same with the motion module under each ``--noise`` mode; every row scores the same pairs x noise
seeds, so the second table (each row against the first, video by video) says whether a difference
holds on most videos. What the issue asks of a demo motion module: a lower temporal error, and person
PSNR within 0.2 dB of the row without it. Videos longer than 16 frames run in context windows.

    python benchmarks/eval_motion.py --motion-module /tmp/demo_motion/motion/motion_module [--frames 24] [--pairs 8]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging

from magicpose_cli.evaluation import EVALUATION_SEEDS, EvaluationSettings, ScoreSummary, evaluate, markdown_table, paired_difference
from magicpose_cli.model_store import DEMO_MODEL_DIR, RecommendedSettings
from magicpose_cli.models.loading import load_pipeline
from magicpose_cli.retarget import RetargetOptions, resolve_sampling

BASELINE = "demo model, no motion module (shared noise)"


def paired_table(results: dict[str, ScoreSummary]) -> str:
    """Each motion row against the baseline, video by video: temporal error and person PSNR."""
    lines = ["| against the row without a module | temporal error difference ↓ | videos with a lower temporal error | person PSNR difference (dB) |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for name, summary in results.items():
        if name == BASELINE:
            continue
        temporal = paired_difference(summary, results[BASELINE], "temporal_error")
        person = paired_difference(summary, results[BASELINE], "person_psnr")
        lower = sum(ours.temporal_error < theirs.temporal_error for ours, theirs in zip(summary.scores, results[BASELINE].scores))
        lines.append(f"| {name} | {temporal.mean:+.4f} ± {temporal.spread:.4f} | {lower} of {temporal.videos} | {person.mean:+.2f} ± {person.spread:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--motion-module", type=Path, required=True, help="A motion module for the demo model (a MotionAdapter folder).")
    parser.add_argument("--model", type=Path, default=DEMO_MODEL_DIR)
    parser.add_argument("--pairs", type=int, default=len(EVALUATION_SEEDS))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--noise-seeds", type=int, default=4)
    parser.add_argument("--noise", nargs="+", default=["shared", "per-frame", "tiled"], help="Noise modes to score with the module.")
    parser.add_argument("--out", type=Path, help="Write the tables (.md) and the scores (.json) here.")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    diffusers_logging.disable_progress_bar()
    sampling, _ = resolve_sampling(RetargetOptions(), RecommendedSettings.read(args.model), "cpu", "float32")
    settings = EvaluationSettings(size=64, num_frames=args.frames, steps=sampling.steps, guidance=sampling.guidance)
    seeds = EVALUATION_SEEDS[: args.pairs] if args.pairs <= len(EVALUATION_SEEDS) else range(9000, 9000 + args.pairs)
    noise_seeds = tuple(range(args.noise_seeds))
    plain = load_pipeline(args.model, torch.device("cpu"), torch.float32, sampling.scheduler)
    moving = load_pipeline(args.model, torch.device("cpu"), torch.float32, sampling.scheduler, motion_module=args.motion_module)
    started = time.perf_counter()
    results = {BASELINE: evaluate(plain, seeds, settings, noise_seeds=noise_seeds)}
    for noise in args.noise:
        results[f"with the motion module, {noise} noise"] = evaluate(moving, seeds, settings, noise_seeds=noise_seeds, noise=noise)
    seconds = time.perf_counter() - started
    tables = markdown_table(results) + "\n\n" + paired_table(results)
    note = (f"{len(seeds)} held-out pairs x {settings.num_frames} frames x {len(noise_seeds)} noise seeds, {settings.steps} "
            f"{sampling.scheduler.value} steps, guidance {settings.guidance}; {seconds:.0f} s")  # fmt: skip
    print(tables + "\n\n" + note)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(tables + "\n\n" + note + "\n")
        scores = {name: summary.as_dict() for name, summary in results.items()}
        args.out.with_suffix(".json").write_text(json.dumps({"settings": settings.__dict__, "seconds": seconds, "results": scores}, indent=2))


if __name__ == "__main__":
    main()
