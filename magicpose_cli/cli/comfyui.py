"""`magicpose comfyui install`: make the nodes appear in a ComfyUI (magicpose_cli.comfyui.install)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from magicpose_cli.cli.app import app, command, console, report_output

comfyui_app = typer.Typer(name="comfyui", help="magicpose's ComfyUI nodes (docs/comfyui.md).", no_args_is_help=True)
app.add_typer(comfyui_app)


@command("install", group=comfyui_app)
def install_command(
    comfyui_dir: Path = typer.Argument(..., help="The ComfyUI folder (the one with main.py and custom_nodes/)."),
    python: Optional[Path] = typer.Option(None, help="The Python ComfyUI runs on (default: a venv inside COMFYUI_DIR, else this one)."),
    overwrite: bool = typer.Option(False, help="Write custom_nodes/magicpose/__init__.py again when it exists."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Write COMFYUI_DIR/custom_nodes/magicpose/__init__.py, once ComfyUI's Python can import magicpose."""
    from magicpose_cli.comfyui.install import install_node_pack

    installed = install_node_pack(comfyui_dir, python, overwrite)
    console.print(f"wrote {installed.init_file} (magicpose {installed.version} on {installed.python}); restart ComfyUI to see the MagicPose nodes")
    report_output(installed.init_file)
