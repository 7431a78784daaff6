"""`magicpose convert CHECKPOINT -o DIR`: published weights to our model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from magicpose_cli.choices import Precision
from magicpose_cli.cli.app import command, console, report_output


@command("convert")
def convert_command(
    checkpoint: str = typer.Argument(
        ...,
        help="Original-layout checkpoint: a MagicPose model_state-*.th, an SD 1.5 .ckpt/.safetensors "
        "(becomes a training initialisation), or an OpenPose ControlNet .pth; or a Hugging Face Hub repo "
        "(Boese0601/MagicDance: its model_state-110000.th) or owner/name/FILE.",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write (diffusers save_pretrained layout)."),
    config: Optional[Path] = typer.Option(
        None, help="The model's original yaml (e.g. cldm_v15_reference_only_pose.yaml); default: SD 1.5 sizes."
    ),
    controlnet: Optional[str] = typer.Option(
        None, help="With an SD 1.5 checkpoint: the OpenPose ControlNet (control_v11p_sd15_openpose.pth) to start from."
    ),
    dtype: Precision = typer.Option(
        Precision.auto, help="Weights: auto (fp16 for a MagicPose model, fp32 for training starts), fp16, bf16 or fp32."
    ),
    overwrite: bool = typer.Option(False, help="Replace OUTPUT if it exists."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Convert published checkpoints to a model folder that `retarget --model` and `train --model` load."""
    from magicpose_cli.model_store import checkpoint_file
    from magicpose_cli.models.conversion import check_output_folder, convert_checkpoint

    check_output_folder(output, overwrite)
    source = checkpoint_file(checkpoint)  # fetched first: the download shows its own progress bar
    controlnet_source = checkpoint_file(controlnet, "--controlnet") if controlnet else None
    with console.status(f"converting {source.name}") as status:
        folder = convert_checkpoint(
            source, output, config, controlnet_source, dtype=dtype.value, overwrite=overwrite,
            on_component=lambda name: status.update(f"converting {source.name}: {name}"),
        )  # fmt: skip
    console.print(f"[green]wrote[/] {folder}")
    report_output(folder)
    if (folder / "model_index.json").is_file() and not (folder / "empty_prompt").is_dir():
        console.print(
            "[yellow]note:[/] the checkpoint has no CLIP text encoder (cond_stage_model.*), so the folder stores no "
            "empty-prompt embedding; `retarget` needs one. Published MagicPose checkpoints include it."
        )
