"""``magicpose evaluate --dataset DIR --model M -o RUN``: the paper's test protocol end to end.

As MagicPose's ``test_tiktok.py`` does on DisCo's test split: for each video the first frame is the
reference and every other frame is generated from its pose, at 512x512 (centre square crop), 50 DDIM
steps, guidance 7, seed 42; frames the original skips as blank (nearly uniform) are skipped too. The
generation is :func:`magicpose_cli.retarget.retarget` on the video's pose maps (or keypoints), so
the frame cache makes an interrupted run resume where it stopped. The ground truth is the real
frame with the same crop, or with ``ground_truth="vae"`` (as the original did) its round trip through
the model's VAE. Then every metric of :mod:`magicpose_cli.scoring`.

RUN holds ``references/``, ``driving/<video>/`` (the target poses), ``generated/<video>/``,
``ground_truth/<video>/`` (and ``ground_truth_vae/``), ``videos/<video>.mp4``, ``run.json`` (the
settings), ``metrics.json`` and ``metrics_per_video.csv``. Frames keep their names in the data set.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_write_text
from magicpose_cli.framing import FitMode, fit_placement
from magicpose_cli.images import save_png, to_uint8
from magicpose_cli.metrics.inputs import VideoPair, match_inputs
from magicpose_cli.models.loading import Device, Precision, Scheduler
from magicpose_cli.scoring import EvaluationOptions, EvaluationReport, evaluate_videos, write_csv, write_json

TEST_FRAMES_DIR, TEST_POSE_MAPS_DIR = "disco_test_set", "pose_map_disco_test_set"
RUN_RECORD = "run.json"
# test_tiktok.py's filter (dataset/tiktok_video_arnold_copy.py): a frame whose channel variances sum
# below 0.3, or whose crop in [-1, 1] has a standard deviation below 0.02, is not generated.
BLANK_VARIANCE, BLANK_STD = 0.3, 0.02


@dataclass
class ProtocolSettings:
    """The generation side of the protocol; the defaults are the original's."""

    model: Path | None = None
    size: int = 512
    steps: int = 50
    guidance: float = 7.0
    seed: int = 42
    scheduler: Scheduler = Scheduler.ddim
    batch_size: int = 4
    ground_truth: str = "real"  # "real", or "vae": the real frame's round trip through the model's VAE
    max_frames: int | None = None  # generated frames per video (None: all)
    device: Device = Device.auto
    dtype: Precision = Precision.auto
    cache_root: Path | None = None


def read_video_list(path: Path | None) -> list[str] | None:
    """Video names, one a line (``#`` starts a comment), or None for every video of the data set."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise MagicPoseError(f"--videos list not found: {path}")
    names = [line.split("#")[0].strip() for line in Path(path).read_text().splitlines()]
    names = [name for name in names if name]
    if not names:
        raise MagicPoseError(f"--videos list {path} names no video")
    return names


def is_blank(frame: np.ndarray, crop: np.ndarray) -> bool:
    """The original's test for a frame too uniform to generate or score."""
    variance = frame.reshape(-1, 3).astype(np.float64).var(axis=0).sum()
    return bool(variance < BLANK_VARIANCE or (crop.astype(np.float64) / 127.5 - 1.0).std(ddof=1) < BLANK_STD)


def centre_crop(frame: np.ndarray, size: int) -> np.ndarray:
    """The square centre crop at ``size`` x ``size``, placed exactly as retarget places the poses (fit crop)."""
    return fit_placement(frame.shape[1], frame.shape[0], size, size, FitMode.crop).place_image(frame)


def find_test_videos(dataset: Path, names: list[str] | None, report: Callable[[str], None]):
    """The data set's videos (TikTok test layout, our frame folders or video files), those listed only."""
    from magicpose_cli.training.data import find_training_videos

    scan = find_training_videos(dataset, 2, report, original_dirs=(TEST_FRAMES_DIR, TEST_POSE_MAPS_DIR), what="test")
    videos = {video.name: video for video in scan.videos}
    if names is None:
        return list(videos.values()), scan.skipped
    missing = [name for name in names if name not in videos]
    if missing:
        raise MagicPoseError(f"--videos names {missing[0]!r}, which {dataset} has no usable video of ({len(missing)} missing in all)")
    return [videos[name] for name in names], scan.skipped


