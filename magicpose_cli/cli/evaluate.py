"""`magicpose evaluate GENERATED GROUND_TRUTH` and `magicpose evaluate --dataset DIR -o RUN`: the options,
handed to magicpose_cli.scoring and magicpose_cli.evaluation_run."""

from __future__ import annotations

import math
import re
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from magicpose_cli.cli.app import WrongUsage, command, console, detail, report_output
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.metrics import ALL_METRICS, HIGHER_IS_BETTER
from magicpose_cli.choices import Device, Precision, Scheduler

if TYPE_CHECKING:  # the metrics load only when the command runs
    from magicpose_cli.scoring import EvaluationReport

_METRICS = "Metrics and weights"
_PROTOCOL = "Test protocol (--dataset)"
_OUTPUT = "Output"
DESCRIPTIONS = {
    "fid": "the paper's (pytorch-fid)",
    "ssim": "the paper's (grey)",
    "psnr_disco": "as published (uint8 bug)",
    "psnr": "correct",
    "lpips_disco": "as published ([0,1] input)",
    "lpips": "correct ([-1,1] input)",
    "l1_disco": "as published (/ H*W)",
    "l1": "mean |a-b| in [0,1]",
    "face_cos": "ArcFace cosine",
    "fid_vid": "the paper's (3D ResNet-50)",
    "fvd": "I3D, 16-frame clips",
    "temporal_error": "frame changes, L1",
    "temporal_psnr": "frame changes, PSNR",
    "flicker_excess": "extra frame change",
    "face_psnr": "in the face box",
    "face_ssim": "in the face box (grey)",
    "face_lpips": "in the face box",
    "face_temporal_error": "frame changes in the face box",
}


class GroundTruth(str, Enum):
    real = "real"
    vae = "vae"


def parse_metrics(text: str | None) -> tuple[str, ...] | None:
    return tuple(name for name in re.split(r"[,\s]+", text) if name) if text else None


def format_value(name: str, value: float) -> str:
    if math.isinf(value) or math.isnan(value):
        return str(value)
    if name == "l1_disco":
        return f"{value:.3g}"
    return f"{value:.2f}" if name in ("fid", "fid_vid", "fvd", "psnr", "psnr_disco", "temporal_psnr", "face_psnr") else f"{value:.4f}"


def check_report_path(path: Path | None, overwrite: bool) -> None:
    if path is None:
        return
    if path.is_dir():
        raise MagicPoseError(f"{path} is a folder; give a file name for the report")
    if path.exists() and not overwrite:
        raise MagicPoseError(f"{path} exists; pass --overwrite to replace it")


def print_report(report: EvaluationReport) -> None:
    table = Table(title=f"{report.frames} frames, {len(report.videos)} video(s)")
    for column, justify in (("metric", "left"), ("value", "right"), ("paper", "right"), ("", "left")):
        table.add_column(column, justify=justify)
    for name in ALL_METRICS:
        if name not in report.metrics and name not in report.skipped:
            continue
        value = format_value(name, report.metrics[name]) if name in report.metrics else "[yellow]skipped[/]"
        paper = f"{report.paper[name]:g}" if name in report.paper else ""
        table.add_row(f"{name} {'↑' if name in HIGHER_IS_BETTER else '↓'}", value, paper, DESCRIPTIONS[name])
    console.print(table)
    reasons: dict[str, list[str]] = {}
    for name, reason in report.skipped.items():
        reasons.setdefault(reason, []).append(name)
    for reason, names in reasons.items():
        console.print(f"[yellow]skipped {', '.join(names)}:[/] {reason}", highlight=False, soft_wrap=True)
    for line in report.notes + [f"{key.replace('_', ' ')}: {value}" for key, value in report.counts.items()]:
        console.print(f"[dim]{line}[/]", highlight=False, soft_wrap=True)


def protocol_settings(given: dict, model: Path | None, cache_dir: Path | None, device: Device):
    """The protocol's settings: the original's, with what was given."""
    from magicpose_cli.evaluation_run import ProtocolSettings

    chosen = {name: value for name, value in given.items() if value is not None}
    return ProtocolSettings(model=model, cache_root=cache_dir, device=device, **chosen)


