"""How long the command line takes to answer help and input mistakes, against `python -c "import typer, rich"`.

Each command line runs N times as a fresh process (interleaved, so a busy machine slows all alike);
the table gives the median wall time and its ratio to the typer+rich baseline, a program that only
imports the two libraries every command line uses. README's figure comes from here.

    python benchmarks/bench_startup.py            # 7 runs of each
    python benchmarks/bench_startup.py --runs 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND_LINES = {
    "baseline: import typer, rich": ["-c", "import typer, rich"],
    "magicpose --help": ["-m", "magicpose_cli", "--help"],
    "magicpose --version": ["-m", "magicpose_cli", "--version"],
    "magicpose retarget --help": ["-m", "magicpose_cli", "retarget", "--help"],
    "retarget, missing reference": ["-m", "magicpose_cli", "retarget", "absent.png", "absent.mp4", "-o", "out.mp4"],
    "evaluate, no arguments": ["-m", "magicpose_cli", "evaluate"],
}


def seconds(arguments: list[str], folder: str) -> float:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    started = time.perf_counter()
    subprocess.run([sys.executable, *arguments], cwd=folder, env=environment, capture_output=True, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each command line")
    runs = parser.parse_args().runs
    times: dict[str, list[float]] = {name: [] for name in COMMAND_LINES}
    with tempfile.TemporaryDirectory() as folder:
        for name, arguments in COMMAND_LINES.items():  # one warm-up each: the first run fills the OS's file cache
            seconds(arguments, folder)
        for _ in range(runs):
            for name, arguments in COMMAND_LINES.items():
                times[name].append(seconds(arguments, folder))
    baseline = statistics.median(times["baseline: import typer, rich"])
    print(f"{'command line':<32} {'median':>8} {'x baseline':>11}   ({runs} runs each, Python {sys.version.split()[0]})")
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"{name:<32} {median:>7.2f}s {median / baseline:>10.1f}x")


if __name__ == "__main__":
    main()
