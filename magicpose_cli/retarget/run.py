"""`magicpose retarget`: the person of a reference photo performing the motion of a driving video.

The work is a row of small steps, each its own function:
read the reference -> read the driving poses -> align them to the reference -> place both on the
generation canvas -> generate the missing frames batch by batch into the frame cache ->
restore the driving shape (and build the grid) -> encode the mp4 with the driving audio.

Every generated frame goes to the frame cache as soon as its batch is done. Batches are always
cut at the same boundaries and every batch starts from the same shared noise, so a resumed run
produces exactly the bytes an uninterrupted one does. Under ``accelerate launch`` or ``torchrun``
the processes deal the missing batches between them (magicpose_cli.distributed): each computes
its own on its own device, all write into the one frame cache, and the main process encodes
once all are done, so the video has the same bytes for any number of processes.

Memory stays flat in the video's length: only keypoints are kept for the whole video; pose maps
are drawn when a batch (or the cache key's hash) needs them, frames go to the cache as they are
made and are read back one at a time for encoding.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import cache as cache_call, partial
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from magicpose_cli.cache import check_cache_root
from magicpose_cli.driving import DrivingPoses, load_driving_poses
from magicpose_cli.distributed import Processes, join_processes, use_threads_of_one_process
from magicpose_cli.encode import EncodeResult, check_output_path
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.frame_cache import FrameCache
from magicpose_cli.files import default_cache_root
from magicpose_cli.framing import FitMode, fit_placement
from magicpose_cli.images import read_image
from magicpose_cli.model_store import locate_model
from magicpose_cli.models.loading import Device, LoadedPipelines, Precision, load_pipeline, resolve_device, resolve_dtype
from magicpose_cli.retarget.face_pass import face_plan_for_run, run_face_pass
from magicpose_cli.retarget.generation import generate_missing_frames, open_frame_cache
from magicpose_cli.retarget.motion import describe_motion, find_motion_module
from magicpose_cli.retarget.options import (
    RetargetOptions,
    check_pose_options,
    describe_settings,
    generation_canvas,
    resolve_sampling,
    vae_tiling_notice,
    validate_options,
)
from magicpose_cli.retarget.outputs import encode_output, keep_frames, output_frames
from magicpose_cli.video import FrameSelection


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
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part of the run, in order
    processes: int = 1  # how many processes shared the work

    @property
    def seconds_per_frame(self) -> float:
        return self.seconds / self.frames if self.frames else 0.0


def new_progress(console: Console | None, shown: bool = True) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not shown,
    )


class Stopwatch:
    """Seconds spent in each named part of a run (``with stopwatch("encoding"): ...``)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, part: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - started