@command("evaluate")
def evaluate_command(
    generated: Optional[Path] = typer.Argument(
        None, help="Generated frames: a folder of frames, a folder of per-video frame folders or videos, or a video."
    ),
    ground_truth: Optional[Path] = typer.Argument(None, help="The ground truth in the same shape; frames pair up by file name."),
    metrics: Optional[str] = typer.Option(None, help=f"Comma-separated (default: every one that can run): {', '.join(ALL_METRICS)}.", rich_help_panel=_METRICS),
    weights_dir: Optional[Path] = typer.Option(
        None, help="Folder of resnet-50-kinetics.pth (fid_vid), i3d_pretrained_400.pt (fvd) and w600k_r50.onnx (face_cos); "
        "default $MAGICPOSE_EVAL_WEIGHTS. Inception and VGG16 are read from torch hub's folder ($TORCH_HOME).", rich_help_panel=_METRICS,
    ),
    face_model: Optional[Path] = typer.Option(None, help="An ArcFace ONNX file instead of WEIGHTS_DIR/w600k_r50.onnx.", rich_help_panel=_METRICS),
    annotator_dir: Optional[Path] = typer.Option(None, help="DWPose files for face landmarks where MediaPipe is not installed.", rich_help_panel=_METRICS),
    device: Device = typer.Option(Device.auto, help="auto: cuda, else mps, else cpu (networks and generation).", rich_help_panel=_METRICS),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the scores as JSON.", rich_help_panel=_OUTPUT),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write the per-video scores as CSV.", rich_help_panel=_OUTPUT),
    overwrite: bool = typer.Option(False, help="Replace --json / --csv files that exist.", rich_help_panel=_OUTPUT),
    dataset: Optional[Path] = typer.Option(
        None, help="Run the test protocol on this data set: disco_test_set/ + pose_map_disco_test_set/, <video>/frames + "
        "<video>/poses folders, or video files.", rich_help_panel=_PROTOCOL,
    ),
    model: Optional[Path] = typer.Option(None, help="Model to generate with (as retarget's --model).", rich_help_panel=_PROTOCOL),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run folder: frames, videos, metrics.json (resumes).", rich_help_panel=_PROTOCOL),
    videos: Optional[Path] = typer.Option(None, help="Text file of the video names to use, one a line (default: all).", rich_help_panel=_PROTOCOL),
    gt: GroundTruth = typer.Option(GroundTruth.real, help="real frames, or their VAE round trip as the original scored.", rich_help_panel=_PROTOCOL),
    size: Optional[int] = typer.Option(None, help="Square generation size (default 512).", rich_help_panel=_PROTOCOL),
    steps: Optional[int] = typer.Option(None, help="Denoising steps (default 50).", rich_help_panel=_PROTOCOL),
    guidance: Optional[float] = typer.Option(None, help="Guidance scale (default 7).", rich_help_panel=_PROTOCOL),
    seed: Optional[int] = typer.Option(None, help="Seed (default 42).", rich_help_panel=_PROTOCOL),
    scheduler: Optional[Scheduler] = typer.Option(None, help="Sampler (default ddim).", rich_help_panel=_PROTOCOL),
    batch_size: Optional[int] = typer.Option(None, help="Frames denoised together (default 4).", rich_help_panel=_PROTOCOL),
    max_frames: Optional[int] = typer.Option(None, help="Generate at most N frames per video.", rich_help_panel=_PROTOCOL),
    dtype: Optional[Precision] = typer.Option(None, help="As retarget's --dtype.", rich_help_panel=_PROTOCOL),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache root for generated frames (as retarget's).", rich_help_panel=_PROTOCOL),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Score generated frames against the ground truth with the paper's metrics, the published variants
    beside the corrected ones (docs/evaluation.md); or, with --dataset, generate the test set first."""
    for path in (json_path, csv_path):
        check_report_path(path, overwrite)
    protocol = {"size": size, "steps": steps, "guidance": guidance, "seed": seed, "scheduler": scheduler,
                "batch_size": batch_size, "max_frames": max_frames, "dtype": dtype}  # fmt: skip
    check_arguments(generated, ground_truth, dataset, output, {**protocol, "model": model, "videos": videos}, gt)
    from magicpose_cli.scoring import EvaluationOptions

    options = EvaluationOptions(parse_metrics(metrics), weights_dir, face_model, annotator_dir, device.value)
    if dataset is None:
        report = score_folders(generated, ground_truth, options)
    else:
        from magicpose_cli.evaluation_run import read_video_list, run_protocol

        settings = protocol_settings({**protocol, "ground_truth": gt.value}, model, cache_dir, device)
        report = run_protocol(dataset, output, settings, read_video_list(videos), options, console=console, on_notice=detail)
        console.print(f"[green]run:[/] {output} (metrics.json, metrics_per_video.csv)", highlight=False, soft_wrap=True)
        report_output(output / "metrics.json")
    print_report(report)
    write_reports(report, json_path, csv_path)


def check_arguments(generated, ground_truth, dataset, output, protocol: dict, gt: GroundTruth) -> None:
    """Arguments that do not go together (exit code 2), before anything loads: the two folders, or --dataset
    with -o; the protocol's options only with --dataset, where they do something."""
    if dataset is not None:
        if generated is not None or ground_truth is not None:
            raise WrongUsage("give either GENERATED GROUND_TRUTH or --dataset DIR, not both")
        if output is None:
            raise WrongUsage("--dataset needs -o RUN, the folder for the run's frames and metrics")
        return
    if generated is None or ground_truth is None:
        raise WrongUsage("give GENERATED and GROUND_TRUTH (frame folders or videos), or --dataset DIR -o RUN")
    given = [f"--{name.replace('_', '-')}" for name, value in {**protocol, "output": output}.items() if value is not None]
    given += ["--gt"] if gt is not GroundTruth.real else []
    if given:
        raise WrongUsage(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for --dataset only (generating the test set); leave {'it' if len(given) == 1 else 'them'} out or add --dataset DIR -o RUN")


def score_folders(generated: Path, ground_truth: Path, options) -> EvaluationReport:
    """GENERATED against GROUND_TRUTH, frame by frame."""
    from magicpose_cli.metrics.inputs import match_inputs
    from magicpose_cli.retarget.run import new_progress
    from magicpose_cli.scoring import evaluate_videos

    pairs = match_inputs(generated, ground_truth)
    with new_progress(console) as progress:
        return evaluate_videos(pairs, options, progress)


def write_reports(report: EvaluationReport, json_path: Path | None, csv_path: Path | None) -> None:
    from magicpose_cli.scoring import write_csv, write_json

    if json_path is not None:
        write_json(report, json_path)
        console.print(f"[green]scores:[/] {json_path}", highlight=False, soft_wrap=True)
        report_output(json_path)
    if csv_path is not None:
        write_csv(report, csv_path)
        console.print(f"[green]per-video scores:[/] {csv_path}", highlight=False, soft_wrap=True)
        report_output(csv_path)
