"""`magicpose retarget`: the person of a reference photo performing the motion of a driving video.

The work is a row of small steps, each its own function:
read the reference -> read the driving poses -> align them to the reference -> place both on the
generation canvas -> generate the missing frames batch by batch into the frame cache ->
restore the driving shape (and build the grid) -> encode the mp4 with the driving audio.

Every generated frame goes to the frame cache as soon as its batch is done. Batches are always
cut at the same boundaries and every batch starts from the same shared noise, so a resumed run
produces exactly the bytes an uninterrupted one does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from magicpose_cli.encode import check_output_path, write_video
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import default_cache_root
from magicpose_cli.frame_cache import FrameCache, run_key
from magicpose_cli.hashing import hash_arrays, hash_file, hash_folder
from magicpose_cli.framing import FitMode, Placement, fit_placement, generation_size, side_by_side
from magicpose_cli.images import read_image
from magicpose_cli.model_store import ModelLocation, locate_model
from magicpose_cli.pose.driving import DrivingPoses
from magicpose_cli.pose.keypoints import FramePose

GUIDANCE_MODES = ("image", "text")
SCHEDULERS = ("ddim", "dpm", "unipc")
DTYPES = ("auto", "fp16", "bf16", "fp32")
DEVICES = ("auto", "cuda", "mps", "cpu")


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
    guidance_mode: str = "image"
    scheduler: str = "ddim"
    device: str = "auto"
    dtype: str = "auto"
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
    output_path = Path(output_path)
    check_output_path(output_path, options.overwrite)
    validate_options(options)
    cache_root = Path(options.cache_root) if options.cache_root else default_cache_root()
    reference = load_reference_image(Path(reference_path))
    model = locate_model(options.model, cache_root)
    if model.notice and on_notice is not None:
        on_notice(model.notice)
    with new_progress(console) as progress:
        driving = read_driving_poses(Path(driving_path), options, cache_root, progress)
        motion = align_to_reference(driving, reference) if options.align else driving.poses
        canvas_width, canvas_height = generation_size(options.width, options.height)
        placement = pose_placement(motion, canvas_width, canvas_height, options.fit)
        reference_canvas = place_reference(reference, canvas_width, canvas_height, options.fit)
        pose_maps = render_pose_maps(motion, placement, options)
        cache = open_frame_cache(cache_root, model, reference_path, reference_canvas, pose_maps, options)
        generated = generate_missing_frames(model, reference_canvas, pose_maps, cache, options, progress, on_batch_saved)
        frames = output_frames(cache, len(pose_maps), placement, reference, pose_maps, options)
        if options.frames_dir is not None:
            keep_frames(cache, len(pose_maps), placement, Path(options.frames_dir))
        fps = options.fps or driving.fps
        audio_source = Path(driving_path) if options.audio and Path(driving_path).is_file() else None
        encoding = progress.add_task("encoding", total=len(pose_maps))
        encoded = write_video(
            frames,
            output_path,
            fps=fps,
            audio_source=audio_source,
            overwrite=options.overwrite,
            on_frame=lambda: progress.advance(encoding),
        )
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
    """Refuse bad settings before any slow work starts."""
    checks = [
        (options.batch_size >= 1, f"--batch-size must be at least 1, got {options.batch_size}"),
        (options.steps >= 1, f"--steps must be at least 1, got {options.steps}"),
        (options.guidance_mode in GUIDANCE_MODES, f"--guidance-mode must be one of {', '.join(GUIDANCE_MODES)}"),
        (options.scheduler in SCHEDULERS, f"--scheduler must be one of {', '.join(SCHEDULERS)}"),
        (options.dtype in DTYPES, f"--dtype must be one of {', '.join(DTYPES)}"),
        (options.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}"),
        (options.fps is None or options.fps > 0, f"--fps must be positive, got {options.fps}"),
        (options.max_frames is None or options.max_frames >= 1, "--max-frames must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise MagicPoseError(message)


def load_reference_image(path: Path) -> np.ndarray:
    """The reference photo as HxWx3 uint8 RGB, read as every command reads images (magicpose_cli.images)."""
    return read_image(path, what="reference image")


def read_driving_poses(path: Path, options: RetargetOptions, cache_root: Path, progress: Progress) -> DrivingPoses:
    """One pose per driving frame: extracted from a video (kept under the cache root), or read from
    a folder of OpenPose JSON or of rendered pose maps."""
    from magicpose_cli.pose.driving import default_work_dir, load_driving_poses

    if not path.exists():
        raise MagicPoseError(f"driving input not found: {path}")
    driving = load_driving_poses(
        path,
        max_frames=options.max_frames,
        work_dir=cache_root / "poses" / default_work_dir(path).name,
        progress=progress,
    )
    if len(driving) == 0:
        raise MagicPoseError(f"driving input has no frames: {path}")
    return driving


def align_to_reference(driving: DrivingPoses, reference: np.ndarray) -> list[FramePose] | list[np.ndarray]:
    """The driving skeleton fitted to the reference person's body, on the reference's canvas.

    Rendered pose maps carry no keypoints, so they are used as they are.
    """
    if driving.is_pose_maps:
        return driving.poses
    from magicpose_cli.pose.align import align_poses
    from magicpose_cli.pose.detectors import detect_reference_pose

    return align_poses(driving.poses, detect_reference_pose(reference))


def pose_placement(motion: list[FramePose] | list[np.ndarray], width: int, height: int, fit: FitMode) -> Placement:
    """How the poses' canvas (the driving video's, or the reference's once aligned) sits on the generation canvas."""
    first = motion[0]
    source_width, source_height = (first.width, first.height) if isinstance(first, FramePose) else first.shape[1::-1]
    return fit_placement(source_width, source_height, width, height, fit)


