"""Evaluate the demo model and its ablations on held-out synthetic people (the model card's table).

Variants: the demo model; the same trained without the appearance stage (stage 2 only, from the
starting model; ``scripts/train_demo_model.py`` trains it into WORK/ablation_pose_only/model);
reference attention switched off at inference; per-frame instead of shared initial noise; the model
after stage 1 (appearance, before any pose control). Scores are mean ± standard deviation over
pairs x noise seeds; "person PSNR" counts only the pixels where the ground truth shows the person
(it differs from that person's empty background). For scale,
two rows without generation: the reference frame repeated (what copying the input scores) and the
ground truth through the VAE and back (the best a generation in this latent space can score).
A second table compares the demo model with each other row on the same videos: the spread above
is mostly how hard each pair is, which both share, so it cannot say whether a small gap is real.

    python benchmarks/eval_demo.py --work-dir /tmp/demo_run [--pairs 8] [--steps 20] [--guidance 7] [--scheduler dpm]
    python benchmarks/eval_demo.py --work-dir /tmp/faces_run --model NEW --compare-to magicpose_cli/demo_model

``--compare-to`` scores two models only (no ablations): the whole frame with its face box, and the
same pairs as close-ups (the reference's face crop, the face landmarks of the ground truth's crops),
which say whether a model can draw a face at its canvas size, as the face pass asks it to.

Sampling settings default to the ones the model recommends (its recommended_settings.json), so the
table scores what `magicpose demo` and `retarget` run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from diffusers.utils import logging as diffusers_logging
from PIL import Image

from magicpose_cli.evaluation import (
    EVALUATION_SEEDS,
    EvaluationSettings,
    ScoreSummary,
    evaluate,
    evaluate_closeups,
    evaluate_face_pass,
    evaluate_frames,
    generate_for_pair,
    markdown_table,
    paired_markdown_table,
    score_video,
    vae_round_trip,
)
from magicpose_cli.model_store import DEMO_MODEL_DIR, RecommendedSettings
from magicpose_cli.models import MagicPosePipeline
from magicpose_cli.models.loading import Scheduler, load_pipeline
from magicpose_cli.retarget import RetargetOptions, resolve_sampling
from magicpose_cli.synthetic import sample_pair
from magicpose_cli.synthetic.closeups import closeup_pair


def load(folder: Path, scheduler: Scheduler) -> MagicPosePipeline:
    return load_pipeline(folder, torch.device("cpu"), torch.float32, scheduler)


def save_example(pipeline: MagicPosePipeline, settings: EvaluationSettings, path: Path) -> None:
    """reference | ground truth row | generated row, for the first held-out pair."""
    pair = sample_pair(EVALUATION_SEEDS[0], settings.size, settings.num_frames)
    generated = (generate_for_pair(pipeline, pair, settings) * 255).round().astype(np.uint8)
    blank = np.full_like(pair.reference_frame, 255)
    rows = [
        np.concatenate([pair.reference_frame, *pair.target_frames], axis=1),
        np.concatenate([blank, *generated], axis=1),
    ]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True, help="The work folder of scripts/train_demo_model.py.")
    parser.add_argument("--model", type=Path, default=DEMO_MODEL_DIR)
    parser.add_argument("--pairs", type=int, default=len(EVALUATION_SEEDS))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, help="Sampling steps (default: the model's recommendation).")
    parser.add_argument("--guidance", type=float, help="Guidance scale (default: the model's recommendation).")
    parser.add_argument("--scheduler", type=Scheduler, choices=[scheduler.value for scheduler in Scheduler],
                        help="Sampler (default: the model's recommendation).")
    parser.add_argument("--noise-seeds", type=int, default=4, help="Initial-noise seeds to average the model rows over.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compare-to", type=Path, help="Score only --model and this model, on whole frames and close-ups.")
    parser.add_argument("--face-strengths", default="0.5", help="With --compare-to: face-pass strengths to score (comma-separated; empty: none).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    diffusers_logging.disable_progress_bar()

    sampling, _ = resolve_sampling(
        RetargetOptions(steps=args.steps, guidance=args.guidance, scheduler=args.scheduler),
        RecommendedSettings.read(args.model), "cpu", "float32",
    )  # as retarget resolves them: given, else the model's recommendation, else retarget's default
    settings = EvaluationSettings(size=64, num_frames=args.frames, steps=sampling.steps, guidance=sampling.guidance)
    scheduler = sampling.scheduler
    seeds = EVALUATION_SEEDS[: args.pairs] if args.pairs <= len(EVALUATION_SEEDS) else range(9000, 9000 + args.pairs)
    noise_seeds = tuple(range(args.noise_seeds))
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.compare_to is not None:
        return compare_models(args, settings, scheduler, seeds, noise_seeds)
    demo, ablation = load(args.model, scheduler), load(args.work_dir / "ablation_pose_only" / "model", scheduler)
    stage1 = load(args.work_dir / "stage1_appearance" / "model", scheduler)
    started = time.perf_counter()

    def for_each_noise_seed(summary: ScoreSummary) -> ScoreSummary:
        """Rows without noise score each pair once; repeated per seed they pair up with the model rows."""
        return ScoreSummary.of(summary.scores * len(noise_seeds))

    results = {
        "demo model": evaluate(demo, seeds, settings, noise_seeds=noise_seeds),
        "without appearance stage (stage 2 only)": evaluate(ablation, seeds, settings, noise_seeds=noise_seeds),
        "reference attention off at inference": evaluate(demo, seeds, settings, use_reference=False, noise_seeds=noise_seeds),
        "per-frame initial noise": evaluate(demo, seeds, settings, noise="per-frame", noise_seeds=noise_seeds),
        "after stage 1 only (no pose control yet)": evaluate(stage1, seeds, settings, noise_seeds=noise_seeds),
        "reference frame repeated (no model)": for_each_noise_seed(evaluate_frames(
            lambda pair: np.stack([pair.reference_frame] * settings.num_frames), seeds, settings
        )),
        "VAE round trip of the ground truth (ceiling)": for_each_noise_seed(evaluate_frames(
            lambda pair: vae_round_trip(demo, np.stack(pair.target_frames)), seeds, settings
        )),
    }
    seconds = time.perf_counter() - started
    table = markdown_table(results) + "\n\n" + paired_markdown_table(results, "demo model")
    report(args, table, results, settings, scheduler, seeds, noise_seeds, seconds)
    save_example(demo, settings, args.work_dir / "example.png")


def compare_models(args, settings: EvaluationSettings, scheduler: Scheduler, seeds, noise_seeds) -> None:
    """--model against --compare-to: whole frames (with face-box scores) and close-ups, and the paired differences."""
    models = {"model": load(args.model, scheduler), "compared model": load(args.compare_to, scheduler)}
    started = time.perf_counter()
    results = {name: evaluate(pipeline, seeds, settings, noise_seeds=noise_seeds) for name, pipeline in models.items()}
    for strength in [float(value) for value in args.face_strengths.split(",") if value.strip()]:
        results |= {f"{name} + face pass {strength:g}": evaluate_face_pass(pipeline, seeds, settings, noise_seeds, strength)
                    for name, pipeline in models.items()}  # fmt: skip
    results |= {f"{name}, close-ups": evaluate_closeups(pipeline, seeds, settings, noise_seeds) for name, pipeline in models.items()}
    closeups = [closeup_pair(seed, settings.size, settings.num_frames) for seed in seeds]
    repeated = [score_video(np.stack([pair.reference_frame] * settings.num_frames), np.stack(pair.target_frames)) for pair in closeups]
    results["reference close-up repeated (no model)"] = ScoreSummary.of(repeated * len(noise_seeds))  # pairs up as the rows above
    seconds = time.perf_counter() - started
    whole = {name: summary for name, summary in results.items() if "close-up" not in name}
    close = {name: summary for name, summary in results.items() if "close-up" in name}
    table = markdown_table(results) + "\n\n" + paired_markdown_table(whole, "model") + "\n\n" + paired_markdown_table(close, "model, close-ups")
    report(args, table, results, settings, scheduler, seeds, noise_seeds, seconds)
    rows = [np.concatenate([closeups[0].reference_frame, *closeups[0].target_frames], axis=1)]
    for pipeline in models.values():
        generated = (generate_for_pair(pipeline, closeups[0], settings) * 255).round().astype(np.uint8)
        rows.append(np.concatenate([np.full_like(closeups[0].reference_frame, 255), *generated], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.work_dir / "closeups.png")  # reference | truth; model; compared model


def report(args, table: str, results: dict[str, ScoreSummary], settings, scheduler, seeds, noise_seeds, seconds: float) -> None:
    print(table)
    print(f"{len(seeds)} held-out pairs x {settings.num_frames} frames x {len(noise_seeds)} noise seeds, {settings.steps} {scheduler.value} steps, guidance {settings.guidance}; {seconds:.0f} s")
    (args.work_dir / "evaluation.md").write_text(table + "\n")
    (args.work_dir / "evaluation.json").write_text(
        json.dumps({"settings": settings.__dict__, "scheduler": scheduler.value, "pairs": len(seeds), "noise_seeds": len(noise_seeds), "seconds": seconds,
                    "results": {name: summary.as_dict() for name, summary in results.items()}}, indent=2)  # fmt: skip
    )


if __name__ == "__main__":
    main()
