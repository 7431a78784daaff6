"""LCM and TCD sampling with noise that a resumed run draws again exactly.

Both samplers add fresh noise between steps (LCM always, TCD with gamma > 0), drawn by diffusers
from the global random state unless a generator is passed to ``step``. Here each step's noise comes
from a generator seeded by the step's timestep, so a frame batch denoised again (a resumed run,
another process of a launch) gets the same noise, whatever ran before it.
"""

from __future__ import annotations

import torch
from diffusers import LCMScheduler, TCDScheduler


class _TimestepSeededNoise:
    """``step`` draws its added noise from a CPU generator seeded by the timestep (when none is given)."""

    def step(self, model_output, timestep, sample, *args, generator: torch.Generator | None = None, **kwargs):
        if generator is None:
            generator = torch.Generator("cpu").manual_seed(int(timestep))
        return super().step(model_output, timestep, sample, *args, generator=generator, **kwargs)


class SeededLCMScheduler(_TimestepSeededNoise, LCMScheduler):
    """diffusers' LCMScheduler whose between-step noise repeats exactly (see the module)."""


class SeededTCDScheduler(_TimestepSeededNoise, TCDScheduler):
    """diffusers' TCDScheduler (gamma 0.3, its default) whose between-step noise repeats exactly."""


def few_step_scheduler(name: str, config: dict):
    """``lcm`` or ``tcd`` over the model's noise schedule."""
    return {"lcm": SeededLCMScheduler, "tcd": SeededTCDScheduler}[name].from_config(config)
