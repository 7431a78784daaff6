"""`magicpose extract-pose`: a video or image folder -> OpenPose JSON, control maps and a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from magicpose_cli.choices import ANNOTATOR_DIR_ENV, DRIVE_HELP, FACE_FROM_HELP, PERSON_HELP, DetectorName, DriveMode
from magicpose_cli.cli.app import command, console, detail, report_output
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import check_exists


@command("extract-pose")
def extract_pose(
    input_path: Path = typer.Argument(..., metavar="INPUT", help="A video file or a folder of images."),
    output_dir: Path = typer.Option(..., "--output", "-o", help="Folder for the JSON files, maps and manifest."),
    start: int = typer.Option(0, help="First frame to use (0-based)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Use at most this many frames."),
    step: int = typer.Option(1, help="Use every STEP-th frame."),
    fps: Optional[float] = typer.Option(None, help="Resample to this frame rate instead of --step."),
    detector: DetectorName = typer.Option(
        DetectorName.AUTO, help="Pose detector; auto: mediapipe if installed, else dwpose if its weights are here."
    ),
    annotator_dir: Optional[Path] = typer.Option(
        None, envvar=ANNOTATOR_DIR_ENV, help="Folder with the dwpose/openpose weight files (dwpose: else fetched from the hub)."
    ),
    face: bool = typer.Option(True, "--face/--no-face", help="Include face landmarks."),
    hands: bool = typer.Option(True, "--hands/--no-hands", help="Include hands."),
    smooth: bool = typer.Option(True, "--smooth/--no-smooth", help="Smooth jitter over time (One-Euro)."),
    smooth_strength: float = typer.Option(1.0, help="Smoothing strength: above 1 smoother, below 1 more responsive."),
    align_to: Optional[Path] = typer.Option(None, "--align-to", help="Fit the skeleton to the person in this image."),
    no_align: bool = typer.Option(False, "--no-align", help="Ignore --align-to: keep the driving proportions."),
    person: str = typer.Option("auto", help=PERSON_HELP),
    drive: DriveMode = typer.Option(DriveMode.ALL, help=DRIVE_HELP + " Needs --align-to."),
    face_from: Optional[Path] = typer.Option(None, help=FACE_FROM_HELP + " Needs --align-to."),
    force: bool = typer.Option(False, help="Recompute everything, ignoring the cache."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Extract OpenPose-style poses (JSON + control maps) from a video or image folder."""
    check_exists(input_path, "input")
    if smooth_strength < 0:
        raise MagicPoseError(f"--smooth-strength must be >= 0 (0: no smoothing), got {smooth_strength}")
    from magicpose_cli.pose.detectors import resolve_detector
    from magicpose_cli.pose.extract import PoseSettings, extract_poses
    from magicpose_cli.video import FrameSelection

    selection = FrameSelection(start=start, max_frames=max_frames, step=step, fps=fps)
    settings = PoseSettings(
        detector=resolve_detector(detector, annotator_dir).value,  # auto decided here, so the summary can say it
        face=face,
        hands=hands,
        smooth=smooth,
        smooth_strength=smooth_strength,
        align_to=None if no_align or align_to is None else str(align_to),
        person=person,
        drive=drive.value,
        face_from=str(face_from) if face_from else None,
    )
    with Progress(
        TextColumn("[bold]extracting poses"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
        transient=True, disable=not console.is_terminal,  # the summary line replaces it; an error stays one line
    ) as progress:
        task = progress.add_task("poses", total=None)
        result = extract_poses(
            input_path,
            output_dir,
            selection,
            settings,
            annotator_dir=annotator_dir,
            force=force,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    frames = len(result.poses)
    if result.from_cache:
        speed = "all from cache"
    else:
        rate = result.detected_now / result.seconds if result.seconds > 0 else 0.0
        speed = f"{result.detected_now} detected now at {rate:.1f} frames/s, {result.reused} reused"
    if result.notice:
        console.print(result.notice, highlight=False)
    console.print(
        f"{frames} frames: {result.detected} detected, {result.filled} filled ({speed}, detector {settings.detector}) "
        f"-> {result.output_dir}",
        highlight=False,
    )
    detail(f"detector {settings.detector} ({'auto: the first one installed' if detector is DetectorName.AUTO else 'given'})")
    report_output(result.output_dir)
