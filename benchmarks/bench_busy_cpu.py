"""`magicpose demo` on a CPU that other programs use: how torch's threads wait, against each other.

OpenMP reads how its threads wait when torch loads, so each waiting policy gets its own worker
process, which imports once (on a busy machine the imports take minutes, the same for every variant)
and then runs the demo (`magicpose_cli.demo.run_demo`, a new cache folder each time) whenever it is
asked, timing the run alone. The variants, alternated within each round (the order turning from
round to round) so that whatever else the machine does falls on all alike:

- spin: the physical cores' threads, waiting at each barrier as libgomp does by default (spinning
  for about 3 ms before sleeping; GOMP_SPINCOUNT=300000 states that default explicitly);
- passive: the same threads, sleeping at once at a barrier (OMP_WAIT_POLICY=PASSIVE, what
  magicpose_cli/threads.py sets): the same pixels;
- one thread: torch.set_num_threads(1) in the passive worker (other pixels).

``--busy`` adds one busy-loop process per logical core at the benchmark's own niceness; without it
the demo runs beside whatever the machine runs anyway (run under `nice -n 19` on a shared machine).

    nice -n 19 python benchmarks/bench_busy_cpu.py [--rounds 2] [--frames 2] [--busy]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
WORKERS = {"spin": {"GOMP_SPINCOUNT": "300000"}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}
VARIANTS = {"spin": ("spin", 0), "passive": ("passive", 0), "one thread": ("passive", 1)}  # worker, threads (0: torch's default)


def spin_forever() -> None:
    while True:
        pass


def serve(frames: int) -> None:
    """Worker: for each line "THREADS" on stdin, the seconds of one demo run with that many threads (0: the default)."""
    import torch

    from magicpose_cli.demo import run_demo

    results = os.fdopen(os.dup(1), "w")  # the answers; anything else written to stdout goes to stderr
    os.dup2(2, 1)
    default_threads = torch.get_num_threads()
    print("ready", file=results, flush=True)
    for line in sys.stdin:
        torch.set_num_threads(int(line) or default_threads)
        with tempfile.TemporaryDirectory(prefix="bench-busy-") as folder:
            started = time.perf_counter()
            run_demo(Path(folder) / "demo.mp4", frames, cache_root=Path(folder) / "cache")
            print(f"{time.perf_counter() - started:.2f}", file=results, flush=True)


def start_worker(name: str, frames: int) -> subprocess.Popen:
    environment = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    command = [sys.executable, __file__, "--serve", "--frames", str(frames)]
    return subprocess.Popen(command, env={**environment, **WORKERS[name]}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--frames", type=int, default=2, help="frames of the demo (its default is 24)")
    parser.add_argument("--busy", action="store_true", help="add a busy loop per logical core")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.frames)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stopped: the workers and busy loops end too (finally below)
    print(f"{psutil.cpu_count(logical=False)} physical cores, {os.cpu_count()} logical; load average {os.getloadavg()}", flush=True)
    spinners = [multiprocessing.Process(target=spin_forever, daemon=True) for _ in range(os.cpu_count() or 1) if args.busy]
    workers = {name: start_worker(name, args.frames) for name in WORKERS}
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        for spinner in spinners:
            spinner.start()
        for worker in workers.values():
            assert worker.stdout.readline().strip() == "ready"
        print(f"workers ready at {time.strftime('%H:%M:%S')}", flush=True)
        names = list(VARIANTS)
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                worker_name, threads = VARIANTS[name]
                worker = workers[worker_name]
                worker.stdin.write(f"{threads}\n")
                worker.stdin.flush()
                seconds[name].append(float(worker.stdout.readline()))
                print(f"round {round_index + 1} {time.strftime('%H:%M:%S')} {name:10} {seconds[name][-1]:7.1f} s (load average {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        for process in [*workers.values(), *spinners]:
            process.terminate()
    print("\nmedian seconds of a demo run, and against spin")
    for name, values in seconds.items():
        print(f"{name:10} {statistics.median(values):7.1f} s  x{statistics.median(values) / statistics.median(seconds['spin']):.2f}")


if __name__ == "__main__":
    main()