def place_reference(reference: np.ndarray, width: int, height: int, fit: FitMode) -> np.ndarray:
    """The reference on the generation canvas; letterbox padding continues its edge pixels."""
    placement = fit_placement(reference.shape[1], reference.shape[0], width, height, fit)
    return placement.place_image(reference, fill="edge")


def render_pose_maps(poses: list[FramePose] | list[np.ndarray], placement: Placement, options: RetargetOptions) -> list[np.ndarray]:
    """One control map per frame at the generation size, drawn from keypoints placed on the canvas."""
    from magicpose_cli.pose.render import render_pose

    maps = []
    for pose in poses:
        if isinstance(pose, FramePose):
            placed = placement.place_pose(pose)
            maps.append(render_pose(placed, placed.width, placed.height, face=options.face, hands=options.hands))
        else:
            maps.append(placement.place_image(pose))
    return maps


def open_frame_cache(
    cache_root: Path,
    model: ModelLocation,
    reference_path: Path,
    reference_canvas: np.ndarray,
    pose_maps: list[np.ndarray],
    options: RetargetOptions,
) -> FrameCache:
    """The cache folder of this exact run (``--force`` empties it first)."""
    device = pick_device(options.device)
    dtype = pick_dtype(options.dtype, device)
    settings = {
        "size": list(reference_canvas.shape[:2]),
        "fit": FitMode(options.fit).value,
        "seed": options.seed,
        "batch_size": options.batch_size,
        "steps": options.steps,
        "guidance": options.guidance,
        "guidance_mode": options.guidance_mode,
        "scheduler": options.scheduler,
        "device": device.type,
        "dtype": str(dtype),
    }
    key = run_key(
        model=hash_folder(model.folder, cache_root),
        reference_file=hash_file(reference_path),
        reference_canvas=hash_arrays([reference_canvas]),
        poses=hash_arrays(pose_maps),
        settings=settings,
    )
    description = {"model": str(model.folder), "reference": str(reference_path), "frames": len(pose_maps), **settings}
    cache = FrameCache(cache_root, key, description)
    if options.force:
        cache.clear()
    return cache


def batch_ranges(frame_count: int, batch_size: int) -> list[range]:
    """Frame indices of each batch, always cut at multiples of ``batch_size`` (resume-safe)."""
    return [range(start, min(start + batch_size, frame_count)) for start in range(0, frame_count, batch_size)]