def retarget(
    reference_path: Path,
    driving_path: Path,
    output_path: Path,
    options: RetargetOptions,
    console: Console | None = None,
    on_notice: Callable[[str], None] | None = None,
    on_batch_saved: Callable[[int, int], None] | None = None,
    on_detail: Callable[[str], None] | None = None,
    pipelines: LoadedPipelines | None = None,
    on_state_saved: Callable[[int, int], None] | None = None,
    progress: Progress | None = None,
) -> RetargetSummary:
    """Run the whole retarget, on this process alone or shared by the processes of a launch.

    ``on_notice`` gets lines worth telling the user (e.g. the demo model is in use), ``on_detail``
    lines for the curious (where the model, device and cache are); both, and the progress bars,
    only on the main process. ``on_batch_saved(batch_index, num_batches)`` is called after each
    batch this process made reaches the cache, and with a motion module ``on_state_saved(steps_done,
    steps)`` after each step's state is saved. ``pipelines`` keeps models loaded between runs.
    ``progress``: a rich Progress of the caller's (the app) that gets the tasks (extracting poses,
    denoising frames and steps, encoding) instead of bars drawn on ``console``.
    """
    started = time.perf_counter()
    stopwatch = Stopwatch()
    reference_path, driving_path, output_path = Path(reference_path), Path(driving_path), Path(output_path)
    check_output_path(output_path, options.overwrite)
    validate_options(options)
    cache_root = check_cache_root(Path(options.cache_root) if options.cache_root else default_cache_root())
    reference = load_reference_image(reference_path)
    processes, device = start_processes(options.device)
    if not processes.is_main:
        on_notice = on_detail = None
    with stopwatch("finding the model"):
        model = processes.main_first(lambda: locate_model(options.model, cache_root))
        motion, motion_run = processes.main_first(lambda: find_motion_module(options, model.folder))
    tell(on_notice, describe_sharing(processes, device, motion is not None), model.notice, describe_motion(motion, motion_run))
    dtype = resolve_dtype(options.dtype, device)
    sampling, chosen = resolve_sampling(options, model.recommended, device.type, str(dtype), motion_run)
    tell(on_detail, f"model: {model.folder} ({model.source})", describe_device(options, device, dtype))
    with nullcontext(progress) if progress is not None else new_progress(console, shown=processes.is_main) as progress:
        with stopwatch("driving poses"):  # extracted and aligned once, so every process has the same poses
            driving = processes.broadcast(processes.on_main(lambda: read_driving_poses(driving_path, options, reference, progress, cache_root)))
        placement, reference_fit, canvas_source = generation_canvas(options, model.recommended, driving, reference.shape)
        tiling = vae_tiling_notice(model.folder, placement) if options.vae_tiling else None
        tell(on_notice, driving.notice, describe_settings(placement, canvas_source, chosen), tiling)
        reference_canvas = place_reference(reference, placement.canvas_width, placement.canvas_height, reference_fit)
        pose_maps = driving.pose_maps(placement, face=options.face, hands=options.hands)
        with stopwatch("cache key"):
            cache = open_shared_frame_cache(
                processes, options.force, cache_root, model.folder, reference_path, reference_canvas, pose_maps, placement.mode,
                sampling, motion and motion.path,
            )  # fmt: skip
        tell(on_detail, f"frame cache: {cache.folder}")
        load = cache_call(partial(
            pipelines.get if pipelines is not None else load_pipeline, model.folder, device, dtype, sampling.scheduler, options.vae_slicing,
            options.vae_tiling, options.cpu_offload, motion_module=motion and motion.path,
        ))  # fmt: skip
        with stopwatch("generation"):
            generated = generate_missing_frames(load, reference_canvas, pose_maps, cache, sampling, progress, on_batch_saved, on_state_saved, processes)
        with stopwatch("face pass"):
            cache = face_passed_frames(options, model.recommended, driving, placement, reference, reference_path, load, cache, cache_root,
                                       sampling, progress, processes, on_notice)  # fmt: skip
        with stopwatch("writing the output"):
            encoded = processes.on_main(lambda: write_outputs(cache, pose_maps, placement, reference, driving, driving_path, output_path, options, progress))
    return RetargetSummary(
        output=output_path, frames=encoded.frames if encoded else len(pose_maps), generated=generated, cache_hits=len(pose_maps) - generated,
        seconds=time.perf_counter() - started, fps=driving.fps, audio_codec=encoded.audio_codec if encoded else None,
        model_source=model.source, timings=stopwatch.seconds, processes=processes.count,
    )  # fmt: skip


def face_passed_frames(options: RetargetOptions, recommended, driving: DrivingPoses, placement, reference: np.ndarray, reference_path: Path,
                       load, main: FrameCache, cache_root: Path, sampling, progress, processes: Processes, on_notice) -> FrameCache:  # fmt: skip
    """The cache the output is read from: the face pass's (made now, where missing), or the main frames' where it does not run."""
    plan, lines = processes.broadcast(processes.on_main(lambda: face_plan_for_run(options, recommended, driving, placement, reference, reference_path)))
    tell(on_notice, *lines)
    if plan is None:
        return main
    faces = run_face_pass(load, plan, main, cache_root, sampling, progress, processes, options.force)
    tell(on_notice, plan.summary())
    return faces