def _frame_reader(video) -> Callable[[int], np.ndarray]:
    """Reads frame ``position`` of a test video (an image file, or a frame of its video file)."""
    from magicpose_cli.video import FrameSource, read_image

    source = FrameSource(video.source) if not isinstance(video.frames[0], Path) else None
    return lambda position: read_image(video.frames[position]) if source is None else source.frame(video.frames[position])


def _frame_name(video, position: int) -> str:
    frame = video.frames[position]
    return frame.stem if isinstance(frame, Path) else f"{frame:05d}"


def _save_pose(pose, folder: Path, position: int) -> None:
    """A target's pose as retarget reads it: a copied pose-map image or OpenPose JSON, or a FramePose saved as JSON."""
    if isinstance(pose, Path):
        shutil.copyfile(pose, folder / f"{position:05d}{pose.suffix.lower()}")
    else:
        pose.save(folder / f"{position:05d}.json")


def prepare_video(video, run_dir: Path, settings: ProtocolSettings, notes: list[str]) -> list[str] | None:
    """Write the reference, the target poses and the cropped ground truth of one video; the target
    frames' names, or None when its reference is blank."""
    from magicpose_cli.files import atomic_directory

    read = _frame_reader(video)
    reference = read(0)
    if is_blank(reference, centre_crop(reference, settings.size)):
        notes.append(f"{video.name}: skipped, its first frame (the reference) is blank")
        return None
    save_png(run_dir / "references" / f"{video.name}.png", reference)
    names, blank = [], 0
    with atomic_directory(run_dir / "driving" / video.name) as driving, atomic_directory(run_dir / "ground_truth" / video.name) as truth:
        for position in range(1, len(video.frames)):
            if settings.max_frames is not None and len(names) >= settings.max_frames:
                break
            frame = read(position)
            crop = centre_crop(frame, settings.size)
            if is_blank(frame, crop):
                blank += 1
                continue
            _save_pose(video.poses[position], driving, len(names))
            names.append(_frame_name(video, position))
            save_png(truth / f"{names[-1]}.png", crop)
    if blank:
        notes.append(f"{video.name}: {blank} blank frame(s) skipped, as the original does")
    return names


def generate_video(name: str, targets: list[str], run_dir: Path, settings: ProtocolSettings, console, on_notice) -> None:
    """retarget() on the video's target poses at the protocol's settings; the frames land in generated/<video>/ under their names."""
    from magicpose_cli.files import atomic_directory
    from magicpose_cli.retarget import RetargetOptions, retarget

    frames_dir = run_dir / ".frames" / name
    shutil.rmtree(frames_dir, ignore_errors=True)
    options = RetargetOptions(
        model=settings.model, width=settings.size, height=settings.size, fit=FitMode.crop, align=False, seed=settings.seed,
        batch_size=settings.batch_size, steps=settings.steps, guidance=settings.guidance, scheduler=settings.scheduler,
        device=settings.device, dtype=settings.dtype, audio=False, overwrite=True, frames_dir=frames_dir,
        cache_root=settings.cache_root,
    )  # fmt: skip
    retarget(run_dir / "references" / f"{name}.png", run_dir / "driving" / name, run_dir / "videos" / f"{name}.mp4", options,
             console=console, on_notice=on_notice)  # fmt: skip
    with atomic_directory(run_dir / "generated" / name) as generated:
        for position, target in enumerate(targets):
            os.replace(frames_dir / f"{position:05d}.png", generated / f"{target}.png")
    shutil.rmtree(frames_dir, ignore_errors=True)


