"""Where a whole-video denoising stands between two steps, so it can stop and go on exactly.

With a motion module every frame depends on its neighbours at every step, so a video cannot be
finished batch by batch; what resumes it is the latents of the whole video after some step and
the scheduler's memory of earlier steps (a multistep solver keeps its last predictions). Both are
tensors and plain values, so a state saves with ``torch.save`` and loads with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_PLAIN = (bool, int, float, str, type(None))


@dataclass
class DenoisingState:
    """The video's latents after ``steps_done`` of ``total_steps`` steps, and the scheduler's state then."""

    steps_done: int
    total_steps: int
    latents: torch.Tensor
    scheduler: dict

    @property
    def finished(self) -> bool:
        return self.steps_done >= self.total_steps

    def as_dict(self) -> dict:
        """The state on the CPU, for ``torch.save``."""
        return {
            "steps_done": self.steps_done, "total_steps": self.total_steps,
            "latents": self.latents.detach().cpu(), "scheduler": _on_cpu(self.scheduler),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, saved: dict) -> DenoisingState:
        return cls(int(saved["steps_done"]), int(saved["total_steps"]), saved["latents"], dict(saved["scheduler"]))


def _kept(value):
    """A scheduler attribute as tensors and plain values (numpy arrays become tagged tensors); lists
    are copied, tensors referenced (a scheduler replaces its tensors, it does not write into them)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return {"numpy": torch.from_numpy(np.array(value))}
    if isinstance(value, (list, tuple)):
        return [_kept(item) for item in value]
    if isinstance(value, _PLAIN):
        return value
    raise TypeError(f"cannot keep a scheduler attribute of type {type(value).__name__}")


def _on_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {name: _on_cpu(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_on_cpu(item) for item in value]
    return value


def _restored(value, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict) and set(value) == {"numpy"}:
        return value["numpy"].numpy()
    if isinstance(value, list):
        return [_restored(item, device) for item in value]
    return value


def scheduler_state(scheduler) -> dict:
    """Every attribute of ``scheduler`` but its configuration: what its next ``step`` reads."""
    return {name: _kept(value) for name, value in vars(scheduler).items() if name != "_internal_dict"}


def restore_scheduler_state(scheduler, state: dict, device: torch.device) -> None:
    """Put a state from :func:`scheduler_state` back (after ``set_timesteps``), tensors on ``device``."""
    for name, value in state.items():
        current = getattr(scheduler, name, None)
        target = current.device if isinstance(current, torch.Tensor) else device
        setattr(scheduler, name, _restored(value, target))
