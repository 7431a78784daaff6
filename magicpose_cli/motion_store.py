"""Finding the motion module to run, as ``model_store`` finds the model; first match wins:

1. ``--no-motion``: none;
2. ``--motion-module SOURCE``;
3. the ``MAGICPOSE_MOTION_MODULE`` environment variable;
4. ``motion_module = "..."`` in the config file (``~/.config/magicpose/config.toml`` or ``$MAGICPOSE_CONFIG``);
otherwise none: frames are denoised on their own, as without this feature.

SOURCE is a diffusers MotionAdapter folder, an original checkpoint file (``mm_sd_v15_v2.ckpt``,
``v3_sd15_mm.ckpt``, ``AnimateLCM_sd15_t2v.ckpt``, ``*.safetensors``) or, where no such local path
exists, a Hugging Face Hub reference: ``owner/name`` (a MotionAdapter repo, of which only the weights
file is fetched: the configuration is read from the weights and the one shipped here) or
``owner/name/file.ckpt``. Downloads go to the shared hub cache; HF_TOKEN, HF_HOME, HF_ENDPOINT and
HF_HUB_OFFLINE apply, as for ``--model``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.model_store import _hub_download, configured_setting, is_hub_reference
from magicpose_cli.models.motion_loading import ADAPTER_WEIGHTS, MOTION_FILE_SUFFIXES, adapter_weights_file

MOTION_ENVIRONMENT_VARIABLE = "MAGICPOSE_MOTION_MODULE"
HUB_ADAPTER_WEIGHTS = ADAPTER_WEIGHTS[:2]  # safetensors only from the hub
OPTION = "--motion-module"
_HUB_REFERENCE = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:/(?P<file>[\w./-]+))?")


@dataclass(frozen=True)
class MotionLocation:
    """A motion module ready to load (a checkpoint file or a MotionAdapter folder), and where it came from."""

    path: Path
    source: str  # "--motion-module", "MAGICPOSE_MOTION_MODULE", "config file ..."


def locate_motion_module(given: str | Path | None, disabled: bool = False) -> MotionLocation | None:
    """The motion module this run uses, or None (see the module's docstring for the order)."""
    if disabled:
        return None
    if given is not None:
        return MotionLocation(motion_module_path(given, OPTION), OPTION)
    configured = configured_setting("motion_module", MOTION_ENVIRONMENT_VARIABLE)
    if configured is not None:
        reference, source = configured
        return MotionLocation(motion_module_path(reference, source), source)
    return None


def is_adapter_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and adapter_weights_file(folder) is not None


def motion_module_path(reference: str | Path, source: str = OPTION) -> Path:
    """A local folder or checkpoint file as it is, else the file a hub reference names, fetched once."""
    path = Path(reference).expanduser()
    if path.is_dir():
        if not is_adapter_folder(path):
            raise MagicPoseError(f"motion module {path} is a folder without config.json and {ADAPTER_WEIGHTS[0]} (from {source})")
        return path
    if path.is_file():
        if path.suffix.lower() not in MOTION_FILE_SUFFIXES:
            raise MagicPoseError(f"motion module {path} is neither a MotionAdapter folder nor a checkpoint ({', '.join(MOTION_FILE_SUFFIXES)})")
        return path
    if is_hub_reference(str(reference)):
        return hub_motion_module(str(reference), source)
    raise MagicPoseError(f"motion module not found: {path} (from {source})")


def hub_motion_module(reference: str, source: str) -> Path:
    """The weights a hub reference names: its file, or a MotionAdapter repo's weights file (never its config)."""
    match = _HUB_REFERENCE.fullmatch(reference)
    names = [match["file"]] if match["file"] else list(HUB_ADAPTER_WEIGHTS)
    for name in names:
        found = _hub_download(match["repo"], name, source, required=True, option=OPTION)
        if found is not None:
            return found
    raise MagicPoseError(
        f"the Hugging Face Hub repo {match['repo']} has no {' or '.join(names)} (from {source}); "
        f"name the checkpoint file: {match['repo']}/FILE.ckpt"
    )