def write_vae_ground_truth(names: list[str], run_dir: Path, settings: ProtocolSettings, progress=None) -> None:
    """ground_truth_vae/<video>/: each cropped real frame through the model's VAE and back, as the original's "GT"."""
    import torch
    from diffusers import AutoencoderKL

    from magicpose_cli.cache import check_cache_root
    from magicpose_cli.evaluation import vae_reconstruction
    from magicpose_cli.files import atomic_directory, default_cache_root
    from magicpose_cli.model_store import locate_model
    from magicpose_cli.models.loading import resolve_device
    from magicpose_cli.video import list_images, read_image

    cache_root = check_cache_root(Path(settings.cache_root) if settings.cache_root else default_cache_root())
    folder = locate_model(settings.model, cache_root).folder
    vae = AutoencoderKL.from_pretrained(folder / "vae").to(resolve_device(settings.device), torch.float32).eval()
    frames = {name: list_images(run_dir / "ground_truth" / name) for name in names}
    task = progress.add_task("VAE ground truth", total=sum(map(len, frames.values()))) if progress is not None else None
    for name, paths in frames.items():
        with atomic_directory(run_dir / "ground_truth_vae" / name) as output:
            for path in paths:
                save_png(output / path.name, to_uint8(vae_reconstruction(vae, read_image(path)[None])[0]))
                if task is not None:
                    progress.advance(task)


def check_run_dir(run_dir: Path) -> None:
    """RUN may be new, empty, or an earlier run's (it resumes); a folder of other files is refused."""
    if run_dir.exists() and not run_dir.is_dir():
        raise MagicPoseError(f"-o {run_dir} is a file, not a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / RUN_RECORD).is_file():
        raise MagicPoseError(f"-o {run_dir} holds files that magicpose evaluate did not write; pick an empty or new folder")


def _video_pairs(run_dir: Path, name: str, truth: str) -> list[VideoPair]:
    pairs = match_inputs(run_dir / "generated" / name, run_dir / truth / name)
    return [replace(pair, name=name if len(pairs) == 1 else f"{name}/{pair.name}") for pair in pairs]


def run_protocol(
    dataset: Path,
    run_dir: Path,
    settings: ProtocolSettings = ProtocolSettings(),
    videos: list[str] | None = None,
    evaluation: EvaluationOptions = EvaluationOptions(),
    console=None,
    on_notice: Callable[[str], None] | None = None,
) -> EvaluationReport:
    """Generate the test frames of ``dataset`` (the ``videos`` listed, else all) into ``run_dir`` and score them."""
    from magicpose_cli.retarget.run import new_progress

    dataset, run_dir = Path(dataset), Path(run_dir)
    check_run_dir(run_dir)
    if settings.ground_truth not in ("real", "vae"):
        raise MagicPoseError(f"--gt must be real or vae, got {settings.ground_truth!r}")
    tested, skipped = find_test_videos(dataset, videos, on_notice or (lambda line: None))
    notes = [f"{name}: skipped, {reason}" for name, reason in skipped]
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"dataset": str(dataset), "videos": [video.name for video in tested], "settings": asdict(settings)}
    atomic_write_text(run_dir / RUN_RECORD, json.dumps(record, indent=2, default=str) + "\n")
    prepared = {}
    for video in tested:
        targets = prepare_video(video, run_dir, settings, notes)
        if targets:
            generate_video(video.name, targets, run_dir, settings, console, on_notice)
            prepared[video.name] = targets
    if not prepared:
        raise MagicPoseError(f"no video of {dataset} has a frame to generate ({'; '.join(notes) or 'all blank'})")
    truth = "ground_truth_vae" if settings.ground_truth == "vae" else "ground_truth"
    with new_progress(console) as progress:
        if settings.ground_truth == "vae":
            write_vae_ground_truth(list(prepared), run_dir, settings, progress)
        pairs = [pair for name in prepared for pair in _video_pairs(run_dir, name, truth)]
        report = evaluate_videos(pairs, evaluation, progress)
    report.notes[:0] = notes
    write_json(report, run_dir / "metrics.json", extra={"protocol": record})
    write_csv(report, run_dir / "metrics_per_video.csv")
    return report
