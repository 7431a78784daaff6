"""Where classifier-free guidance applies: an interval of noise levels (Kynkäänniemi et al., NeurIPS 2024).

Guidance moves the sample most at high noise levels, where it also narrows what the model draws,
and hardly at all at the lowest ones; applying it only inside an interval keeps its benefit and
spares the unconditional network on every step outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GuidanceInterval:
    """Guidance for the steps whose timestep ``t`` has ``low <= t / T <= high``.

    Fractions of the training noise schedule's ``T`` timesteps (SD: 1000): 0 is the clean image,
    1 pure noise, so they mean the same noise level for every sampler and step count. Outside the
    interval a step uses the conditional prediction alone. ``(0, 1)``, the default, guides every step.
    """

    low: float = 0.0
    high: float = 1.0

    def __post_init__(self):
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(f"a guidance interval needs 0 <= low <= high <= 1, got ({self.low}, {self.high})")

    def guides(self, timestep: torch.Tensor | float, num_train_timesteps: int) -> bool:
        level = float(timestep) / num_train_timesteps
        return self.low <= level <= self.high

    @classmethod
    def of(cls, interval: GuidanceInterval | tuple[float, float]) -> GuidanceInterval:
        """An interval given as one or as ``(low, high)``."""
        return interval if isinstance(interval, GuidanceInterval) else cls(*interval)
