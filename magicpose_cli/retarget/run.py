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
from dataclasses import dataclass, field, replace
from functools import cache as cache_call, partial
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from magicpose_cli.cache import check_cache_root
from magicpose_cli.driving import DrivingPoses, PoseMaps, load_driving_poses
from magicpose_cli.distributed import Processes, join_processes
from magicpose_cli.encode import EncodeResult, check_output_path
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.frame_cache import FrameCache
from magicpose_cli.files import check_exists, default_cache_root
from magicpose_cli.framing import FitMode, Placement, fit_placement
from magicpose_cli.hashing import hash_file
from magicpose_cli.images import read_image
from magicpose_cli.model_store import ModelLocation, locate_model
from magicpose_cli.pose.drive import DriveMode
from magicpose_cli.pose.extract import PoseSettings
from magicpose_cli.models.loading import Device, LoadedPipelines, Precision, load_pipeline, resolve_device, resolve_dtype
from magicpose_cli.retarget.face_pass import face_plan_for_run, run_face_pass
from magicpose_cli.models.plugin_options import Plugins
from magicpose_cli.plugin_store import locate_plugins
from magicpose_cli.retarget.generation import generate_missing_frames, open_frame_cache
from magicpose_cli.motion_store import MotionLocation
from magicpose_cli.retarget.motion import describe_motion, find_motion_module
from magicpose_cli.retarget.options import (
    RetargetOptions,
    Sampling,
    check_pose_options,
    describe_settings,
    generation_canvas,
    resolve_sampling,
    vae_tiling_notice,
    validate_options,
)
from magicpose_cli.retarget.outputs import (
    check_still_frames,
    check_still_output,
    encode_output,
    frames_to_read,
    is_still_output,
    keep_frames,
    output_frames,
    write_still,
)
from magicpose_cli.threads import use_threads_of_one_process
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
    check_still_output(driving_path, output_path)
    validate_options(options)
    cache_root = check_cache_root(Path(options.cache_root) if options.cache_root else default_cache_root())
    reference = load_reference_image(reference_path)
    check_exists(driving_path, "driving input")
    processes, device = start_processes(options.device)
    if not processes.is_main:
        on_notice = on_detail = None
    with stopwatch("finding the model"):
        run = find_run_model(options, cache_root, device, processes, on_notice, on_detail, model_notice=False)
    with nullcontext(progress) if progress is not None else new_progress(console, shown=processes.is_main) as progress:
        with stopwatch("driving poses"):  # extracted and aligned once, so every process has the same poses
            reading = replace(options, max_frames=frames_to_read(output_path, options.max_frames))
            driving = processes.broadcast(processes.on_main(lambda: read_driving_poses(driving_path, reading, reference, progress, cache_root)))
        check_still_frames(output_path, len(driving))
        tell(on_notice, run.model.notice if pipelines is None or not pipelines.holds(run.model.folder) else None)  # once per model load
        made = generate_frames(
            reference, ReferenceIdentity(hash_file(reference_path), str(reference_path)), driving, options, run, progress,
            cache_root=cache_root, processes=processes, pipelines=pipelines, on_notice=on_notice, on_detail=on_detail,
            on_batch_saved=on_batch_saved, on_state_saved=on_state_saved, stopwatch=stopwatch,
        )  # fmt: skip
        with stopwatch("writing the output"):
            encoded = processes.on_main(lambda: write_outputs(made, reference, driving, driving_path, output_path, options, progress))
    return RetargetSummary(
        output=output_path, frames=encoded.frames if encoded else len(made.pose_maps), generated=made.generated,
        cache_hits=len(made.pose_maps) - made.generated, seconds=time.perf_counter() - started, fps=driving.fps,
        audio_codec=encoded.audio_codec if encoded else None, model_source=run.model.source, timings=stopwatch.seconds,
        processes=processes.count,
    )  # fmt: skip


@dataclass(frozen=True)
class RunModel:
    """The model, motion module, device, dtype, sampling settings and plug-ins of a run, found and resolved once."""

    model: ModelLocation
    motion: MotionLocation | None
    device: torch.device
    dtype: torch.dtype
    sampling: Sampling
    chosen: dict[str, tuple[object, str]]  # each sampling setting and where it came from, for the notice
    plugins: Plugins = Plugins()  # another SD 1.5's UNet, VAE, LoRAs, the prompt's text encoder (docs/plug-in.md)


def find_run_model(
    options: RetargetOptions, cache_root: Path, device: torch.device, processes: Processes = Processes(),
    on_notice: Callable[[str], None] | None = None, on_detail: Callable[[str], None] | None = None, model_notice: bool = True,
) -> RunModel:  # fmt: skip
    """Find the model, the motion module and the plug-ins (the main process first: it may convert or fetch them)
    and resolve the sampling settings.
    ``model_notice``: say the model's notice (the demo model is in use) here; retarget says it once its inputs are read."""
    model = processes.main_first(lambda: locate_model(options.model, cache_root))
    motion, motion_run = processes.main_first(lambda: find_motion_module(options, model.folder))
    plugins, base_notice = processes.main_first(lambda: locate_plugins(
        options.base_model, options.base_vae, options.loras, bool(options.prompt or options.negative_prompt), model.folder, cache_root
    ))  # fmt: skip
    tell(
        on_notice, describe_sharing(processes, device, motion is not None), model.notice if model_notice else None,
        describe_motion(motion, motion_run), base_notice,
    )  # fmt: skip
    dtype = resolve_dtype(options.dtype, device)
    sampling, chosen = resolve_sampling(options, model.recommended, device.type, str(dtype), motion_run)
    tell(on_detail, f"model: {model.folder} ({model.source})", describe_device(options, device, dtype))
    return RunModel(model, motion, device, dtype, sampling, chosen, plugins)


