"""`magicpose train --data DIR --stage appearance|pose|motion --model INIT -o RUN_DIR`: options handed to magicpose_cli.training."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from magicpose_cli.choices import ClipNoise, MixedPrecision, TrainingStage
from magicpose_cli.cli.app import command, console
from magicpose_cli.distributed import launched_as_main
from magicpose_cli.files import check_exists

_DATA = "Data"
_OPTIMISATION = "Optimisation"
_RUN = "Checkpoints, samples and logs"
TRAIN_HELP = """Train MagicPose on your own videos, in the paper's two stages, and a motion module.

\b
1. --stage appearance: appearance-control pretraining. The appearance model learns to carry
   the reference frame's identity into the frozen SD UNet, without pose control; the target is
   another frame of the same video. Start from an SD 1.5 checkpoint (its UNet also initialises
   the appearance model) or a MagicPose model.
2. --stage pose: appearance-disentangled pose control. The pose ControlNet, started from the
   OpenPose ControlNet (--controlnet-init), learns together with the stage-1 appearance model
   (--model RUN1/model); --freeze-appearance trains the ControlNet alone. SD UNet frozen.
3. --stage motion: an AnimateDiff motion module, on clips of --clip-frames frames every
   --clip-stride-th frame, everything else frozen; from --motion-module (a published one) or
   from scratch (zero output projections). Saved to RUN_DIR/motion_module, which
   `magicpose retarget --motion-module` loads (docs/motion.md).

