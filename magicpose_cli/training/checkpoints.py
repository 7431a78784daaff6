"""Training checkpoints that resume exactly: trained weights, optimiser, LR schedule, EMA, RNG and step.

A checkpoint is a folder ``RUN_DIR/checkpoints/step-NNNNNN`` holding ``<component>.safetensors`` per
trained component, ``training_state.pt`` (optimiser, scheduler, EMA, grad scaler, step; tensors and
plain values only, so it loads with ``weights_only=True``) and ``rng-<rank>.pt`` per process.
The folder is written under a temporary name and renamed when complete, so an interrupted save
never looks like a checkpoint.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from magicpose_cli.errors import MagicPoseError

CHECKPOINTS_DIR = "checkpoints"
TRAINING_STATE_FILE = "training_state.pt"


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / f"step-{step:06d}"


def completed_checkpoints(run_dir: Path) -> list[Path]:
    """The completed checkpoints in ``run_dir``, oldest step first."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    steps = {int(p.name.removeprefix("step-")): p for p in folder.glob("step-*") if p.name.removeprefix("step-").isdigit()}
    return [steps[step] for step in sorted(steps) if steps[step].is_dir() and (steps[step] / TRAINING_STATE_FILE).is_file()]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The completed checkpoint with the highest step in ``run_dir``, if any."""
    found = completed_checkpoints(run_dir)
    return found[-1] if found else None


def prune_checkpoints(run_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` completed checkpoints (``keep`` 0: keep all); returns those deleted.

    Called after a new checkpoint is completely written, so a resumable one always remains.
    """
    found = completed_checkpoints(run_dir)
    doomed = found[:-keep] if keep > 0 else []
    for folder in doomed:
        shutil.rmtree(folder)
    return doomed


def rng_state() -> dict:
    """The global random states of Python, NumPy and torch (CPU and CUDA) as tensors and plain values."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position,
                  "has_gauss": has_gauss, "cached_gauss": cached_gauss},
        "torch": torch.get_rng_state(),
    }  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state(
        (numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"], numpy["cached_gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_trained_weights(folder: Path, modules: dict[str, nn.Module]) -> None:
    for name, module in modules.items():
        state = {key: value.detach().contiguous().cpu() for key, value in module.state_dict().items()}
        save_file(state, str(folder / f"{name}.safetensors"))


def load_trained_weights(folder: Path, modules: dict[str, nn.Module]) -> None:
    for name, module in modules.items():
        path = folder / f"{name}.safetensors"
        if not path.is_file():
            raise MagicPoseError(f"checkpoint {folder} has no weights for {name} ({path.name} missing)")
        module.load_state_dict(load_file(str(path)), strict=True)


def save_checkpoint(
    folder: Path,
    modules: dict[str, nn.Module],
    training_state: dict,
    rank: int,
    is_main: bool,
    wait_for_everyone,
) -> None:
    """Write a checkpoint: the main process the weights and training state, every process its RNG state.

    ``wait_for_everyone`` is the accelerator's barrier, so that the folder is renamed only once all
    processes have written into it.
    """
    partial = folder.with_name(f".{folder.name}.partial")
    if is_main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    wait_for_everyone()
    torch.save(rng_state(), partial / f"rng-{rank}.pt")
    if is_main:
        save_trained_weights(partial, modules)
        torch.save(training_state, partial / TRAINING_STATE_FILE)
    wait_for_everyone()
    if is_main:
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    wait_for_everyone()


def load_checkpoint(folder: Path, modules: dict[str, nn.Module], rank: int) -> dict:
    """Restore the trained weights and this process's RNG state; return the training state."""
    load_trained_weights(folder, modules)
    training_state = torch.load(folder / TRAINING_STATE_FILE, map_location="cpu", weights_only=True)
    rng_file = folder / f"rng-{rank}.pt"
    if rng_file.is_file():  # resuming on more processes than wrote the checkpoint: new ones keep their seed
        set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=True))
    return training_state
