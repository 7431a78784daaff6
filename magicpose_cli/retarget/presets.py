"""``--preset quality|balanced|fast``: named ways to spend fewer network evaluations per frame.

``quality`` is the schedule a run has without a preset: the model's recommended one, else the
original's (50 DDIM steps, guidance on every step). The others take a share of its steps with
DPM-Solver++ at first order (``dpm-1``), the combination that kept the most quality per network
evaluation on the demo model's validation pairs; the guidance interval and feature reuse cost more
quality for the same saving at these budgets (docs/speed.md has the measurements). Because a
recipe scales the quality schedule's step count, it means the same for any model's schedule.
Options given on the command line override what the preset says.
"""

from __future__ import annotations

from dataclasses import dataclass
from magicpose_cli.choices import Preset, Scheduler


@dataclass(frozen=True)
class PresetRecipe:
    """What a preset changes in the quality schedule."""

    step_fraction: float  # of the quality schedule's steps (rounded, at least 1): the share of its evaluations
    solver: Scheduler = Scheduler.dpm1  # first order: the second-order solvers overshoot at 10 steps and fewer


RECIPES = {Preset.balanced: PresetRecipe(step_fraction=0.5), Preset.fast: PresetRecipe(step_fraction=0.25)}


def preset_settings(preset: Preset | str, steps: int) -> dict[str, object]:
    """The settings ``preset`` gives a quality schedule of ``steps`` steps (nothing for ``quality``)."""
    recipe = RECIPES.get(Preset(preset))
    if recipe is None:
        return {}
    return {"steps": max(1, round(steps * recipe.step_fraction)), "scheduler": recipe.solver}
