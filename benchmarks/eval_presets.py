"""Quality and cost of sampling variants (presets, solvers, guidance interval, feature reuse) on the demo model.

Each variant samples the same synthetic pairs from the same initial noise seeds as the first
variant (``quality``, the model's own schedule unless told otherwise) and is scored against the
ground truth (PSNR, person PSNR, SSIM, temporal error, flicker excess), against the first variant's frames of the
same video (PSNR to quality), and video by video against it on the person (paired difference).
Its cost is counted while it samples (``NetworkEvaluations``: hooks on the networks) and weighed
by what each kind of call costs at SD 1.5 size and 512x512 (FLOPs on the meta device).

    python benchmarks/eval_presets.py --out /tmp/speed/sweep --pairs validation --noise-seeds 2 \
        --variants quality steps=10 "steps=10,interval=0-0.7" preset=balanced preset=fast

Results go to OUT.json after every variant (a rerun with the same OUT skips the variants done) and
the table to OUT.md. Validation pairs (8000-8003) are for choosing, held-out pairs (9000-9007) for
reporting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from diffusers.utils import logging as diffusers_logging

sys.path.insert(0, str(Path(__file__).parent))
from bench_gpu import sd15_pipeline  # noqa: E402
from speed_variants import describe, resolve_variant, sampler_for  # noqa: E402

from magicpose_cli.evaluation import (  # noqa: E402
    EVALUATION_SEEDS,
    EvaluationSettings,
    ScoreSummary,
    VideoScores,
    generate_for_pair,
    paired_difference,
    person_masks,
    psnr,
    score_video,
)
from magicpose_cli.model_store import DEMO_MODEL_DIR, RecommendedSettings  # noqa: E402
from magicpose_cli.models.counting import EvaluationCosts, NetworkEvaluations, measure_costs  # noqa: E402
from magicpose_cli.models.loading import load_pipeline  # noqa: E402
from magicpose_cli.synthetic import sample_pair  # noqa: E402

PAIRS = {"validation": tuple(range(8000, 8004)), "heldout": EVALUATION_SEEDS}


def sd15_costs(path: Path) -> EvaluationCosts:
    """What each kind of call costs at SD 1.5 size, 512x512 (measured once, kept beside the results)."""
    if path.is_file():
        return EvaluationCosts(**json.loads(path.read_text()))
    with torch.device("meta"):
        costs = measure_costs(sd15_pipeline(), 64, 64)
    path.write_text(json.dumps(asdict(costs), indent=2))
    return costs


def run_variant(pipe, scheduler_config, spec, recommended, pairs, noise_seeds, frames, costs, quality_frames) -> dict:
    """Frames, scores and counted cost of one variant over pairs x noise seeds."""
    sampling = resolve_variant(spec, recommended, batch_size=frames)
    sample = sampler_for(pipe, sampling, scheduler_config)
    counter = NetworkEvaluations(pipe)
    scores, to_quality, videos = [], [], {}
    started = time.perf_counter()
    for noise_seed in noise_seeds:
        settings = EvaluationSettings(size=64, num_frames=frames, steps=sampling.steps, guidance=sampling.guidance, seed=noise_seed)
        for pair_seed in pairs:
            pair = sample_pair(pair_seed, settings.size, settings.num_frames)
            generated = generate_for_pair(sample, pair, settings)
            scores.append(score_video(generated, np.stack(pair.target_frames), person_masks(pair)))
            key = f"{noise_seed}_{pair_seed}"
            videos[key] = generated
            if quality_frames is not None:
                to_quality.append(float(np.mean([psnr(g, q) for g, q in zip(generated, quality_frames[key])])))
    counter.remove()
    num_frames = frames * len(pairs) * len(noise_seeds)
    return {
        "spec": spec,
        "settings": describe(sampling),
        "seconds": time.perf_counter() - started,
        "unet_equivalents_per_frame": counter.unet_equivalents(costs) / num_frames,
        "counts_per_frame": {"/".join(kind): count / num_frames for kind, count in sorted(counter.counts.items())},
        "scores": [score.as_dict() for score in scores],
        "psnr_to_quality": to_quality,
        "videos": videos,
    }


def table(results: list[dict]) -> str:
    """One row per variant: cost against the first, scores (mean ± sd over videos), paired person difference."""
    quality = results[0]
    summaries = [ScoreSummary.of([VideoScores(**score) for score in result["scores"]]) for result in results]
    lines = [
        "| variant | settings | UNet-eq. per frame | vs quality | PSNR | person PSNR | SSIM | temporal error | flicker excess | person PSNR − quality (videos better) | PSNR to quality's frames |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result, summary in zip(results, summaries):
        mean, spread = summary.mean, summary.spread
        difference = paired_difference(summary, summaries[0], "person_psnr")
        to_quality = np.array(result["psnr_to_quality"]) if result["psnr_to_quality"] else None
        lines.append(
            f"| {result['spec']} | {result['settings']} | {result['unet_equivalents_per_frame']:.1f} "
            f"| {result['unet_equivalents_per_frame'] / quality['unet_equivalents_per_frame']:.2f}x "
            f"| {mean.psnr:.2f} ± {spread.psnr:.2f} | {mean.person_psnr:.2f} ± {spread.person_psnr:.2f} "
            f"| {mean.ssim:.3f} ± {spread.ssim:.3f} | {mean.temporal_error:.4f} ± {spread.temporal_error:.4f} | {mean.flicker_excess:+.4f} "
            f"| {difference.mean:+.2f} ± {difference.spread:.2f} ({difference.wins}/{difference.videos}) "
            + (f"| {to_quality.mean():.1f} ± {to_quality.std():.1f} |" if to_quality is not None and np.isfinite(to_quality).all() else "| - |")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="Results path without suffix (OUT.json, OUT.md).")
    parser.add_argument("--model", type=Path, default=DEMO_MODEL_DIR)
    parser.add_argument("--pairs", choices=sorted(PAIRS), default="heldout")
    parser.add_argument("--noise-seeds", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--variants", nargs="+", default=["quality", "preset=balanced", "preset=fast"], help="The first is the reference.")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    diffusers_logging.disable_progress_bar()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    costs = sd15_costs(args.out.parent / "sd15_costs.json")
    recommended = RecommendedSettings.read(args.model)
    pipe = load_pipeline(args.model, torch.device("cpu"), torch.float32)
    scheduler_config = pipe.scheduler.config  # the model's own, whatever a variant swaps in
    results_path, videos_path = args.out.with_suffix(".json"), args.out.with_suffix(".npz")
    done = {result["spec"]: result for result in json.loads(results_path.read_text())} if results_path.is_file() else {}
    videos = dict(np.load(videos_path)) if videos_path.is_file() else {}
    results = []
    for spec in args.variants:
        if spec not in done:
            quality_frames = None if not results else {key.split(":", 1)[1]: value for key, value in videos.items() if key.startswith(results[0]["spec"] + ":")}
            done[spec] = run_variant(pipe, scheduler_config, spec, recommended, PAIRS[args.pairs], range(args.noise_seeds), args.frames, costs, quality_frames)
            videos.update({f"{spec}:{key}": value for key, value in done[spec].pop("videos").items()})
            np.savez_compressed(videos_path, **videos)
            results_path.write_text(json.dumps(list(done.values()), indent=1))
            print(f"{spec}: {done[spec]['settings']}, {done[spec]['seconds']:.0f} s", flush=True)
        results.append(done[spec])
    text = table(results) + f"\n\n{args.pairs} pairs x {args.noise_seeds} noise seeds x {args.frames} frames; costs at SD 1.5 size, 512x512\n"
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
