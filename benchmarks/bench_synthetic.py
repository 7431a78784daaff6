"""How fast the synthetic-people generator draws frames and writes datasets (frames per second).

Run: python benchmarks/bench_synthetic.py [--size 128] [--frames 600]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from magicpose_cli import synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=600)
    args = parser.parse_args()
    frames_per_video = 30
    videos = max(1, args.frames // frames_per_video)

    rng = np.random.default_rng(0)
    people = [(synthetic.sample_identity(rng), synthetic.sample_motion(rng, frames_per_video)) for _ in range(videos)]
    start = time.perf_counter()
    poses = [synthetic.motion_poses(identity, motion, args.size, args.size) for identity, motion in people]
    kinematics = time.perf_counter() - start
    start = time.perf_counter()
    for (identity, _), video in zip(people, poses):
        for pose in video:
            synthetic.draw_person(identity, pose.people[0], args.size, args.size)
    drawing = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        synthetic.write_dataset(folder, videos, frames_per_video, args.size, seed=0, progress=False)
        writing = time.perf_counter() - start
    total = videos * frames_per_video
    print(f"{args.size}x{args.size}, {total} frames")
    print(f"  keypoints (forward kinematics): {total / kinematics:8.0f} frames/s")
    print(f"  drawing:                        {total / drawing:8.0f} frames/s")
    print(f"  write_dataset (PNG + JSON):     {total / writing:8.0f} frames/s")


if __name__ == "__main__":
    main()
