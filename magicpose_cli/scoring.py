"""The library behind ``magicpose evaluate``: every metric that can run, over matched videos, in one pass.

:func:`evaluate_videos` builds a scorer per metric family (:mod:`magicpose_cli.metrics.scorers`);
a family whose network weights, face model or package is missing is skipped with the one-line
reason, and the others run. The frames of each video are read once and handed to every scorer.
:func:`write_json` and :func:`write_csv` save the report.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_write_text
from magicpose_cli.hashing import hash_file
from magicpose_cli.metrics import ALL_METRICS, FACE_REGION_METRICS, PAPER_TIKTOK
from magicpose_cli.metrics.inputs import VideoPair
from magicpose_cli.metrics.scorers import (
    IMAGE_METRICS,
    TEMPORAL_METRICS,
    ClipScorer,
    FaceRegionScorer,
    FaceScorer,
    FidScorer,
    ImageScorer,
    LpipsScorer,
    Results,
    Scorer,
    TemporalScorer,
)

_PIP_NAMES = {"pytorch_fid": "pytorch-fid", "lpips": "lpips", "scipy": "scipy", "onnxruntime": "onnxruntime"}


@dataclass
class EvaluationOptions:
    metrics: tuple[str, ...] | None = None  # None: every metric that can run
    weights_dir: Path | None = None  # I3D, 3D ResNet-50 and ArcFace files
    face_model: Path | None = None  # an ArcFace ONNX other than weights_dir/w600k_r50.onnx
    annotator_dir: Path | None = None  # DWPose files, where MediaPipe is not installed (face landmarks)
    device: str = "auto"
    clip_batch: int = 4  # clips per video-network batch


@dataclass
class EvaluationReport:
    metrics: dict[str, float]
    videos: dict[str, dict[str, float]]
    frames: int
    skipped: dict[str, str]
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    weights: dict[str, str] = field(default_factory=dict)  # file name -> SHA-256 of the file used
    paper: dict[str, float] = field(default_factory=lambda: dict(PAPER_TIKTOK))

    def as_json(self) -> dict:
        return asdict(self)


def check_metrics(requested: tuple[str, ...] | None) -> tuple[str, ...]:
    """The metrics to compute, in display order, or a one-line error naming an unknown one."""
    if not requested:
        return ALL_METRICS
    unknown = [name for name in requested if name not in ALL_METRICS]
    if unknown:
        raise MagicPoseError(f"unknown metric {unknown[0]!r}; choose from {', '.join(ALL_METRICS)}")
    return tuple(name for name in ALL_METRICS if name in requested)


class SharedParts:
    """What several metric families use, made once per evaluation: the face-landmark detector, LPIPS."""

    def __init__(self, options: EvaluationOptions, device, weights: dict[str, str]):
        self.options, self.device, self.weights = options, device, weights
        self._landmarks = self._lpips = None

    def face_landmarks(self):
        if self._landmarks is None:
            from magicpose_cli.metrics.face import FaceLandmarks
            from magicpose_cli.pose.detectors import DetectorName, make_detector

            self._landmarks = FaceLandmarks(make_detector(DetectorName.AUTO, self.options.annotator_dir, tracking=False))
        return self._landmarks

    def lpips(self):
        if self._lpips is None:
            from magicpose_cli.metrics.perceptual import load_lpips
            from magicpose_cli.metrics.weights import VGG16

            self._lpips, self.weights[VGG16.name] = load_lpips(self.device)
        return self._lpips


def _lpips(wanted, shared: SharedParts):
    return LpipsScorer(wanted, shared.lpips(), shared.device)


def _fid(wanted, shared: SharedParts):
    from magicpose_cli.metrics.fid import load_inception
    from magicpose_cli.metrics.weights import FID_INCEPTION

    network, shared.weights[FID_INCEPTION.name] = load_inception(shared.device)
    return FidScorer(network, shared.device)


def _clips(metric_name, wanted, shared: SharedParts):
    from magicpose_cli.metrics.video import FID_VID, FVD, load_clip_network
    from magicpose_cli.metrics.weights import resolve_weights_dir

    metric = FID_VID if metric_name == "fid_vid" else FVD
    network, shared.weights[metric.weight.name] = load_clip_network(metric, resolve_weights_dir(shared.options.weights_dir), shared.device)
    return ClipScorer(metric, network, shared.device, shared.options.clip_batch)


def _face(wanted, shared: SharedParts):
    from magicpose_cli.metrics.face import FaceCos, FaceEmbedder, face_model_path
    from magicpose_cli.metrics.weights import resolve_weights_dir

    path = face_model_path(shared.options.face_model, resolve_weights_dir(shared.options.weights_dir))
    embedder = FaceEmbedder(path)
    shared.weights[path.name] = hash_file(path)
    return FaceScorer(FaceCos(embedder, shared.face_landmarks()))


def _face_region(wanted, shared: SharedParts):
    """The face-box scores; face_lpips alone is skipped (with its reason) where LPIPS cannot load."""
    unavailable, lpips = {}, None
    if "face_lpips" in wanted:
        try:
            from magicpose_cli.metrics.perceptual import lpips_of_crops

            lpips = partial(lpips_of_crops, shared.lpips(), shared.device)
        except (MagicPoseError, ImportError) as error:
            unavailable["face_lpips"] = skip_reason(error)
    return FaceRegionScorer(wanted, shared.face_landmarks(), lpips, unavailable)


def skip_reason(error: Exception) -> str:
    """Why a metric cannot run, in one line: the error's message, or which package to install."""
    if isinstance(error, ImportError):
        package = _PIP_NAMES.get((error.name or "").split(".")[0], error.name)
        return f"needs the {package} package: pip install {package}"
    return str(error)


