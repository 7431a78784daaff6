"""`magicpose retarget REF DRIVING -o OUT.mp4`: the options, handed to magicpose_cli.retarget."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from magicpose_cli.cli.app import app, console, user_errors
from magicpose_cli.framing import FitMode
from magicpose_cli.models.loading import Device, Precision, Scheduler
from magicpose_cli.models.pipeline import GuidanceMode
from magicpose_cli.retarget import RetargetOptions, RetargetSummary, retarget

_GENERATION = "Generation"
_FRAMING = "Framing and poses"
_OUTPUT = "Output"
_MEMORY = "Device and memory"


@app.command("retarget")
@user_errors
def retarget_command(
    reference: Path = typer.Argument(..., help="Photo of the person to animate (PNG, JPEG, ...; RGBA and greyscale work)."),
    driving: Path = typer.Argument(
        ..., help="Driving video, or a folder of pose-map images, or a folder of OpenPose JSON files."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="The mp4 to write.", rich_help_panel=_OUTPUT),
    model: Optional[Path] = typer.Option(
        None,
        help="Converted model folder, or an original MagicPose checkpoint (converted once, then cached). "
        "Default: $MAGICPOSE_MODEL, then `model` in ~/.config/magicpose/config.toml, then the demo model.",
    ),
    width: Optional[int] = typer.Option(None, help="Generation width (multiple of 64; default 512).", rich_help_panel=_FRAMING),
    height: Optional[int] = typer.Option(None, help="Generation height (multiple of 64; default: the width).", rich_help_panel=_FRAMING),
    fit: FitMode = typer.Option(
        FitMode.pad, help="pad: letterbox, then restore the driving aspect; crop: fill and cut; stretch: distort.",
        rich_help_panel=_FRAMING,
    ),
    align: bool = typer.Option(True, "--align/--no-align", help="Fit the driving skeleton to the reference body.", rich_help_panel=_FRAMING),
    face: bool = typer.Option(True, "--face/--no-face", help="Draw face landmarks in the pose maps.", rich_help_panel=_FRAMING),
    hands: bool = typer.Option(True, "--hands/--no-hands", help="Draw hands in the pose maps.", rich_help_panel=_FRAMING),
    max_frames: Optional[int] = typer.Option(None, help="Use only the first N driving frames.", rich_help_panel=_FRAMING),
    seed: int = typer.Option(0, help="Seed of the initial noise all frames share.", rich_help_panel=_GENERATION),
    batch_size: int = typer.Option(4, help="Frames denoised together.", rich_help_panel=_GENERATION),
    steps: int = typer.Option(50, help="Denoising steps.", rich_help_panel=_GENERATION),
    guidance: float = typer.Option(7.0, help="Classifier-free guidance scale.", rich_help_panel=_GENERATION),
    guidance_mode: GuidanceMode = typer.Option(
        GuidanceMode.image, help="image: guide on reference+pose (MagicPose default); text: reference in both branches.",
        rich_help_panel=_GENERATION,
    ),
    scheduler: Scheduler = typer.Option(Scheduler.ddim, help="dpm (DPM-Solver++) and unipc need fewer steps.", rich_help_panel=_GENERATION),
    device: Device = typer.Option(Device.auto, help="auto: cuda, else mps, else cpu.", rich_help_panel=_MEMORY),
    dtype: Precision = typer.Option(Precision.auto, help="auto: fp16 on CUDA, else fp32; bf16 also on the CPU.", rich_help_panel=_MEMORY),
    vae_slicing: bool = typer.Option(False, help="Decode frames one at a time (less GPU memory).", rich_help_panel=_MEMORY),
    vae_tiling: bool = typer.Option(False, help="Decode in tiles (less GPU memory at high resolution).", rich_help_panel=_MEMORY),
    cpu_offload: bool = typer.Option(False, help="Keep models on the CPU until needed (small GPUs).", rich_help_panel=_MEMORY),
    fps: Optional[float] = typer.Option(None, help="Output frame rate (default: the driving video's).", rich_help_panel=_OUTPUT),
    audio: bool = typer.Option(True, "--audio/--no-audio", help="Copy the driving video's audio track.", rich_help_panel=_OUTPUT),
    grid: bool = typer.Option(False, help="Write reference | pose | result side by side.", rich_help_panel=_OUTPUT),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists.", rich_help_panel=_OUTPUT),
    force: bool = typer.Option(False, help="Regenerate every frame instead of reusing cached ones.", rich_help_panel=_OUTPUT),
    frames_dir: Optional[Path] = typer.Option(None, help="Also keep the finished frames as PNGs in this folder.", rich_help_panel=_OUTPUT),
    cache_dir: Optional[Path] = typer.Option(
        None, help="Cache root for frames and converted models (default $MAGICPOSE_CACHE or ~/.cache/magicpose).",
        rich_help_panel=_OUTPUT,
    ),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Make the person in REF perform the motion of DRIVING, written to OUT as an H.264 mp4."""
    options = RetargetOptions(
        model=model, width=width, height=height, fit=fit, align=align, face=face, hands=hands,
        max_frames=max_frames, seed=seed, batch_size=batch_size, steps=steps, guidance=guidance,
        guidance_mode=guidance_mode, scheduler=scheduler, device=device, dtype=dtype,
        vae_slicing=vae_slicing, vae_tiling=vae_tiling, cpu_offload=cpu_offload, fps=fps, audio=audio,
        grid=grid, overwrite=overwrite, force=force, frames_dir=frames_dir, cache_root=cache_dir,
    )  # fmt: skip
    summary = retarget(reference, driving, output, options, console=console, on_notice=console.print)
    print_summary(summary)


def print_summary(summary: RetargetSummary) -> None:
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_row("frames", f"{summary.frames} ({summary.seconds_per_frame:.2f} s per frame)")
    table.add_row("generated", str(summary.generated))
    table.add_row("cache hits", str(summary.cache_hits))
    table.add_row("fps", f"{summary.fps:g}")
    table.add_row("audio", summary.audio_codec or "none")
    table.add_row("model", summary.model_source)
    table.add_row("total time", f"{summary.seconds:.1f} s")
    table.add_row("output", str(summary.output))
    console.print(table)