Several GPUs: accelerate launch --num_processes N -m magicpose_cli train ... (or torchrun
--nproc_per_node N -m magicpose_cli train ...): each process trains on its own share of the pairs
with --batch-size pairs, the gradients are averaged, and the main process alone writes checkpoints,
samples, loss.csv and the model. The final model is saved to RUN_DIR/model, which
`magicpose retarget --model` loads.
"""


@command("train", help=TRAIN_HELP)
def train_command(
    data: Path = typer.Option(
        ...,
        help="Training videos: a folder of video files (poses extracted and cached like extract-pose), "
        "<video>/frames/*.png + <video>/poses/*.json folders, or the original train_set/ + pose_map_train_set/.",
        rich_help_panel=_DATA,
    ),
    stage: TrainingStage = typer.Option(..., help="appearance (stage 1), pose (stage 2) or motion; see above."),
    model: Path = typer.Option(
        ..., help="Model to start from: a MagicPose model folder (stage 2: the stage-1 output), "
        "an original checkpoint (SD 1.5 or MagicPose), or a Hugging Face Hub repo (Boese0601/MagicDance); "
        "checkpoints are converted once (float32) into the model cache."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Run folder: checkpoints, samples, loss.csv and the final model/."),
    controlnet_init: Optional[Path] = typer.Option(
        None, help="OpenPose ControlNet to start the pose ControlNet from: a diffusers folder or control_v11p_sd15_openpose.pth."
    ),
    freeze_appearance: bool = typer.Option(False, help="Stage 2: train the pose ControlNet alone, appearance model frozen."),
    motion_module: Optional[str] = typer.Option(
        None, help="Motion stage: the motion module to start from (as retarget's --motion-module); default: from scratch."
    ),
    clip_frames: int = typer.Option(16, help="Motion stage: frames per training clip.", rich_help_panel=_DATA),
    clip_stride: int = typer.Option(4, help="Motion stage: a clip takes every N-th frame of its video.", rich_help_panel=_DATA),
    clip_noise: ClipNoise = typer.Option(
        ClipNoise.per_frame, help="Motion stage: per-frame noise (as AnimateDiff trains) or one draw shared by a clip's frames (as "
        "retarget's --noise shared samples).", rich_help_panel=_DATA,
    ),
    resolution: int = typer.Option(512, help="Square training size in pixels (multiple of 64 for SD 1.5).", rich_help_panel=_DATA),
    max_frame_gap: Optional[int] = typer.Option(
        None, help="Reference and target at most this many frames apart (default: any two frames of a video).",
        rich_help_panel=_DATA,
    ),
    num_workers: int = typer.Option(2, help="Data loading processes per GPU.", rich_help_panel=_DATA),
    batch_size: Optional[int] = typer.Option(
        None, help="Pairs (clips) per GPU and step (default: 32 for appearance, 8 for pose, as the released scripts; 1 clip for motion).",
        rich_help_panel=_OPTIMISATION,
    ),
    max_steps: int = typer.Option(100_000, help="Optimiser steps to train to (counting resumed ones).", rich_help_panel=_OPTIMISATION),
    learning_rate: float = typer.Option(1e-5, help="AdamW learning rate (the original's 1e-5).", rich_help_panel=_OPTIMISATION),
    warmup_steps: int = typer.Option(0, help="Linear learning-rate warm-up steps.", rich_help_panel=_OPTIMISATION),
    gradient_accumulation: int = typer.Option(1, help="Micro-batches per optimiser step.", rich_help_panel=_OPTIMISATION),
    mixed_precision: MixedPrecision = typer.Option(MixedPrecision.no, help="no, fp16 or bf16 (the original trains in bf16).", rich_help_panel=_OPTIMISATION),
    gradient_checkpointing: bool = typer.Option(False, help="Recompute activations in the backward pass (less memory).", rich_help_panel=_OPTIMISATION),
    max_grad_norm: float = typer.Option(0.5, help="Gradient clipping norm (0: off).", rich_help_panel=_OPTIMISATION),
    ema: bool = typer.Option(False, help="Keep an exponential moving average of the trained weights; the final model uses it.", rich_help_panel=_OPTIMISATION),
    ema_decay: float = typer.Option(0.9999, help="EMA decay.", rich_help_panel=_OPTIMISATION),
    seed: int = typer.Option(42, help="Seed of every random choice (pairs, crops, noise, timesteps).", rich_help_panel=_OPTIMISATION),
    checkpoint_every: int = typer.Option(1000, help="Save a checkpoint every N steps (and at the end; 0: only at the end).", rich_help_panel=_RUN),
    checkpoints_total_limit: int = typer.Option(
        3, help="Keep only the newest N checkpoints, deleting older ones once a new one is written (0: keep all).", rich_help_panel=_RUN
    ),
    resume: bool = typer.Option(False, help="Continue from the newest checkpoint in RUN_DIR, exactly as if never stopped.", rich_help_panel=_RUN),
    sample_every: int = typer.Option(500, help="Write a reference | pose | generated | target grid every N steps (0: never).", rich_help_panel=_RUN),
    sample_count: int = typer.Option(4, help="Pairs in each sample grid.", rich_help_panel=_RUN),
    sample_steps: int = typer.Option(50, help="Denoising steps for the sample grids.", rich_help_panel=_RUN),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    check_exists(data, "training data folder")
    from magicpose_cli.training import TrainConfig, train

    config = TrainConfig(
        data=data, stage=stage.value, model=model, output_dir=output, controlnet_init=controlnet_init,
        resolution=resolution, batch_size=batch_size, max_steps=max_steps, learning_rate=learning_rate,
        warmup_steps=warmup_steps, gradient_accumulation=gradient_accumulation, mixed_precision=mixed_precision.value,
        max_grad_norm=max_grad_norm, checkpoint_every=checkpoint_every, checkpoints_total_limit=checkpoints_total_limit,
        sample_every=sample_every,
        sample_count=sample_count, sample_steps=sample_steps, resume=resume, max_frame_gap=max_frame_gap,
        freeze_appearance=freeze_appearance, seed=seed, ema=ema, ema_decay=ema_decay,
        gradient_checkpointing=gradient_checkpointing, num_workers=num_workers,
        clip_frames=clip_frames, clip_stride=clip_stride, clip_noise=clip_noise.value, motion_module=motion_module,
    )  # fmt: skip
    model_dir = train(config, console=console)
    console.print(f"[green]saved:[/] {model_dir}", highlight=False)
    if launched_as_main():
        typer.echo(str(model_dir))