@dataclass(frozen=True)
class ReferenceIdentity:
    """What names the reference in the frame cache's key: the hash of its file (or of its pixels, where
    it came as an image in memory) and what the cache's description calls it."""

    hash: str
    name: str


@dataclass(frozen=True)
class GeneratedFrames:
    """Every frame of a run in the frame cache, and how to read them back in the driving shape."""

    cache: FrameCache
    pose_maps: PoseMaps
    placement: Placement
    generated: int  # made by this run (by all its processes); the others came from the cache


def generate_frames(
    reference: np.ndarray, reference_identity: ReferenceIdentity, driving: DrivingPoses, options: RetargetOptions, run: RunModel,
    progress: Progress, *, cache_root: Path, processes: Processes = Processes(), pipelines: LoadedPipelines | None = None,
    on_notice: Callable[[str], None] | None = None, on_detail: Callable[[str], None] | None = None,
    on_batch_saved: Callable[[int, int], None] | None = None, on_state_saved: Callable[[int, int], None] | None = None,
    stopwatch: Stopwatch | None = None,
) -> GeneratedFrames:  # fmt: skip
    """Steps 4-6 of a retarget, on poses and a reference already in memory: place both on the generation
    canvas, key the frame cache, and generate the frames missing from it (see ``retarget`` for the callbacks)."""
    stopwatch = stopwatch or Stopwatch()
    placement, reference_fit, canvas_source = generation_canvas(options, run.model.recommended, driving, reference.shape)
    tiling = vae_tiling_notice(run.model.folder, placement) if options.vae_tiling else None
    tell(on_notice, driving.notice, describe_settings(placement, canvas_source, run.chosen), tiling)
    reference_canvas = place_reference(reference, placement.canvas_width, placement.canvas_height, reference_fit)
    pose_maps = driving.pose_maps(placement, face=options.face, hands=options.hands)
    with stopwatch("cache key"):
        cache = open_shared_frame_cache(
            processes, options.force, cache_root, run.model.folder, reference_identity.hash, reference_identity.name, reference_canvas,
            pose_maps, placement.mode, run.sampling, run.motion and run.motion.path, run.plugins,
        )  # fmt: skip
    tell(on_detail, f"frame cache: {cache.folder}")
    load = cache_call(partial(
        pipelines.get if pipelines is not None else load_pipeline, run.model.folder, run.device, run.dtype, run.sampling.scheduler,
        options.vae_slicing, options.vae_tiling, options.cpu_offload, motion_module=run.motion and run.motion.path, plugins=run.plugins,
    ))  # fmt: skip
    with stopwatch("generation"):
        generated = generate_missing_frames(load, reference_canvas, pose_maps, cache, run.sampling, progress, on_batch_saved, on_state_saved, processes)
    with stopwatch("face pass"):
        cache = face_passed_frames(options, run.model.recommended, driving, placement, reference, reference_identity.name, load, cache,
                                   cache_root, run.sampling, progress, processes, on_notice)  # fmt: skip
    return GeneratedFrames(cache, pose_maps, placement, generated)


def face_passed_frames(options: RetargetOptions, recommended, driving: DrivingPoses, placement, reference: np.ndarray, reference_name: str,
                       load, main: FrameCache, cache_root: Path, sampling, progress, processes: Processes, on_notice) -> FrameCache:  # fmt: skip
    """The cache the output is read from: the face pass's (made now, where missing), or the main frames' where it does not run."""
    plan, lines = processes.broadcast(processes.on_main(lambda: face_plan_for_run(options, recommended, driving, placement, reference, reference_name)))
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


def write_outputs(made: GeneratedFrames, reference: np.ndarray, driving: DrivingPoses, driving_path: Path, output_path: Path,
                  options: RetargetOptions, progress: Progress) -> EncodeResult:  # fmt: skip
    """The --frames-dir PNGs when asked for, and the mp4 (with the driving audio unless --no-audio), or the PNG of a still."""
    count = len(made.pose_maps)
    if options.frames_dir is not None:
        keep_frames(made.cache, count, made.placement, Path(options.frames_dir))
    frames = output_frames(made.cache, count, made.placement, reference, made.pose_maps if options.grid else None, options.grid_height)
    if is_still_output(output_path):
        return write_still(frames, output_path, driving.fps)
    audio_source = driving_path if options.audio and driving_path.is_file() else None
    return encode_output(frames, count, output_path, driving.fps, audio_source, options.overwrite, progress)


def read_driving_poses(driving_path: Path, options: RetargetOptions, reference: np.ndarray, progress: Progress, cache_root: Path) -> DrivingPoses:
    """The driving poses (extracted and cached where the input is a video), fitted to the reference body unless --no-align."""
    settings = PoseSettings(person=str(options.person), drive=DriveMode(options.drive).value, face_from=options.face_from and str(options.face_from))
    driving = load_driving_poses(
        driving_path, FrameSelection(fps=options.fps), options.max_frames, settings, progress=progress, cache_root=cache_root,
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

