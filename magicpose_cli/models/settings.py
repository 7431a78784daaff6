"""The sampling settings a model folder recommends (``recommended_settings.json`` beside its components).

They belong to the model, so they live with the models: conversion writes them, the model store
and retarget read them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_write_text

RECOMMENDED_SETTINGS_FILE = "recommended_settings.json"
_SETTING_TYPES = {
    "width": (int,), "height": (int,), "steps": (int,), "guidance": (int, float), "scheduler": (str,),
    "face_pass": (bool,), "face_strength": (int, float),
}  # fmt: skip
_ADDED_LATER = ("face_pass", "face_strength")  # written only when set, so a folder without them stays as it was


@dataclass(frozen=True)
class RecommendedSettings:
    """The sampling settings a model folder recommends, for options the user left unset (None: no advice)."""

    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    face_pass: bool | None = None  # whether retarget redraws the faces (its face pass), and how far back into the noise
    face_strength: float | None = None

    def write(self, folder: Path) -> None:
        values = {name: value for name, value in asdict(self).items() if value is not None or name not in _ADDED_LATER}
        atomic_write_text(Path(folder) / RECOMMENDED_SETTINGS_FILE, json.dumps(values, indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> RecommendedSettings:
        path = Path(folder) / RECOMMENDED_SETTINGS_FILE
        if not path.is_file():
            return cls()
        try:
            values = json.loads(path.read_text())
            wrong = [name for name, kinds in _SETTING_TYPES.items() if not isinstance(values.get(name), (*kinds, type(None)))]
        except (OSError, ValueError, AttributeError) as error:
            raise MagicPoseError(f"cannot read {path}: {error}") from None
        if wrong:
            raise MagicPoseError(f"cannot read {path}: wrong type for {', '.join(wrong)}")
        return cls(**{name: values.get(name) for name in _SETTING_TYPES})
