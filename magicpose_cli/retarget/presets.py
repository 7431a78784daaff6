"""``--preset quality|balanced|fast``: named ways to spend fewer network evaluations per frame.

``quality`` is the schedule a run has without a preset: the model's recommended one, else the
original's (50 DDIM steps, guidance on every step). The others change it by a recipe chosen from
measurements on the demo model's held-out pairs (docs/speed.md): fewer steps of a multistep solver,
guidance only inside an interval of noise levels, and deep features reused between steps. Because a
recipe scales the quality schedule's step count, it means the same for any model's schedule.
Options given on the command line override what the preset says.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from magicpose_cli.models.loading import Scheduler


class Preset(str, Enum):
    quality = "quality"
    balanced = "balanced"
    fast = "fast"


@dataclass(frozen=True)
class PresetRecipe:
    """What a preset changes in the quality schedule."""

    step_fraction: float  # of the quality schedule's steps (rounded, at least 1)
    guidance_interval: tuple[float, float]  # see models/guidance.py
    deep_reuse: int
    appearance_reuse: int
    solver: Scheduler = Scheduler.dpm  # replaces DDIM, which needs about twice the steps; another solver is kept


RECIPES = {
    Preset.balanced: PresetRecipe(step_fraction=0.5, guidance_interval=(0.0, 1.0), deep_reuse=1, appearance_reuse=1),
    Preset.fast: PresetRecipe(step_fraction=0.3, guidance_interval=(0.0, 0.7), deep_reuse=2, appearance_reuse=1),
}


def preset_settings(preset: Preset | str, steps: int, scheduler: Scheduler) -> dict[str, object]:
    """The settings ``preset`` gives a quality schedule of ``steps`` steps of ``scheduler`` (nothing for ``quality``)."""
    recipe = RECIPES.get(Preset(preset))
    if recipe is None:
        return {}
    return {
        "steps": max(1, round(steps * recipe.step_fraction)),
        "scheduler": recipe.solver if Scheduler(scheduler) is Scheduler.ddim else Scheduler(scheduler),
        "guidance_interval": recipe.guidance_interval,
        "deep_reuse": recipe.deep_reuse,
        "appearance_reuse": recipe.appearance_reuse,
    }