def generate_missing_frames(
    model: ModelLocation,
    reference_canvas: np.ndarray,
    pose_maps: list[np.ndarray],
    cache: FrameCache,
    options: RetargetOptions,
    progress: Progress,
    on_batch_saved: Callable[[int, int], None] | None = None,
) -> int:
    """Generate every batch that has a frame missing from the cache; returns the frames generated.

    A batch is regenerated whole (never a part of it) so that every frame is computed in exactly
    the company it has in an uninterrupted run.
    """
    batches = batch_ranges(len(pose_maps), options.batch_size)
    todo = [(number, batch) for number, batch in enumerate(batches) if not all(cache.has(i) for i in batch)]
    frames_task = progress.add_task("denoising frames", total=len(pose_maps), completed=len(pose_maps) - sum(len(b) for _, b in todo))
    if not todo:
        return 0
    import torch

    pipe, device = load_pipeline(model, options)
    height, width = reference_canvas.shape[:2]
    shared_noise = pipe.prepare_shared_noise(height, width, torch.Generator("cpu").manual_seed(options.seed))
    reference_tensor = torch.from_numpy(reference_canvas).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
    steps_task = progress.add_task("denoising steps", total=options.steps)

    def count_step(pipeline, step_index, timestep, callback_kwargs):
        progress.update(steps_task, completed=step_index + 1)
        return callback_kwargs

    generated = 0
    for number, batch in todo:
        progress.reset(steps_task, total=options.steps)
        batch_maps = torch.from_numpy(np.stack([pose_maps[i] for i in batch])).permute(0, 3, 1, 2).float().div(255.0)
        with torch.inference_mode():
            result = pipe(
                reference_image=reference_tensor.to(device),
                pose_maps=batch_maps.to(device),
                num_inference_steps=options.steps,
                guidance_scale=options.guidance,
                guidance_mode=options.guidance_mode,
                latents=shared_noise.to(device),
                frames_per_batch=len(batch),
                output_type="np",
                callback_on_step_end=count_step,
            )
        for index, image in zip(batch, result.images):
            cache.save(index, to_uint8(image))
        generated += len(batch)
        progress.advance(frames_task, len(batch))
        if on_batch_saved is not None:
            on_batch_saved(number, len(batches))
    return generated


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float HxWx3 image in [0,1] as uint8, rounding to nearest."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def pick_device(name: str):
    """``auto``: the first of cuda, mps, cpu that this machine has."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MagicPoseError("--device cuda asked for, but no CUDA GPU is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise MagicPoseError("--device mps asked for, but MPS is not available")
    return torch.device(name)


def pick_dtype(name: str, device):
    """fp16 on CUDA by default, fp32 elsewhere; the CPU always computes in fp32."""
    import torch

    if device.type == "cpu":
        return torch.float32
    chosen = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return chosen[name]


def load_pipeline(model: ModelLocation, options: RetargetOptions):
    """The pipeline on the chosen device and dtype, with the chosen scheduler and memory savers."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler
    from diffusers.utils import logging as diffusers_logging

    from magicpose_cli.models import MagicPosePipeline

    device = pick_device(options.device)
    diffusers_logging.disable_progress_bar()
    pipe = MagicPosePipeline.from_pretrained(model.folder, dtype=pick_dtype(options.dtype, device))
    scheduler_class = {"ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler, "unipc": UniPCMultistepScheduler}
    pipe.scheduler = scheduler_class[options.scheduler].from_config(pipe.scheduler.config)
    if options.vae_slicing:
        pipe.vae.enable_slicing()
    if options.vae_tiling:
        pipe.vae.enable_tiling()
    if options.cpu_offload and device.type != "cpu":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, device


def output_frames(
    cache: FrameCache,
    frame_count: int,
    placement: Placement,
    reference: np.ndarray,
    pose_maps: list[np.ndarray],
    options: RetargetOptions,
) -> Iterator[np.ndarray]:
    """The video's frames: generated frames restored to the driving shape, or the grid."""
    for index in range(frame_count):
        result = placement.restore(cache.load(index))
        if options.grid:
            yield side_by_side([reference, placement.restore(pose_maps[index]), result], height=result.shape[0])
        else:
            yield result


def keep_frames(cache: FrameCache, frame_count: int, placement: Placement, folder: Path) -> None:
    """Copy the finished frames, restored to the driving shape, to ``--frames-dir`` as PNGs."""
    from magicpose_cli.files import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(frame_count):
        with atomic_path(folder / f"{index:05d}.png") as temporary:
            Image.fromarray(placement.restore(cache.load(index))).save(temporary, format="PNG")

