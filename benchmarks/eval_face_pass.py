"""The face pass on the demo model: face-region and whole-frame scores with and without it (docs/retarget.md's table).

Each held-out synthetic pair (people never in the demo model's training data) runs through
`magicpose retarget` itself: the reference drawn at ``--reference-size`` (so its face crop has
detail), the driving poses on A's proportions, a 64x64 canvas, the demo model's recommended sampling.
The main frames are made once per pair (the frame cache), then the face pass at each strength. Scores
against the ground truth (A performing B's motion, drawn at 64x64): PSNR and SSIM inside the face
box (the same box for every variant: the ground truth's head with the default margin) and PSNR
over the whole frame; mean ± standard deviation over the pairs (each pair's mean over its frames),
and the mean of the per-pair differences from the main pass alone (paired, so the pairs' shared
difficulty cancels).

    python benchmarks/eval_face_pass.py --work-dir /tmp/face_eval [--pairs 5] [--frames 4] [--strengths 0.3 0.5 0.7]

Resumable: the frame cache under the work folder keeps every finished frame.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from magicpose_cli.evaluation import EVALUATION_SEEDS
from magicpose_cli.metrics.images import psnr, ssim
from magicpose_cli.model_store import DEMO_MODEL_DIR
from magicpose_cli.retarget import RetargetOptions, retarget
from magicpose_cli.retarget.face_boxes import cut_square, face_boxes
from magicpose_cli.retarget.face_pass import DEFAULT_FACE_MARGIN
from magicpose_cli.synthetic import sample_pair

CANVAS = 64


def write_inputs(folder: Path, seed: int, reference_size: int, frames: int) -> None:
    """The reference photo (and its keypoints) at ``reference_size`` and the driving OpenPose JSON."""
    pair = sample_pair(seed, reference_size, frames)
    shutil.rmtree(folder / "driving", ignore_errors=True)  # an earlier run's longer clip
    (folder / "driving").mkdir(parents=True)
    for index, pose in enumerate(pair.target_poses):
        pose.save(folder / "driving" / f"{index:05d}.json")
    Image.fromarray(pair.reference_frame).save(folder / "reference.png")
    pair.reference_pose.save(folder / "reference.json")


def run_variant(folder: Path, cache_root: Path, strength: float | None, motion_module: Path | None) -> list[np.ndarray]:
    """The frames of one variant (``strength`` None: the main pass alone), through retarget's --frames-dir."""
    name = "main" if strength is None else f"face-{strength:g}"
    frames_dir = folder / name
    options = RetargetOptions(
        model=DEMO_MODEL_DIR, width=CANVAS, height=CANVAS, align=False, overwrite=True, cache_root=cache_root, frames_dir=frames_dir,
        face_pass=strength is not None, face_strength=strength, reference_pose=folder / "reference.json",
        motion_module=motion_module, no_motion=motion_module is None,
    )  # fmt: skip
    retarget(folder / "reference.png", folder / "driving", folder / f"{name}.mp4", options)
    return [np.asarray(Image.open(path).convert("RGB")) for path in sorted(frames_dir.glob("*.png"))]


def scores(frames: list[np.ndarray], seed: int, count: int) -> dict[str, float]:
    """Face-box PSNR/SSIM and whole-frame PSNR against the ground truth, each a mean over the frames."""
    truth = sample_pair(seed, CANVAS, count)
    boxes = face_boxes(truth.target_poses, DEFAULT_FACE_MARGIN)
    per_frame = []
    for index, (frame, target) in enumerate(zip(frames, truth.target_frames, strict=True)):
        left, top, side = boxes.box(index)
        face, face_truth = (cut_square(image, left, top, side, side) for image in (frame, target))
        per_frame.append({"face_psnr": psnr(face, face_truth), "face_ssim": ssim(face, face_truth), "frame_psnr": psnr(frame, target)})
    return {name: float(np.mean([row[name] for row in per_frame])) for name in per_frame[0]}


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown: mean ± std over pairs per variant, and the paired difference from the main pass."""
    metrics = ("face_psnr", "face_ssim", "frame_psnr")
    lines = ["| variant | face PSNR (dB) | face SSIM | frame PSNR (dB) | face PSNR vs main (paired) | frame PSNR vs main (paired) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    seeds = sorted(results["main"])
    for variant, by_seed in results.items():
        if sorted(by_seed) != seeds:
            continue
        cells = [f"{np.mean([by_seed[s][m] for s in seeds]):.2f} ± {np.std([by_seed[s][m] for s in seeds]):.2f}" for m in metrics]
        for metric in ("face_psnr", "frame_psnr"):
            gains = [by_seed[s][metric] - results["main"][s][metric] for s in seeds]
            cells.append(f"{np.mean(gains):+.2f} ± {np.std(gains):.2f}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--reference-size", type=int, default=256)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--motion-module", type=Path, help="A motion module folder to run with (default: none).")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for seed in EVALUATION_SEEDS[: args.pairs]:
        folder = args.work_dir / f"pair-{seed}"
        write_inputs(folder, seed, args.reference_size, args.frames)
        for strength in [None, *args.strengths]:
            name = "main pass alone" if strength is None else f"face pass, strength {strength:g}"
            frames = run_variant(folder, args.work_dir / "cache", strength, args.motion_module)
            results.setdefault("main" if strength is None else name, {})[seed] = scores(frames, seed, args.frames)
            (args.work_dir / "results.json").write_text(json.dumps(results, indent=1))
            print(table(results), flush=True)


if __name__ == "__main__":
    main()
