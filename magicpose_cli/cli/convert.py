"""`magicpose convert CHECKPOINT -o DIR`: published weights to our model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from magicpose_cli.cli.app import app, console, user_errors
from magicpose_cli.errors import MagicPoseError


@app.command("convert")
@user_errors
def convert_command(
    checkpoint: Path = typer.Argument(
        ...,
        help="Original-layout checkpoint: a MagicPose model_state-*.th, an SD 1.5 .ckpt/.safetensors "
        "(becomes a training initialisation), or an OpenPose ControlNet .pth.",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write (diffusers save_pretrained layout)."),
    config: Optional[Path] = typer.Option(
        None, help="The model's original yaml (e.g. cldm_v15_reference_only_pose.yaml); default: SD 1.5 sizes."
    ),
    controlnet: Optional[Path] = typer.Option(
        None, help="With an SD 1.5 checkpoint: the OpenPose ControlNet (control_v11p_sd15_openpose.pth) to start from."
    ),
    overwrite: bool = typer.Option(False, help="Replace OUTPUT if it exists."),
) -> None:
    """Convert published checkpoints to a model folder that `retarget --model` and `train --model` load."""
    from magicpose_cli.models.conversion import convert_checkpoint

    if output.exists() and any(output.iterdir()) and not overwrite:
        raise MagicPoseError(f"{output} exists and is not empty; pass --overwrite to replace it")
    with console.status(f"converting {checkpoint.name}"):
        folder = convert_checkpoint(checkpoint, output, config, controlnet)
    console.print(f"[green]wrote[/] {folder}")
    if (folder / "model_index.json").is_file() and not (folder / "empty_prompt").is_dir():
        console.print(
            "[yellow]note:[/] the checkpoint has no CLIP text encoder (cond_stage_model.*), so the folder stores no "
            "empty-prompt embedding; `retarget` needs one. Published MagicPose checkpoints include it."
        )