def start_processes(device_option: Device | str) -> tuple[Processes, torch.device]:
    """The processes sharing this run and the device this one computes on (its own GPU where there are several)."""
    device = resolve_device(device_option)
    processes = join_processes(device)
    if processes.count > 1 and device.type == "cpu":
        use_threads_of_one_process()  # the same pixels for any number of processes
    return processes, processes.own_device(device)


def describe_sharing(processes: Processes, device: torch.device, with_motion: bool) -> str | None:
    if processes.count == 1:
        return None
    where = "a GPU each" if device.type == "cuda" else "the CPU"
    if with_motion:
        return f"{processes.count} processes share the work on {where}: each step's context windows, then the decoding batches, in turn"
    return f"{processes.count} processes share the work, taking the missing batches in turn, on {where}"


def open_shared_frame_cache(processes: Processes, force: bool, *key_parts) -> FrameCache:
    """The run's frame cache (see ``open_frame_cache``), the same one on every process; emptied first with --force."""
    cache = processes.everywhere(lambda: open_frame_cache(*key_parts))
    if len(set(processes.gather(cache.key))) > 1:
        raise MagicPoseError("the processes of this launch computed different inputs (a cache key each); they must all read the same files")
    if force:
        processes.on_main(cache.clear)
    return cache


def write_outputs(cache, pose_maps, placement, reference, driving: DrivingPoses, driving_path: Path, output_path: Path,
                  options: RetargetOptions, progress: Progress) -> EncodeResult:  # fmt: skip
    """The --frames-dir PNGs when asked for, and the mp4 (with the driving audio unless --no-audio)."""
    if options.frames_dir is not None:
        keep_frames(cache, len(pose_maps), placement, Path(options.frames_dir))
    frames = output_frames(cache, len(pose_maps), placement, reference, pose_maps if options.grid else None, options.grid_height)
    audio_source = driving_path if options.audio and driving_path.is_file() else None
    return encode_output(frames, len(pose_maps), output_path, driving.fps, audio_source, options.overwrite, progress)


def read_driving_poses(driving_path: Path, options: RetargetOptions, reference: np.ndarray, progress: Progress, cache_root: Path) -> DrivingPoses:
    """The driving poses (extracted and cached where the input is a video), fitted to the reference body unless --no-align."""
    driving = load_driving_poses(
        driving_path, FrameSelection(fps=options.fps), options.max_frames, progress=progress, cache_root=cache_root,
        pose_size=options.pose_size,
    )  # fmt: skip
    check_pose_options(options, driving)
    if options.align is not False and driving.keypoints is not None:
        driving = driving.aligned_to(reference)
    return driving


def describe_device(options: RetargetOptions, device, dtype) -> str:
    """Where the networks run, and whether that was asked for or chosen."""
    device_source = "auto" if Device(options.device) is Device.auto else "given"
    dtype_source = "auto" if Precision(options.dtype) is Precision.auto else "given"
    return f"device {device} ({device_source}), dtype {str(dtype).removeprefix('torch.')} ({dtype_source})"


def tell(on_notice: Callable[[str], None] | None, *lines: str | None) -> None:
    """Pass the lines that say something to ``on_notice``."""
    for line in lines:
        if line and on_notice is not None:
            on_notice(line)


def load_reference_image(path: Path) -> np.ndarray:
    """The reference photo as HxWx3 uint8 RGB, read as every command reads images (magicpose_cli.images)."""
    return read_image(path, what="reference image")


def place_reference(reference: np.ndarray, width: int, height: int, fit: FitMode) -> np.ndarray:
    """The reference on the generation canvas; letterbox padding continues its edge pixels."""
    placement = fit_placement(reference.shape[1], reference.shape[0], width, height, fit)
    return placement.place_image(reference, fill="edge")

