"""`magicpose retarget`: the person of a reference photo performing the motion of a driving video.

The work is a row of small steps, each its own function:
read the reference -> read the driving poses -> align them to the reference -> place both on the
generation canvas -> generate the missing frames batch by batch into the frame cache ->
restore the driving shape (and build the grid) -> encode the mp4 with the driving audio.

Every generated frame goes to the frame cache as soon as its batch is done. Batches are always
cut at the same boundaries and every batch starts from the same shared noise, so a resumed run
produces exactly the bytes an uninterrupted one does.

Memory stays flat in the video's length: only keypoints are kept for the whole video; pose maps
are drawn when a batch (or the cache key's hash) needs them, frames go to the cache as they are
made and are read back one at a time for encoding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from magicpose_cli.encode import EncodeResult, check_output_path, write_video
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_path, default_cache_root
from magicpose_cli.frame_cache import FrameCache, run_key
from magicpose_cli.framing import FitMode, Placement, fit_placement, generation_size, side_by_side
from magicpose_cli.hashing import hash_arrays, hash_file, hash_folder
from magicpose_cli.images import read_image
from magicpose_cli.model_store import locate_model
from magicpose_cli.models.loading import Device, Precision, Scheduler, load_pipeline, resolve_device, resolve_dtype
from magicpose_cli.models.pipeline import GuidanceMode, frame_batches
from magicpose_cli.pose.driving import load_driving_poses


@dataclass
class RetargetOptions:
    """Everything a retarget run can be asked to do differently (the CLI options)."""

    model: Path | None = None
    width: int | None = None
    height: int | None = None
    fit: FitMode = FitMode.pad
    align: bool = True
    face: bool = True
    hands: bool = True
    max_frames: int | None = None
    seed: int = 0
    batch_size: int = 4
    steps: int = 50
    guidance: float = 7.0
    guidance_mode: GuidanceMode = GuidanceMode.image
    scheduler: Scheduler = Scheduler.ddim
    device: Device = Device.auto
    dtype: Precision = Precision.auto
    vae_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False
    fps: float | None = None
    audio: bool = True
    grid: bool = False
    overwrite: bool = False
    force: bool = False
    frames_dir: Path | None = None
    cache_root: Path | None = None


@dataclass(frozen=True)
class Sampling:
    """What decides the generated frames besides model and inputs (all of it goes into the cache key)."""

    seed: int
    batch_size: int
    steps: int
    guidance: float
    guidance_mode: GuidanceMode
    scheduler: Scheduler
    device: str
    dtype: str

    def key(self) -> dict:
        return {name: getattr(value, "value", value) for name, value in asdict(self).items()}


@dataclass
class RetargetSummary:
    output: Path
    frames: int
    generated: int
    cache_hits: int
    seconds: float
    fps: float
    audio_codec: str | None
    model_source: str

    @property
    def seconds_per_frame(self) -> float:
        return self.seconds / self.frames if self.frames else 0.0


def new_progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def retarget(
    reference_path: Path,
    driving_path: Path,
    output_path: Path,
    options: RetargetOptions,
    console: Console | None = None,
    on_notice: Callable[[str], None] | None = None,
    on_batch_saved: Callable[[int, int], None] | None = None,
) -> RetargetSummary:
    """Run the whole retarget.

    ``on_notice`` gets lines worth telling the user (e.g. the demo model is in use);
    ``on_batch_saved(batch_index, num_batches)`` is called after each batch reaches the cache.
    """
    started = time.perf_counter()
    reference_path, driving_path, output_path = Path(reference_path), Path(driving_path), Path(output_path)
    check_output_path(output_path, options.overwrite)
    validate_options(options)
    cache_root = Path(options.cache_root) if options.cache_root else default_cache_root()
    reference = load_reference_image(reference_path)
    model = locate_model(options.model, cache_root)
    if model.notice and on_notice is not None:
        on_notice(model.notice)
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    sampling = Sampling(
        options.seed, options.batch_size, options.steps, options.guidance, GuidanceMode(options.guidance_mode),
        Scheduler(options.scheduler), device.type, str(dtype),
    )  # fmt: skip
    with new_progress(console) as progress:
        driving = load_driving_poses(driving_path, max_frames=options.max_frames, progress=progress, cache_root=cache_root)
        if options.align:
            driving = driving.aligned_to(reference)
        canvas_width, canvas_height = generation_size(options.width, options.height)
        placement = driving.placement(canvas_width, canvas_height, options.fit)
        reference_canvas = place_reference(reference, canvas_width, canvas_height, options.fit)
        pose_maps = driving.pose_maps(placement, face=options.face, hands=options.hands)
        cache = open_frame_cache(cache_root, model.folder, reference_path, reference_canvas, pose_maps, placement.mode, sampling)
        if options.force:
            cache.clear()
        load = partial(
            load_pipeline, model.folder, device, dtype, sampling.scheduler, options.vae_slicing, options.vae_tiling, options.cpu_offload
        )
        generated = generate_missing_frames(load, reference_canvas, pose_maps, cache, sampling, progress, on_batch_saved)
        if options.frames_dir is not None:
            keep_frames(cache, len(pose_maps), placement, Path(options.frames_dir))
        fps = options.fps or driving.fps
        frames = output_frames(cache, len(pose_maps), placement, reference, pose_maps if options.grid else None)
        audio_source = driving_path if options.audio and driving_path.is_file() else None
        encoded = encode_output(frames, len(pose_maps), output_path, fps, audio_source, options.overwrite, progress)
    return RetargetSummary(
        output=output_path,
        frames=encoded.frames,
        generated=generated,
        cache_hits=len(pose_maps) - generated,
        seconds=time.perf_counter() - started,
        fps=fps,
        audio_codec=encoded.audio_codec,
        model_source=model.source,
    )


def validate_options(options: RetargetOptions) -> None:
    """Refuse bad settings before any slow work starts (the enums are checked where they are converted)."""
    checks = [
        (options.batch_size >= 1, f"--batch-size must be at least 1, got {options.batch_size}"),
        (options.steps >= 1, f"--steps must be at least 1, got {options.steps}"),
        (options.fps is None or options.fps > 0, f"--fps must be positive, got {options.fps}"),
        (options.max_frames is None or options.max_frames >= 1, "--max-frames must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise MagicPoseError(message)


def load_reference_image(path: Path) -> np.ndarray:
    """The reference photo as HxWx3 uint8 RGB, read as every command reads images (magicpose_cli.images)."""
    return read_image(path, what="reference image")


def place_reference(reference: np.ndarray, width: int, height: int, fit: FitMode) -> np.ndarray:
    """The reference on the generation canvas; letterbox padding continues its edge pixels."""
    placement = fit_placement(reference.shape[1], reference.shape[0], width, height, fit)
    return placement.place_image(reference, fill="edge")


def open_frame_cache(
    cache_root: Path,
    model_folder: Path,
    reference_path: Path,
    reference_canvas: np.ndarray,
    pose_maps: Sequence[np.ndarray],
    fit: FitMode,
    sampling: Sampling,
) -> FrameCache:
    """The cache folder of this exact run, keyed by everything that decides its frames.

    The pose maps are drawn one by one for the hash, never all held at once.
    """
    settings = {"size": list(reference_canvas.shape[:2]), "fit": FitMode(fit).value, **sampling.key()}
    key = run_key(
        model=hash_folder(model_folder, cache_root),
        reference_file=hash_file(reference_path),
        reference_canvas=hash_arrays([reference_canvas]),
        poses=hash_arrays(pose_maps),
        settings=settings,
    )
    description = {"model": str(model_folder), "reference": str(reference_path), "frames": len(pose_maps), **settings}
    return FrameCache(cache_root, key, description)


def generate_missing_frames(
    load: Callable[[], object],
    reference_canvas: np.ndarray,
    pose_maps: Sequence[np.ndarray],
    cache: FrameCache,
    sampling: Sampling,
    progress: Progress,
    on_batch_saved: Callable[[int, int], None] | None = None,
) -> int:
    """Generate every batch that has a frame missing from the cache; returns the frames generated.

    ``load()`` gives the pipeline (only called when a frame is missing). A batch is regenerated
    whole, from the same shared noise, so every frame is computed exactly as in an
    uninterrupted run and a resumed video has the same bytes.
    """
    num_batches = len(frame_batches(len(pose_maps), sampling.batch_size))
    missing = [index for index in range(len(pose_maps)) if not cache.has(index)]
    frames_task = progress.add_task("denoising frames", total=len(pose_maps), completed=len(pose_maps) - len(missing))
    if not missing:
        return 0
    import torch

    steps_task = progress.add_task("denoising steps", total=sampling.steps)

    def count_step(_pipeline, step_index, _timestep, callback_kwargs):
        progress.update(steps_task, completed=step_index + 1)
        return callback_kwargs

    generated = 0
    batches = load().generate_batches(
        reference_image=reference_canvas,
        pose_maps=pose_maps,
        num_inference_steps=sampling.steps,
        guidance_scale=sampling.guidance,
        guidance_mode=sampling.guidance_mode,
        generator=torch.Generator("cpu").manual_seed(sampling.seed),
        frames_per_batch=sampling.batch_size,
        output_type="np",
        callback_on_step_end=count_step,
        skip_batch=lambda frames: all(cache.has(index) for index in frames),
    )
    for frames, images in batches:
        for index, image in zip(frames, images):
            cache.save(index, to_uint8(image))
        generated += len(frames)
        progress.advance(frames_task, len(frames))
        progress.reset(steps_task, total=sampling.steps)
        if on_batch_saved is not None:
            on_batch_saved(frames.start // sampling.batch_size, num_batches)
    return generated


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float HxWx3 image in [0,1] as uint8, rounding to nearest."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def output_frames(
    cache: FrameCache,
    frame_count: int,
    placement: Placement,
    reference: np.ndarray,
    grid_pose_maps: Sequence[np.ndarray] | None = None,
) -> Iterator[np.ndarray]:
    """The video's frames, read one at a time: generated frames restored to the driving shape, or
    (with ``grid_pose_maps``) reference | pose | result."""
    for index in range(frame_count):
        result = placement.restore(cache.load(index))
        if grid_pose_maps is not None:
            yield side_by_side([reference, placement.restore(grid_pose_maps[index]), result], height=result.shape[0])
        else:
            yield result


def encode_output(
    frames: Iterator[np.ndarray], count: int, path: Path, fps: float, audio_source: Path | None, overwrite: bool, progress: Progress
) -> EncodeResult:
    """Write the mp4 (with the driving audio when ``audio_source`` has some), showing progress."""
    encoding = progress.add_task("encoding", total=count)
    return write_video(
        frames, path, fps=fps, audio_source=audio_source, overwrite=overwrite, on_frame=lambda: progress.advance(encoding)
    )


def keep_frames(cache: FrameCache, frame_count: int, placement: Placement, folder: Path) -> None:
    """Copy the finished frames, restored to the driving shape, to ``--frames-dir`` as PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(frame_count):
        with atomic_path(folder / f"{index:05d}.png") as temporary:
            Image.fromarray(placement.restore(cache.load(index))).save(temporary, format="PNG")
