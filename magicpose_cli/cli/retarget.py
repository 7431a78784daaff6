"""`magicpose retarget REF DRIVING -o OUT.mp4`: the options, handed to magicpose_cli.retarget."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import typer
from rich.table import Table

from magicpose_cli.cli.app import command, console, detail, report_output
from magicpose_cli.framing import FitMode
from magicpose_cli.models.context_windows import ContextFusion
from magicpose_cli.models.loading import Device, Precision, Scheduler
from magicpose_cli.models.pipeline import GuidanceMode, NoiseMode
from magicpose_cli.pose.keypoints import parse_pose_size
from magicpose_cli.retarget import RetargetOptions, RetargetSummary, retarget
from magicpose_cli.retarget.presets import Preset

_GENERATION = "Generation"
_FRAMING = "Framing and poses"
_OUTPUT = "Output"
_MEMORY = "Device and memory"
_MOTION = "Motion module (docs/motion.md)"
_FACE = "Face pass (docs/retarget.md#the-face-pass)"


@command("retarget")
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
    size: Optional[int] = typer.Option(
        None, help="Short side of the canvas, which takes the driving poses' shape (multiple of 64; default: the "
        "model's recommended size, else 512, the training scale: 512x896 for 9:16).", rich_help_panel=_FRAMING,
    ),
    width: Optional[int] = typer.Option(None, help="A fixed canvas width instead (multiple of 64).", rich_help_panel=_FRAMING),
    height: Optional[int] = typer.Option(None, help="A fixed canvas height (multiple of 64; default: the width).", rich_help_panel=_FRAMING),
    fit: Optional[FitMode] = typer.Option(
        None, help="On a fixed canvas: pad (default: letterbox, then restore the driving aspect), crop (fill and cut), "
        "stretch (distort).", rich_help_panel=_FRAMING,
    ),
    align: Optional[bool] = typer.Option(
        None, "--align/--no-align", help="Fit the driving skeleton to the reference body (default for keypoints; pose maps stay as drawn).",
        rich_help_panel=_FRAMING,
    ),
    face: bool = typer.Option(True, "--face/--no-face", help="Draw face landmarks in the pose maps.", rich_help_panel=_FRAMING),
    hands: bool = typer.Option(True, "--hands/--no-hands", help="Draw hands in the pose maps.", rich_help_panel=_FRAMING),
    pose_size: Optional[str] = typer.Option(
        None, help="WxH canvas of OpenPose JSON that has none (CMU OpenPose); default: the keypoints' extent.", rich_help_panel=_FRAMING,
    ),
    max_frames: Optional[int] = typer.Option(None, help="Use only the first N driving frames (after --fps).", rich_help_panel=_FRAMING),
    seed: int = typer.Option(0, help="Seed of the initial noise.", rich_help_panel=_GENERATION),
    noise: Optional[NoiseMode] = typer.Option(
        None, help="Initial noise: shared by all frames, a draw per-frame, or one window-long draw tiled over the video "
        "(default: shared, with a motion module too: docs/motion.md).", rich_help_panel=_GENERATION,
    ),
    batch_size: int = typer.Option(4, help="Frames denoised together.", rich_help_panel=_GENERATION),
    steps: Optional[int] = typer.Option(None, help="Denoising steps (default: the model's recommendation, else 50).", rich_help_panel=_GENERATION),
    guidance: Optional[float] = typer.Option(
        None, help="Classifier-free guidance scale (default: the model's recommendation, else 7).", rich_help_panel=_GENERATION
    ),
    guidance_mode: GuidanceMode = typer.Option(
        GuidanceMode.image, help="image: guide on reference+pose (MagicPose default); text needs a prompt, which retarget "
        "has not, so it is refused.", rich_help_panel=_GENERATION,
    ),
    scheduler: Optional[Scheduler] = typer.Option(
        None, help="ddim, or dpm (DPM-Solver++ 2M), dpm-karras (with Karras sigmas), unipc for fewer steps; dpm-1 "
        "(first order) for very few (default: the model's recommendation, else ddim).", rich_help_panel=_GENERATION,
    ),
    preset: Optional[Preset] = typer.Option(
        None, help="quality (default: the model's schedule), balanced (under half its network evaluations per frame), "
        "fast (a quarter); measured costs and quality in docs/speed.md. Options given here override the preset's.",
        rich_help_panel=_GENERATION,
    ),
    guidance_interval: Optional[Tuple[float, float]] = typer.Option(
        None, metavar="LO HI", help="Guide only the steps whose noise level t/T (0 clean, 1 pure noise) is within "
        "[LO, HI]; the unconditional UNet is not run elsewhere (default: 0 1, every step).", rich_help_panel=_GENERATION,
    ),
    deep_reuse: Optional[int] = typer.Option(
        None, help="Run the UNet's and ControlNet's deep blocks every N-th step only, reusing their features "
        "between (DeepCache; without a motion module only; default 1: every step).", rich_help_panel=_GENERATION,
    ),
    appearance_reuse: Optional[int] = typer.Option(
        None, help="Run the appearance model every N-th step only, reusing its features between (default 1).",
        rich_help_panel=_GENERATION,
    ),
    motion_module: Optional[str] = typer.Option(
        None, help="AnimateDiff motion module: a MotionAdapter folder or hub id (guoyww/animatediff-motion-adapter-v1-5-2), "
        "or an original checkpoint (mm_sd_v15_v2.ckpt, v3_sd15_mm.ckpt, hub owner/name/file.ckpt). Default: "
        "$MAGICPOSE_MOTION_MODULE, then `motion_module` in the config file; else none.", rich_help_panel=_MOTION,
    ),
    no_motion: bool = typer.Option(False, "--no-motion", help="Run without a motion module, even a configured one.", rich_help_panel=_MOTION),
    context_frames: Optional[int] = typer.Option(
        None, help="Frames the motion module sees at once (default 16, the modules' training length).", rich_help_panel=_MOTION
    ),
    context_overlap: Optional[int] = typer.Option(None, help="Frames shared by consecutive windows (default 4).", rich_help_panel=_MOTION),
    context_fusion: Optional[ContextFusion] = typer.Option(
        None, help="How overlapping windows are blended: pyramid (default; edge frames count least) or flat.", rich_help_panel=_MOTION
    ),
    motion_scale: Optional[float] = typer.Option(
        None, help="0..1: the motion module's output blended with its input (default 1; lower: more per-frame detail, "
        "less smoothing).", rich_help_panel=_MOTION,
    ),
    face_pass: Optional[bool] = typer.Option(
        None, "--face-pass/--no-face-pass", help="After the main pass, redraw each frame's face at the face canvas size with the "
        "reference's own face as the appearance (needs keypoints: a video or OpenPose JSON; default: the model's "
        "recommendation, else off).", rich_help_panel=_FACE,
    ),
    face_strength: Optional[float] = typer.Option(
        None, help="0..1: how far back into the noise the face crop goes (0 keeps the main pass's face; default: the model's "
        "recommendation, else 0.5).", rich_help_panel=_FACE,
    ),
    face_size: Optional[int] = typer.Option(
        None, help="Side of the square canvas the face is redrawn on (multiple of 64; default: the model's canvas size, else 512).",
        rich_help_panel=_FACE,
    ),
    face_margin: Optional[float] = typer.Option(
        None, help="Room around the head in the face box, each side, as a fraction of the head's size (default 0.5).", rich_help_panel=_FACE
    ),
    reference_pose: Optional[Path] = typer.Option(
        None, help="OpenPose JSON of the reference photo: where the face pass finds its face (default: the keypoints found "
        "to align the poses, else detected).", rich_help_panel=_FACE,
    ),
    device: Device = typer.Option(Device.auto, help="auto: cuda, else mps, else cpu.", rich_help_panel=_MEMORY),
    dtype: Precision = typer.Option(Precision.auto, help="auto: fp16 on CUDA, else fp32; bf16 also on the CPU.", rich_help_panel=_MEMORY),
    vae_slicing: bool = typer.Option(False, help="Decode frames one at a time (less GPU memory).", rich_help_panel=_MEMORY),
    vae_tiling: bool = typer.Option(False, help="Decode in tiles (less GPU memory at high resolution).", rich_help_panel=_MEMORY),
    cpu_offload: bool = typer.Option(False, help="Keep models on the CPU until needed (small GPUs).", rich_help_panel=_MEMORY),
    fps: Optional[float] = typer.Option(
        None, help="Resample a driving video to this frame rate (frames dropped or repeated; same duration, audio in "
        "sync; default: the video's). Folders of pose maps or JSON without an extract-pose manifest are played at it (default 30).",
        rich_help_panel=_OUTPUT,
    ),
    audio: bool = typer.Option(True, "--audio/--no-audio", help="Copy the driving video's audio track.", rich_help_panel=_OUTPUT),
    grid: bool = typer.Option(False, help="Write reference | pose | result side by side.", rich_help_panel=_OUTPUT),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists.", rich_help_panel=_OUTPUT),
    force: bool = typer.Option(False, help="Regenerate every frame instead of reusing cached ones.", rich_help_panel=_OUTPUT),
    frames_dir: Optional[Path] = typer.Option(
        None, help="Also keep the finished frames as PNGs in this folder (its earlier frames from magicpose are replaced).",
        rich_help_panel=_OUTPUT,
    ),
    cache_dir: Optional[Path] = typer.Option(
        None, help="Cache root for frames and converted models (default $MAGICPOSE_CACHE or ~/.cache/magicpose).",
        rich_help_panel=_OUTPUT,
    ),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Make the person in REF perform the motion of DRIVING, written to OUT as an H.264 mp4.

    \b
    Several GPUs share the frames of one video when launched as several processes, one per GPU:
      accelerate launch --num_processes N -m magicpose_cli retarget REF DRIVING -o OUT.mp4 ...
      torchrun --standalone --nproc_per_node N -m magicpose_cli retarget REF DRIVING -o OUT.mp4 ...
    With a motion module they share each step's context windows. The video has the same bytes as on
    one process, and a stopped run resumes on any number of them (docs/several-gpus.md).
    """
    options = RetargetOptions(
        model=model, size=size, width=width, height=height, fit=fit, align=align, face=face, hands=hands,
        pose_size=parse_pose_size(pose_size) if pose_size else None, max_frames=max_frames, seed=seed, batch_size=batch_size, steps=steps, guidance=guidance,
        guidance_mode=guidance_mode, scheduler=scheduler, preset=preset, guidance_interval=guidance_interval,
        deep_reuse=deep_reuse, appearance_reuse=appearance_reuse, device=device, dtype=dtype,
        vae_slicing=vae_slicing, vae_tiling=vae_tiling, cpu_offload=cpu_offload, fps=fps, audio=audio,
        grid=grid, overwrite=overwrite, force=force, frames_dir=frames_dir, cache_root=cache_dir, noise=noise,
        motion_module=motion_module, no_motion=no_motion, context_frames=context_frames, context_overlap=context_overlap,
        context_fusion=context_fusion, motion_scale=motion_scale, face_pass=face_pass, face_strength=face_strength,
        face_size=face_size, face_margin=face_margin, reference_pose=reference_pose,
    )  # fmt: skip
    summary = retarget(reference, driving, output, options, console=console, on_notice=console.print, on_detail=detail)
    print_summary(summary)
    report_output(summary.output)


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
    detail("timings: " + ", ".join(f"{part} {seconds:.1f} s" for part, seconds in summary.timings.items()))
