"""torch's CPU threads: how many compute and how they wait, chosen in this one place for every command.

How many: torch's own default, one thread per physical core, or ``OMP_NUM_THREADS`` (or a
``torch.set_num_threads``) where the user chose. CPU results depend on the count (oneDNN and MKL
split their sums between threads), so it never depends on how busy the machine is; the processes of
a launch compute with the count one process alone would (:func:`use_threads_of_one_process`).

How they wait: torch's OpenMP threads (GNU libgomp on Linux) spin for about 3 ms at every barrier
before they sleep. On a CPU that another program also uses, one thread of a parallel region is often
waiting for a core while the others spin, taking the cores from it and from the other program: a
demo run then took 16 to 79 times as long. Threads that sleep at once (``OMP_WAIT_POLICY=PASSIVE``) leave the
cores to whoever computes; the thread count, and so every pixel, stays the same
(benchmarks/bench_busy_cpu.py; docs/platforms.md has the numbers).
"""

from __future__ import annotations

import os

WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
"""Any of these set means the user chose how OpenMP threads wait (libgomp's two, LLVM/Intel's one)."""


def wait_without_spinning() -> None:
    """Let torch's OpenMP threads sleep at a barrier instead of spinning, unless the user chose.

    OpenMP reads the variable once, when torch loads: this runs when ``magicpose_cli`` is imported,
    so it takes effect for every command, and for Python code that imports magicpose_cli before torch.
    """
    if not any(name in os.environ for name in WAIT_VARIABLES):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def threads_of_one_process() -> int:
    """The intra-op threads a process started alone computes with (torch's default): its physical cores."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def use_threads_of_one_process() -> None:
    """In a launch's CPU processes, compute with the threads one process alone would use.

    Launchers give each of N processes their own ``OMP_NUM_THREADS`` (1, or the cores divided by N):
    without this a frame made by two processes would not be the frame made by one. The CPU's cores
    are then shared, so N processes on one CPU are for checking a launch, not for speed.
    """
    import torch

    torch.set_num_threads(threads_of_one_process())
