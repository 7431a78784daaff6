"""Pose extraction speed on CPU: frames per second of `extract_poses` on a video made from a real photo.

    .venv/bin/python benchmarks/bench_extract.py [--frames 30] [--size 512] [--detector mediapipe]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from skimage import data, transform

from magicpose_cli.pose.extract import PoseSettings, extract_poses


def make_video(path: Path, frames: int, size: int) -> Path:
    person = (transform.resize(data.astronaut(), (size, size), anti_aliasing=True) * 255).astype(np.uint8)
    width = size + size // 4
    images = []
    for t in range(frames):
        canvas = np.zeros((size, width, 3), dtype=np.uint8)
        offset = int((size // 4) * (0.5 + 0.5 * np.sin(2 * np.pi * t / frames)))
        canvas[:, offset : offset + size] = person
        images.append(canvas)
    imageio.mimwrite(path, images, fps=30, codec="libx264", quality=8, macro_block_size=16)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--size", type=int, default=512, help="frame height in pixels")
    parser.add_argument("--detector", default="mediapipe")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        video = make_video(Path(work) / "bench.mp4", args.frames, args.size)
        started = time.perf_counter()
        result = extract_poses(video, Path(work) / "poses", settings=PoseSettings(detector=args.detector), force=True)
        seconds = time.perf_counter() - started
        cached_started = time.perf_counter()
        extract_poses(video, Path(work) / "poses", settings=PoseSettings(detector=args.detector))
        cached_seconds = time.perf_counter() - cached_started
    print(
        f"{args.detector}: {len(result.poses)} frames of {args.size + args.size // 4}x{args.size} in {seconds:.2f} s "
        f"= {len(result.poses) / seconds:.1f} frames/s end to end (detect, fill, smooth, render, write); "
        f"{result.detected} detected; cached rerun {cached_seconds:.2f} s"
    )


if __name__ == "__main__":
    main()
