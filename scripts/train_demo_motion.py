"""Train the demo model's motion module: ``magicpose train --stage motion`` on synthetic videos, as a user would.

1. draws synthetic videos long enough for the clips (``magicpose_cli.synthetic.write_dataset``;
   evaluation people come from another random stream, so none of them is in this data);
2. runs ``magicpose train --stage motion --model magicpose_cli/demo_model`` from scratch (zero
   output projections: the module starts as no module at all) on clips of consecutive frames,
   checkpointing every ``--checkpoint-every`` steps; run the same command again after an
   interruption and it resumes exactly (``--resume``);

``benchmarks/eval_motion.py --motion-module WORK/motion-shared/motion_module`` scores the demo model
with and without it on held-out pairs. The module trained so (600 steps) did not help and is not
shipped (docs/motion.md has the numbers). Usage::

    nice -n 10 python scripts/train_demo_motion.py --work-dir /tmp/demo_motion
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from magicpose_cli.model_store import DEMO_MODEL_DIR
from magicpose_cli.synthetic import write_dataset
from magicpose_cli.training.checkpoints import completed_checkpoints


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True, help="Data and the training run.")
    parser.add_argument("--videos", type=int, default=300, help="Synthetic training videos.")
    parser.add_argument("--frames", type=int, default=24, help="Frames per training video.")
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--clip-frames", type=int, default=16)
    parser.add_argument("--clip-stride", type=int, default=1, help="1: consecutive frames, as the demo and the evaluation play them.")
    parser.add_argument("--clip-noise", default="shared", help="shared (as the demo samples) or per-frame (as AnimateDiff trains).")
    parser.add_argument("--steps", type=int, default=600, help="600: 24 min on 2 shared CPU cores, one thread.")
    parser.add_argument("--batch", type=int, default=2, help="Clips per step.")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def train_motion(data: Path, run_dir: Path, args: argparse.Namespace) -> None:
    """The motion stage through the real command line, resuming a run that has checkpoints."""
    resume = bool(completed_checkpoints(run_dir))
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
    command = [
        sys.executable, "-m", "magicpose_cli", "train", "--data", str(data), "--stage", "motion", "--model", str(DEMO_MODEL_DIR),
        "-o", str(run_dir), "--resolution", "64", "--clip-frames", str(args.clip_frames), "--clip-stride", str(args.clip_stride), "--clip-noise", args.clip_noise,
        "--batch-size", str(args.batch), "--max-steps", str(args.steps), "--learning-rate", str(args.lr),
        "--warmup-steps", str(args.warmup), "--num-workers", "0", "--checkpoint-every", str(args.checkpoint_every),
        "--checkpoints-total-limit", "2", "--sample-every", "500", "--sample-steps", "20", "--seed", "0",
    ] + (["--resume"] if resume else [])  # fmt: skip
    print(" ".join(command[1:]), flush=True)
    threads = str(args.threads)
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})


def main() -> None:
    args = parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    data = args.work_dir / "data"
    started = time.perf_counter()
    if not (data / f"person_{args.videos - 1:05d}" / "meta.json").is_file():
        write_dataset(data, args.videos, args.frames, size=64, seed=args.data_seed)
    print(f"data ready after {time.perf_counter() - started:.0f} s", flush=True)
    run_dir = args.work_dir / f"motion-{args.clip_noise}"
    train_motion(data, run_dir, args)
    print(f"trained after {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
