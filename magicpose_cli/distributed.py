"""The processes a command runs as: one, or N started by ``accelerate launch`` or ``torchrun``.

:func:`join_processes` joins the launch's process group through accelerate (gloo on the CPU,
NCCL on GPUs) and refuses, in one line, a launch whose processes would not share the work. The
:class:`Processes` it returns deals out work (``share``), lets the main process go first
(``main_first``: downloads, conversions, pose extraction fill the caches once), waits for all
(``wait``) and moves small results between processes (``gather``, ``broadcast``) and tensors
made by shares back into one list (``gather_shares``: the context windows of a denoising step).

A failure on one process must not leave the others waiting in a collective that will never
come: ``main_first``, ``everywhere``, ``on_main`` and ``gather_shares`` end with every process learning of any
failure, and it is raised on all of them (:class:`FailedElsewhere` where it happened on another).
A command keeps to this rule: its work either fails alike on every process (checking the
options) or runs inside one of these, so the main process always knows why a launch failed
and is the one that says it.
With one process every method is a plain call, and nothing here imports torch.distributed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from magicpose_cli.errors import MagicPoseError

T = TypeVar("T")

# Where launchers put a process's rank and the number of processes (torchrun and accelerate; MPI).
RANK_VARIABLES = ("RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMI_RANK")
COUNT_VARIABLES = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMI_SIZE")
LAUNCH_COMMANDS = (
    "accelerate launch --multi_gpu --num_processes N -m magicpose_cli ... (--multi_gpu also on a machine "
    "without GPUs) or torchrun --standalone --nproc_per_node N -m magicpose_cli ..."
)
WAIT_LIMIT = timedelta(hours=6)
"""How long a process waits in a collective: the main process may be downloading 9 GB or extracting
poses meanwhile. A process that dies takes the launch down with it (torchrun stops the others), so
the limit only ends a process that hangs."""


def _environment_int(names: Sequence[str], default: int) -> int:
    for name in names:
        if os.environ.get(name, "").strip().isdigit():
            return int(os.environ[name])
    return default


def launched_count() -> int:
    """How many processes the launcher started (1 without a launcher)."""
    return _environment_int(COUNT_VARIABLES, 1)


def launched_as_main() -> bool:
    """Whether this is the launch's main process (or the only one), from the launcher's environment."""
    return _environment_int(RANK_VARIABLES, 0) == 0


class FailedElsewhere(MagicPoseError):
    """The shared work failed on another process; raised on every process but that one."""


@dataclass(frozen=True)
class Processes:
    """This process's place in the launch: ``rank`` of ``count``, ``local_rank`` on its machine."""

    rank: int = 0
    count: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's part of ``items``: every ``count``-th from ``rank`` on, so the parts differ in
        length by one at most wherever the items come from (a resumed run's missing batches too)."""
        return list(items)[self.rank :: self.count]

    def own_device(self, device):
        """The device this process computes on: with several processes, a CUDA device is its own GPU."""
        import torch

        if self.count > 1 and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def gather(self, value: T) -> list[T]:
        """Every process's ``value`` (picklable; tensors on the CPU), in rank order, on every process."""
        if self.count == 1:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    def broadcast(self, value: T) -> T:
        """The main process's ``value`` (picklable), on every process."""
        if self.count == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    def gather_shares(self, mine: Iterable, total: int, template) -> list:
        """All ``total`` results, in the items' order, on every process, from ``mine``: this process's
        results for its :meth:`share` of the items (made as they are read), tensors of one shape and dtype
        (``template``'s) on its device. The bytes come back as they were made, so what follows computes
        as on one process; a failure while making them on any process is raised on all."""
        if self.count == 1:
            return list(mine)
        import torch
        import torch.distributed as dist

        made, failure = _attempt(lambda: list(mine))
        self._agree(failure)
        slots = -(-total // self.count)  # the longest share
        padding = [torch.zeros_like(template)] * (slots - len(made))
        parts = [torch.empty((slots, *template.shape), dtype=template.dtype, device=template.device) for _ in range(self.count)]
        dist.all_gather(parts, torch.stack([*made, *padding]).contiguous())
        return [parts[index % self.count][index // self.count] for index in range(total)]

    def wait(self, while_waiting: Callable[[], None] | None = None, every: float = 0.5) -> None:
        """Wait until every process gets here, calling ``while_waiting()`` (a progress update) meanwhile."""
        if self.count == 1:
            return
        import torch.distributed as dist

        devices = {"device_ids": [self.local_rank]} if dist.get_backend() == "nccl" else {}
        pending = dist.barrier(async_op=True, **devices)
        while not pending.is_completed():
            if while_waiting is not None:
                while_waiting()
            time.sleep(every)
        pending.wait()

    def everywhere(self, work: Callable[[], T], while_waiting: Callable[[], None] | None = None) -> T:
        """``work()`` on every process, then wait for all (see :meth:`wait`); if it failed on any, every
        process raises (the failure's own error where it happened, :class:`FailedElsewhere` on the others)."""
        if self.count == 1:
            return work()
        result, failure = _attempt(work)
        self.wait(while_waiting)
        self._agree(failure)
        return result

    def main_first(self, work: Callable[[], T]) -> T:
        """``work()`` on the main process, then on the others, which find what it downloaded, converted
        or extracted in the caches; a failure on any process is raised on all (the others skip the
        work once the main process has failed)."""
        if self.count == 1:
            return work()
        result, failure = _attempt(work) if self.is_main else (None, None)
        if self.broadcast(_report(failure)) is None and not self.is_main:
            result, failure = _attempt(work)
        self._agree(failure)
        return result

    def on_main(self, work: Callable[[], T]) -> T | None:
        """``work()`` on the main process alone (None elsewhere); a failure there is raised on every process."""
        if self.count == 1:
            return work()
        result, failure = _attempt(work) if self.is_main else (None, None)
        self._agree(failure)
        return result

    def _agree(self, failure: Exception | None) -> None:
        """Tell every process whether any failed: this one raises its own failure, else the first other's."""
        reports = self.gather(_report(failure))
        if failure is not None:
            raise failure
        for rank, report in enumerate(reports):
            if report is not None:
                raise FailedElsewhere(f"the process of rank {rank} (of {self.count}) failed: {report}")


def _attempt(work: Callable[[], T]) -> tuple[T | None, Exception | None]:
    try:
        return work(), None
    except Exception as error:  # every kind: the others must hear of it, then it is raised here as it was
        return None, error


def one_line(error: Exception) -> str:
    """An error in one line: a user's error as its message says it, anything else with its kind."""
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else ""
    return line if isinstance(error, (MagicPoseError, OSError)) else f"{type(error).__name__}: {line}"


def _report(error: Exception | None) -> str | None:
    """What the other processes hear of this one's work: None, or its failure's line."""
    return None if error is None else one_line(error)


def join_processes(device) -> Processes:
    """The processes of this launch, computing on ``device`` (a torch.device; the CPU, CUDA or MPS).

    One process unless a launcher started several; several join one process group through
    accelerate's ``PartialState`` (``cpu=True`` on the CPU: without it accelerate leaves every
    process alone on a machine without GPUs, and each would do all the work). On the CPU, gloo is
    bound to the loopback interface unless GLOO_SOCKET_IFNAME says otherwise and the processes are
    on one machine.
    """
    count = launched_count()
    if count == 1:
        _refuse_a_lone_process_asked_to_share()
        return Processes()
    local_count = _environment_int(("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"), count)
    _check_devices(device, count, local_count)
    if device.type == "cpu" and local_count == count:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    from accelerate import PartialState

    state = PartialState(cpu=device.type == "cpu", timeout=WAIT_LIMIT)
    if state.num_processes != count:
        raise MagicPoseError(
            f"{count} processes were launched but they did not join one process group, "
            f"so every one would do all the work; launch with {LAUNCH_COMMANDS}"
        )
    return Processes(state.process_index, state.num_processes, state.local_process_index)


def _refuse_a_lone_process_asked_to_share() -> None:
    """accelerate's plain launcher runs one process, even for --num_processes N (it says so by setting
    MASTER_ADDR): on a machine without GPUs, without --multi_gpu."""
    if "ACCELERATE_MIXED_PRECISION" in os.environ and "MASTER_ADDR" in os.environ:
        raise MagicPoseError(
            "accelerate launch started a single process although more were asked for (without GPUs it starts "
            f"several only with --multi_gpu); launch with {LAUNCH_COMMANDS}"
        )


def _check_devices(device, count: int, local_count: int) -> None:
    import torch

    if device.type == "mps":
        raise MagicPoseError(f"{count} processes cannot share one Apple GPU (MPS): run a single process")
    if device.type == "cuda" and local_count > torch.cuda.device_count():
        raise MagicPoseError(
            f"{local_count} processes on this machine but {torch.cuda.device_count()} CUDA GPU(s): launch one process per GPU "
            "(--num_processes / --nproc_per_node)"
        )
