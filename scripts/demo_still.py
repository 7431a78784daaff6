"""README's still of `magicpose demo`: a few frames of its reference | pose | result grid, one above the other.

    python scripts/demo_still.py [--frames 0 8 16] [-o demo_still.png]

Runs the demo exactly as `magicpose demo` does (bundled model, its recommended settings) into a
temporary folder and stacks the chosen frames of the video it writes.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

from magicpose_cli.demo import run_demo

REPO_ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[0, 8, 16], help="Frame numbers of the demo video to show.")
    parser.add_argument("-o", "--output", type=Path, default=REPO_ROOT / "demo_still.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="magicpose-still-") as temporary:
        video = Path(temporary) / "demo.mp4"
        run_demo(video, num_frames=max(args.frames) + 1, cache_root=Path(temporary) / "cache")
        frames = list(iio.imiter(video))
    still = np.concatenate([frames[index] for index in args.frames], axis=0)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(still).save(args.output, optimize=True)
    print(f"{args.output}: {still.shape[1]}x{still.shape[0]}, frames {args.frames}")


if __name__ == "__main__":
    main()
