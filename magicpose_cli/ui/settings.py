"""The retarget options the page offers: one row of ``SETTINGS`` each.

A row names the RetargetOptions field, its label and its kind (how it is shown and read back).
The page, the API endpoint's parameters (same names, all optional) and the options a job runs
with are all made from this table, so offering another option is one more row.
An empty control leaves the option at its default, for most "the model's advice"; an empty Motion
module box is `retarget` without --motion-module (the configured module, else none), and a filled
one is read as that option's value is (a local folder or checkpoint, else a hub id). Steps and guidance
typed in override the preset's, as on the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.retarget import RetargetOptions
from magicpose_cli.retarget.options import parse_choice
from magicpose_cli.retarget.presets import Preset


@dataclass(frozen=True)
class Kind:
    """How a kind of setting is shown (``control(gr, setting)``) and read back (``read(value, setting)``: None leaves the default)."""

    control: Callable[[Any, Setting], Any]
    read: Callable[[Any, Setting], Any]


@dataclass(frozen=True)
class Setting:
    name: str  # the RetargetOptions field, and the API parameter
    label: str
    kind: Kind
    hint: str = ""  # shown in an empty box: what empty means
    value: Any = None  # the control's first value
    panel: str = "generation"  # the row of the page it sits in


def _read_number(whole: bool) -> Callable[[Any, Setting], Any]:
    """Typed text (or a number from the API) as a number; empty text is None (the option's default)."""

    def read(value: Any, setting: Setting) -> int | float | None:
        text = str(value).strip() if value is not None else ""
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            raise MagicPoseError(f"{setting.label} must be a number, got {text!r}") from None
        if whole and not number.is_integer():
            raise MagicPoseError(f"{setting.label} must be a whole number, got {text!r}")
        return int(number) if whole else number

    return read


def _text_box(gr, setting: Setting):
    return gr.Textbox(label=setting.label, value="" if setting.value is None else str(setting.value), placeholder=setting.hint)


def _read_path(value: Any, setting: Setting) -> Path | None:
    return Path(value.strip()).expanduser() if isinstance(value, str) and value.strip() else None


def _read_text(value: Any, setting: Setting) -> str | None:
    """Stripped text, kept a string (a hub id is not a path); empty is None."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def _choice(options: type[Enum]) -> Kind:
    """One of an enum's values from a drop-down (the API takes the value's text); empty is None."""

    def control(gr, setting: Setting):
        return gr.Dropdown(label=setting.label, choices=[option.value for option in options], value=setting.value, info=setting.hint)

    def read(value: Any, setting: Setting):
        if value is None or not str(value).strip():
            return None
        return parse_choice(options, str(value).strip(), setting.label)

    return Kind(control, read)


# Numbers are typed into text boxes: a browser's number field sends 0 for an empty one, and empty is
# what "the model's advice" needs.
WHOLE = Kind(_text_box, _read_number(whole=True))
NUMBER = Kind(_text_box, _read_number(whole=False))
PATH = Kind(_text_box, _read_path)
TEXT = Kind(_text_box, _read_text)
SWITCH = Kind(lambda gr, setting: gr.Checkbox(label=setting.label, value=setting.value), lambda value, _: None if value is None else bool(value))


def _read_on_off(value: Any, setting: Setting) -> bool | None:
    """``on``/``off`` (or a boolean from the API) as True/False; empty is None (the option's default)."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("", "on", "off"):
        raise MagicPoseError(f"{setting.label} must be on or off, got {value!r}")
    return None if not text else text == "on"


ON_OFF = Kind(lambda gr, setting: gr.Dropdown(label=setting.label, choices=["on", "off"], value=setting.value, info=setting.hint), _read_on_off)

ADVICE = "the model's advice"
SETTINGS: tuple[Setting, ...] = (
    Setting("model", "Model", PATH, "as configured, else the demo model: a folder, a model_state-*.th, or a hub id", panel="model"),
    Setting("preset", "Preset", _choice(Preset), "quality: the model's schedule; balanced: half its cost; fast: a quarter (docs/speed.md)", value=Preset.quality.value),
    Setting("steps", "Steps", WHOLE, ADVICE),
    Setting("guidance", "Guidance", NUMBER, ADVICE),
    Setting("seed", "Seed", WHOLE, "0", value=0),
    Setting("size", "Size (short side, a multiple of 64)", WHOLE, ADVICE),
    Setting("max_frames", "Frames", WHOLE, "all of the video's"),
    Setting("face", "Face landmarks", SWITCH, value=True, panel="poses"),
    Setting("hands", "Hands", SWITCH, value=True, panel="poses"),
    Setting("grid", "Grid: reference | pose | result", SWITCH, value=False, panel="poses"),
    Setting("face_pass", "Face pass", ON_OFF, f"empty: {ADVICE}; redraws each face at full size (docs/retarget.md)", panel="face"),
    Setting("face_strength", "Face strength (0..1)", NUMBER, ADVICE, panel="face"),
    Setting("face_size", "Face canvas (a multiple of 64)", WHOLE, "the model's canvas size", panel="face"),
    Setting("face_margin", "Face margin", NUMBER, "0.5", panel="face"),
    Setting("motion_module", "Motion module", TEXT, "as retarget finds one: a MotionAdapter folder, a checkpoint or a hub id", panel="motion"),
    Setting("no_motion", "No motion module (not even a configured one)", SWITCH, value=False, panel="motion"),
)


def options_from(values: dict[str, Any], **fixed: Any) -> RetargetOptions:
    """The RetargetOptions of a job: each setting's value read back (empty or left out: the option's
    default), plus the ``fixed`` ones the server decides (the cache root)."""
    read = {setting.name: setting.kind.read(values.get(setting.name), setting) for setting in SETTINGS}
    return RetargetOptions(**{name: value for name, value in read.items() if value is not None}, **fixed)
