"""`magicpose demo` on a CPU that other programs use: torch's thread settings against each other.

Each run is a fresh `python -m magicpose_cli demo` (thread settings are read when torch loads), in a
new cache folder, timed whole (wall seconds, Python's start-up and imports included) and by the
demo's own summary (the run after the imports).
The variants, alternated within each round so that whatever else the machine does falls on all alike:

- spin: the physical cores' threads, waiting at each barrier as libgomp does by default (spinning
  for about 3 ms before sleeping; GOMP_SPINCOUNT=300000 states that default explicitly);
- passive: the same threads, sleeping at once at a barrier (OMP_WAIT_POLICY=PASSIVE): same pixels;
- one thread: OMP_NUM_THREADS=1 (other pixels);
- magicpose: no variable set, whatever magicpose_cli.threads chooses.

"alone" runs the demo beside whatever the machine runs anyway; "busy" adds one busy-loop process per
logical core at the benchmark's own niceness (run the benchmark under `nice -n 19` on a shared machine).

    nice -n 19 python benchmarks/bench_busy_cpu.py [--rounds 2] [--frames 2] [--timeout 300] [--variants spin passive]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
VARIANTS = {
    "spin": {"GOMP_SPINCOUNT": "300000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "one thread": {"OMP_NUM_THREADS": "1"},
    "magicpose": {},
}
SECONDS = re.compile(r"\((\d+) frames, ([\d.]+) s;")


def spin_forever() -> None:
    while True:
        pass


def run_demo(variables: dict[str, str], frames: int, timeout: float) -> tuple[float, float | None]:
    """Wall seconds of the whole process (at least ``timeout``) and the demo's own seconds (None when stopped)."""
    environment = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    with tempfile.TemporaryDirectory(prefix="bench-busy-") as folder:
        command = [sys.executable, "-m", "magicpose_cli", "demo", "-o", f"{folder}/demo.mp4", "--cache-dir", f"{folder}/cache", "--frames", str(frames)]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, env={**environment, **variables, "NO_COLOR": "1", "COLUMNS": "200"}, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return timeout, None
        wall = time.perf_counter() - started
    found = SECONDS.search(done.stdout + done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"the demo failed: {done.stdout[-400:]} {done.stderr[-400:]}")
    return wall, float(found.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--frames", type=int, default=2, help="frames of the demo (its default is 24)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds after which a run is stopped and counted as at least that")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stopped: the busy loops end too (finally below)
    print(f"{psutil.cpu_count(logical=False)} physical cores, {os.cpu_count()} logical; load average {os.getloadavg()}", flush=True)
    seconds: dict[tuple[str, str], list[float]] = {}
    for round_index in range(args.rounds):
        for load in ("alone", "busy"):
            spinners = [multiprocessing.Process(target=spin_forever, daemon=True) for _ in range(os.cpu_count() or 1) if load == "busy"]
            for spinner in spinners:
                spinner.start()
            shift = round_index % len(args.variants)  # each variant also runs first in some round
            try:
                for name in args.variants[shift:] + args.variants[:shift]:
                    started = time.strftime("%H:%M:%S")
                    wall, own = run_demo(VARIANTS[name], args.frames, args.timeout)
                    seconds.setdefault((load, name), []).append(wall)
                    shown = f">{wall:.0f} s (stopped)" if own is None else f"{wall:.1f} s, the demo's own {own:.1f} s"
                    print(f"round {round_index + 1} {started} {load:5} {name:10} {shown} (load average {os.getloadavg()[0]:.1f})", flush=True)
            finally:
                for spinner in spinners:
                    spinner.terminate()
    print("\nmedian wall seconds of the process (a stopped run counts as --timeout), and against spin in the same load")
    for load in ("alone", "busy"):
        for name in args.variants:
            median = statistics.median(seconds[(load, name)])
            ratio = median / statistics.median(seconds[(load, "spin")]) if "spin" in args.variants else float("nan")
            print(f"{load:5} {name:10} {median:7.1f} s  x{ratio:.2f}")


if __name__ == "__main__":
    main()