FAMILIES = (
    (tuple(IMAGE_METRICS), lambda wanted, _: ImageScorer(wanted)),
    (("lpips", "lpips_disco"), _lpips),
    (("fid",), _fid),
    (("fid_vid",), partial(_clips, "fid_vid")),
    (("fvd",), partial(_clips, "fvd")),
    (("face_cos",), _face),
    (FACE_REGION_METRICS, _face_region),
    (tuple(TEMPORAL_METRICS), lambda wanted, _: TemporalScorer(wanted)),
)


def build_scorers(selected: tuple[str, ...], options: EvaluationOptions, device) -> tuple[list[Scorer], dict[str, str], dict[str, str]]:
    """The scorers that can run, the reason for each selected metric that cannot, and the weights used."""
    scorers, skipped, weights = [], {}, {}
    shared = SharedParts(options, device, weights)
    for family, build in FAMILIES:
        wanted = [name for name in selected if name in family]
        if not wanted:
            continue
        try:
            scorers.append(build(wanted, shared))
        except (MagicPoseError, ImportError) as error:
            skipped.update(dict.fromkeys(wanted, skip_reason(error)))
    return scorers, skipped, weights


def evaluate_videos(pairs: list[VideoPair], options: EvaluationOptions = EvaluationOptions(), progress=None) -> EvaluationReport:
    """Every selected metric that can run, over ``pairs``; ``progress`` (rich) shows the frames scored."""
    from magicpose_cli.models.loading import resolve_device

    selected = check_metrics(options.metrics)
    device = resolve_device(options.device)
    scorers, skipped, weights = build_scorers(selected, options, device)
    if not scorers:
        raise MagicPoseError("no metric can run: " + "; ".join(f"{name}: {reason}" for name, reason in skipped.items()))
    total = sum(len(pair) for pair in pairs)
    task = progress.add_task("scoring frames", total=total) if progress is not None else None
    results = Results(skipped=skipped)
    try:
        for pair in pairs:
            for scorer in scorers:
                scorer.start_video(pair.name)
            for number, generated, target in pair.frames():
                for scorer in scorers:
                    scorer.add(number, generated, target)
                if task is not None:
                    progress.advance(task)
        for scorer in scorers:
            scorer.finish(results)
    finally:
        for scorer in scorers:
            scorer.close()
    videos = {pair.name: {"frames": len(pair), **results.videos.get(pair.name, {})} for pair in pairs}
    metrics = {name: results.metrics[name] for name in ALL_METRICS if name in results.metrics}
    skipped = {name: results.skipped[name] for name in ALL_METRICS if name in results.skipped}
    return EvaluationReport(metrics, videos, total, skipped, results.counts, results.notes, weights)


def write_json(report: EvaluationReport, path: Path, extra: dict | None = None) -> None:
    atomic_write_text(Path(path), json.dumps({**report.as_json(), **(extra or {})}, indent=2, default=str) + "\n")


def write_csv(report: EvaluationReport, path: Path) -> None:
    """One row per video: its frame count and every metric that has a per-video value."""
    columns = [name for name in ALL_METRICS if any(name in values for values in report.videos.values())]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["video", "frames", *columns])
    for video, values in report.videos.items():
        writer.writerow([video, values["frames"], *(repr(values[name]) if name in values else "" for name in columns)])
    atomic_write_text(Path(path), text.getvalue())
