"""`magicpose comfyui install`: the node pack as a folder in a ComfyUI's custom_nodes.

The folder holds one small ``__init__.py`` that imports the nodes from the installed magicpose
package, so updating magicpose updates the nodes and no code is copied. ComfyUI must therefore be
able to import magicpose_cli with its own Python: that is checked first, and when it cannot, the
error says which ``pip install`` to run there.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import magicpose_cli
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_write_text

PACK_FOLDER = "magicpose"
PACK_INIT = '''"""magicpose's ComfyUI nodes, written by `magicpose comfyui install`: the nodes live in the installed magicpose package."""

from magicpose_cli.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
'''
VENV_PYTHONS = (".venv/bin/python", "venv/bin/python", ".venv/Scripts/python.exe", "venv/Scripts/python.exe", "python_embeded/python.exe")


@dataclass(frozen=True)
class Installed:
    init_file: Path
    python: Path
    version: str  # the magicpose version ComfyUI's Python imports


def install_node_pack(comfyui_dir: Path, python: Path | None = None, overwrite: bool = False) -> Installed:
    """Write ``COMFYUI_DIR/custom_nodes/magicpose/__init__.py`` once ComfyUI's Python is known to import magicpose."""
    comfyui_dir = check_comfyui_folder(Path(comfyui_dir).expanduser())
    pack = comfyui_dir / "custom_nodes" / PACK_FOLDER
    if pack.exists() and not overwrite:
        raise MagicPoseError(f"{pack} exists already: pass --overwrite to write its __init__.py again")
    python = comfyui_python(comfyui_dir, python)
    version = magicpose_version_of(python, comfyui_dir)
    pack.mkdir(exist_ok=True)
    atomic_write_text(pack / "__init__.py", PACK_INIT)
    return Installed(pack / "__init__.py", python, version)


def check_comfyui_folder(folder: Path) -> Path:
    """A ComfyUI checkout has custom_nodes/ beside main.py or the comfy/ package; anything else is refused."""
    if not (folder / "custom_nodes").is_dir() or not ((folder / "main.py").is_file() or (folder / "comfy").is_dir()):
        raise MagicPoseError(f"{folder} is not a ComfyUI folder (no custom_nodes/ beside main.py or comfy/): give the folder ComfyUI runs from")
    return folder


def comfyui_python(comfyui_dir: Path, given: Path | None) -> Path:
    """The Python ComfyUI runs on: ``given`` (--python), else a virtual environment inside its folder, else this one."""
    if given is not None:
        if not Path(given).is_file():
            raise MagicPoseError(f"--python {given} is not a file: give the python executable ComfyUI runs with")
        return Path(given)
    found = [comfyui_dir / name for name in VENV_PYTHONS if (comfyui_dir / name).is_file()]
    return found[0] if found else Path(sys.executable)


def magicpose_version_of(python: Path, comfyui_dir: Path) -> str:
    """The magicpose version ``python`` imports when started in ComfyUI's folder, or the pip install that makes it importable."""
    probe = "import magicpose_cli, magicpose_cli.comfyui; print(magicpose_cli.__version__)"
    try:
        result = subprocess.run([str(python), "-c", probe], cwd=comfyui_dir, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise MagicPoseError(f"cannot run ComfyUI's Python {python}: {error}; give the right one with --python") from None
    if result.returncode != 0:
        raise MagicPoseError(
            f"ComfyUI's Python {python} cannot import magicpose: run `{python} -m pip install {pip_requirement()}`, then this command again"
        )
    return result.stdout.strip()


def pip_requirement() -> str:
    """What to pip install into ComfyUI's environment: this source tree (editable) where magicpose runs from one, else this release."""
    source = Path(magicpose_cli.__file__).resolve().parent.parent
    if (source / "pyproject.toml").is_file():
        return f"-e '{source}'"
    return f"magicpose-cli=={magicpose_cli.__version__}"
