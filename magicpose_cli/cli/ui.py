"""`magicpose ui`: the local web app (magicpose_cli.ui), served on this machine until Ctrl-C."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from magicpose_cli.cli.app import command, console, report_output
from magicpose_cli.ui.server import DEFAULT_HOST, DEFAULT_OUTPUT_DIR, DEFAULT_PORT


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@command("ui")
def ui_command(
    host: str = typer.Option(DEFAULT_HOST, help="Address to listen on; 127.0.0.1: this machine only (reach it from another through an SSH tunnel)."),
    port: int = typer.Option(DEFAULT_PORT, help="Port to listen on."),
    model: Optional[str] = typer.Option(
        None, help="The Model box's first value: a model folder, a checkpoint or a hub id (default: as `retarget` finds one, else the demo model)."
    ),
    output_dir: Path = typer.Option(DEFAULT_OUTPUT_DIR, help="Folder where every result video is kept (never replaced)."),
    cache_dir: Optional[Path] = typer.Option(
        None, help="Cache root for frames, poses and converted models (default $MAGICPOSE_CACHE or ~/.cache/magicpose)."
    ),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    r"""Serve a page that retargets like `magicpose retarget`: upload a photo and a video, check the poses, press Retarget.

    Needs the extra: pip install 'magicpose-cli\[ui]'. Nothing is sent anywhere: no analytics, no share links.
    """
    from magicpose_cli.ui.server import serve

    if not is_loopback(host):
        console.print(f"[yellow]note:[/] listening on {host}: anyone who can reach it can run jobs and download results; an SSH tunnel is safer (docs/ui.md)")

    def ready(app) -> None:
        console.print(f"magicpose ui: [bold]{app.url}[/] (results in {app.engine.output_dir}; Ctrl-C stops it)", highlight=False, soft_wrap=True)
        report_output(app.url)

    cut_short = serve(ready, host=host, port=port, output_dir=output_dir, cache_root=cache_dir, model_default=model or "")
    if cut_short:
        console.print("magicpose ui stopped; the job under way was cut short (its finished frames are kept: Retarget resumes it)")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # the job's thread cannot be stopped, and Python would abort on it at exit
    console.print("magicpose ui stopped")
    raise typer.Exit(code=130)  # Ctrl-C, as every command answers it
