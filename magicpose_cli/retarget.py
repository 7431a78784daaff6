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

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import magicpose_cli
from magicpose_cli.cache import check_cache_root
from magicpose_cli.encode import EncodeResult, check_output_path, write_video
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_path, atomic_write_text, default_cache_root
from magicpose_cli.frame_cache import FrameCache, run_key
from magicpose_cli.framing import (
    DEFAULT_GENERATION_SIZE,
    FitMode,
    Placement,
    fit_placement,
    generation_size,
    side_by_side,
    training_scale_size,
)
from magicpose_cli.hashing import hash_arrays, hash_file, hash_folder
from magicpose_cli.images import read_image
from magicpose_cli.model_store import RecommendedSettings, locate_model
from magicpose_cli.models.loading import Device, Precision, Scheduler, load_pipeline, resolve_device, resolve_dtype
from magicpose_cli.models.pipeline import GuidanceMode, frame_batches
from magicpose_cli.pose.driving import DrivingPoses, load_driving_poses
from magicpose_cli.video import FrameSelection

DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 7.0
DEFAULT_SCHEDULER = Scheduler.ddim
FRAMES_DIR_RECORD = ".magicpose-frames.json"
"""Lists the PNGs retarget wrote to a --frames-dir, so a later run removes only its own stale ones."""
_FRAME_NAME = re.compile(r"\d{5}\.png")


@dataclass
class RetargetOptions:
    """Everything a retarget run can be asked to do differently (the CLI options)."""

    model: Path | None = None
    size: int | None = None  # short side of the default, driving-shaped canvas; None: the model's advice, else 512
    width: int | None = None  # a fixed canvas instead (with fit)
    height: int | None = None
    fit: FitMode | None = None  # None: pad on a fixed canvas, stretch (the rounding only) on the default one
    align: bool | None = None  # None: align keypoints, leave pose maps as they are; True with pose maps is refused
    face: bool = True
    hands: bool = True
    pose_size: tuple[int, int] | None = None  # canvas of OpenPose JSON that has none
    max_frames: int | None = None
    seed: int = 0
    batch_size: int = 4
    steps: int | None = None  # None (also guidance, scheduler): the model's recommendation, else the default
    guidance: float | None = None
    guidance_mode: GuidanceMode = GuidanceMode.image
    scheduler: Scheduler | None = None
    device: Device = Device.auto
    dtype: Precision = Precision.auto
    vae_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False
    fps: float | None = None
    audio: bool = True
    grid: bool = False
    grid_height: int | None = None  # panel height of the grid for display; None: the generated frames' height
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
    vae_slicing: bool
    vae_tiling: bool

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
    cache_root = check_cache_root(Path(options.cache_root) if options.cache_root else default_cache_root())
    reference = load_reference_image(reference_path)
    model = locate_model(options.model, cache_root)
    tell(on_notice, model.notice)
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    sampling, chosen = resolve_sampling(options, model.recommended, device.type, str(dtype))
    with new_progress(console) as progress:
        driving = load_driving_poses(
            driving_path, FrameSelection(fps=options.fps), options.max_frames, progress=progress, cache_root=cache_root,
            pose_size=options.pose_size,
        )  # fmt: skip
        check_pose_options(options, driving)
        if options.align is not False and driving.keypoints is not None:
            driving = driving.aligned_to(reference)
        placement, reference_fit, canvas_source = generation_canvas(options, model.recommended, driving, reference.shape)
        tiling = vae_tiling_notice(model.folder, placement) if options.vae_tiling else None
        tell(on_notice, driving.notice, describe_settings(placement, canvas_source, chosen), tiling)
        reference_canvas = place_reference(reference, placement.canvas_width, placement.canvas_height, reference_fit)
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
        frames = output_frames(cache, len(pose_maps), placement, reference, pose_maps if options.grid else None, options.grid_height)
        audio_source = driving_path if options.audio and driving_path.is_file() else None
        encoded = encode_output(frames, len(pose_maps), output_path, driving.fps, audio_source, options.overwrite, progress)
    return RetargetSummary(
        output=output_path,
        frames=encoded.frames,
        generated=generated,
        cache_hits=len(pose_maps) - generated,
        seconds=time.perf_counter() - started,
        fps=driving.fps,
        audio_codec=encoded.audio_codec,
        model_source=model.source,
    )


def tell(on_notice: Callable[[str], None] | None, *lines: str | None) -> None:
    """Pass the lines that say something to ``on_notice``."""
    for line in lines:
        if line and on_notice is not None:
            on_notice(line)


def validate_options(options: RetargetOptions) -> None:
    """Refuse bad settings, and options that would do nothing, before any slow work starts
    (the enums are checked where they are converted)."""
    checks = [
        (options.batch_size >= 1, f"--batch-size must be at least 1, got {options.batch_size}"),
        (options.steps is None or options.steps >= 1, f"--steps must be at least 1, got {options.steps}"),
        (options.fps is None or options.fps > 0, f"--fps must be positive, got {options.fps}"),
        (options.max_frames is None or options.max_frames >= 1, "--max-frames must be at least 1"),
        (
            options.size is None or (options.width is None and options.height is None),
            "give either --size (the short side of a canvas shaped like the driving poses) or --width/--height (a fixed canvas), not both",
        ),
        (
            GuidanceMode(options.guidance_mode) is GuidanceMode.image,
            "--guidance-mode text guides on the text prompt, and retarget has none: both branches would get the same "
            "empty prompt and --guidance would change nothing; use --guidance-mode image (the default)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise MagicPoseError(message)
    if options.frames_dir is not None:
        check_frames_dir(Path(options.frames_dir))


def check_pose_options(options: RetargetOptions, driving: DrivingPoses) -> None:
    """Pose options that rendered pose maps cannot honour are refused rather than silently ignored."""
    if driving.map_files is None:
        return
    asked = [flag for flag, given in (("--no-face", not options.face), ("--no-hands", not options.hands), ("--align", options.align)) if given]
    if asked:
        raise MagicPoseError(
            f"{' and '.join(asked)} cannot apply to a folder of rendered pose maps (they are used as drawn); "
            "give a video or OpenPose JSON instead, or leave the option out"
        )


def resolve_sampling(
    options: RetargetOptions, recommended: RecommendedSettings, device: str, dtype: str
) -> tuple[Sampling, dict[str, tuple[object, str]]]:
    """The sampling settings: each one the user's, else the model's recommendation, else the default;
    with (value, where it came from) per setting for the notice."""
    if options.cpu_offload and device == "cpu":
        raise MagicPoseError("--cpu-offload keeps models on the CPU until a GPU needs them; running on the CPU, it would change nothing")
    chosen = {
        "steps": choose(options.steps, recommended.steps, DEFAULT_STEPS),
        "guidance": choose(options.guidance, recommended.guidance, DEFAULT_GUIDANCE),
        "scheduler": choose(options.scheduler, recommended.scheduler, DEFAULT_SCHEDULER),
    }
    try:
        scheduler = Scheduler(chosen["scheduler"][0])
    except ValueError:
        raise MagicPoseError(f"the model recommends an unknown scheduler {chosen['scheduler'][0]!r}; pass --scheduler") from None
    sampling = Sampling(
        options.seed, options.batch_size, int(chosen["steps"][0]), float(chosen["guidance"][0]),
        GuidanceMode(options.guidance_mode), scheduler, device, dtype, options.vae_slicing, options.vae_tiling,
    )  # fmt: skip
    return sampling, chosen


def choose(given: object, recommended: object, default: object) -> tuple[object, str]:
    """(value, source): the user's value, else the model's recommendation, else the default."""
    if given is not None:
        return given, "given"
    if recommended is not None:
        return recommended, "model's recommendation"
    return default, "default"


def generation_canvas(
    options: RetargetOptions, recommended: RecommendedSettings, driving: DrivingPoses, reference_shape: tuple[int, ...]
) -> tuple[Placement, FitMode, str]:
    """Where the poses go on the generation canvas, how the reference is fitted to it, and a phrase
    saying where the canvas size came from.

    Without --width/--height the canvas has the poses' shape with its short side at the training
    scale (--size, else the model's recommended size, else 512): the person is as large as in
    training, nothing is cut, and only the rounding to multiples of 64 is stretched (and undone).
    A reference of another shape (poses not aligned to it) is letterboxed there, not distorted.
    """
    if options.width is not None or options.height is not None:
        width, height = generation_size(options.width, options.height)
        fit = FitMode(options.fit or FitMode.pad)
        return driving.placement(width, height, fit), fit, "given"
    recommended_sides = [side for side in (recommended.width, recommended.height) if side]
    short_side, source = choose(options.size, min(recommended_sides) if recommended_sides else None, DEFAULT_GENERATION_SIZE)
    width, height = training_scale_size(driving.canvas_width, driving.canvas_height, int(short_side))
    fit = FitMode(options.fit or FitMode.stretch)
    same_shape = training_scale_size(reference_shape[1], reference_shape[0], int(short_side)) == (width, height)
    reference_fit = fit if options.fit is not None or same_shape else FitMode.pad
    return driving.placement(width, height, fit), reference_fit, f"short side {short_side}: {source}; shaped like the {driving.canvas_width}x{driving.canvas_height} poses"


def vae_tiling_notice(model_folder: Path, placement: Placement) -> str | None:
    """A line when --vae-tiling will change nothing: the VAE only tiles a picture larger than its
    ``sample_size`` (diffusers' AutoencoderKL)."""
    try:
        tile = json.loads((model_folder / "vae" / "config.json").read_text())["sample_size"]
    except (OSError, ValueError, KeyError):
        return None
    tile = tile[0] if isinstance(tile, (list, tuple)) else tile
    width, height = placement.canvas_width, placement.canvas_height
    if not isinstance(tile, int) or max(width, height) > tile:
        return None
    return f"--vae-tiling changes nothing at {width}x{height}: this model's VAE decodes up to {tile}x{tile} in one piece"


def describe_settings(placement: Placement, canvas_source: str, chosen: dict[str, tuple[object, str]]) -> str:
    """One line saying what the run uses and where each setting came from."""
    parts = [f"canvas {placement.canvas_width}x{placement.canvas_height} ({canvas_source})"]
    parts += [f"{name} {getattr(value, 'value', value)} ({source})" for name, (value, source) in chosen.items()]
    return "settings: " + ", ".join(parts)


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
    settings = {
        "size": list(reference_canvas.shape[:2]),
        "fit": FitMode(fit).value,
        "magicpose": magicpose_cli.__version__,  # a new release may compute other pixels
        **sampling.key(),
    }
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
    grid_height: int | None = None,
) -> Iterator[np.ndarray]:
    """The video's frames, read one at a time: generated frames restored to the driving shape, or
    (with ``grid_pose_maps``) reference | pose | result, each panel ``grid_height`` high (default: the result's)."""
    for index in range(frame_count):
        result = placement.restore(cache.load(index))
        if grid_pose_maps is not None:
            panels = [reference, placement.restore(grid_pose_maps[index]), result]
            yield side_by_side(panels, height=grid_height or result.shape[0])
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


def check_frames_dir(folder: Path) -> None:
    """Refuse a --frames-dir holding frame PNGs this tool did not write (they would be mixed with ours)."""
    if folder.exists() and not folder.is_dir():
        raise MagicPoseError(f"--frames-dir {folder} is a file, not a folder")
    foreign = frame_files(folder) - recorded_frames(folder)
    if foreign:
        raise MagicPoseError(
            f"--frames-dir {folder} already holds {len(foreign)} frame PNGs (e.g. {min(foreign)}) that magicpose did not "
            "write there; pick an empty or new folder"
        )


def frame_files(folder: Path) -> set[str]:
    """Names in ``folder`` shaped like the frames retarget writes (00000.png, ...)."""
    return {path.name for path in folder.glob("*.png") if _FRAME_NAME.fullmatch(path.name)} if folder.is_dir() else set()


def recorded_frames(folder: Path) -> set[str]:
    """The frame PNGs an earlier run wrote to ``folder``, as its record lists them."""
    try:
        names = json.loads((folder / FRAMES_DIR_RECORD).read_text())["frames"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {name for name in names if isinstance(name, str) and _FRAME_NAME.fullmatch(name)}


def keep_frames(cache: FrameCache, frame_count: int, placement: Placement, folder: Path) -> None:
    """Copy the finished frames, restored to the driving shape, to ``--frames-dir`` as PNGs.

    Frames an earlier, longer run wrote there are removed, so the folder holds this video only;
    the record is widened before writing and narrowed after, so a crash never orphans a frame.
    """
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{index:05d}.png" for index in range(frame_count)]
    earlier = recorded_frames(folder)
    write_frames_record(folder, earlier | set(names))
    for index, name in enumerate(names):
        with atomic_path(folder / name) as temporary:
            Image.fromarray(placement.restore(cache.load(index))).save(temporary, format="PNG")
    for stale in earlier - set(names):
        (folder / stale).unlink(missing_ok=True)
    write_frames_record(folder, set(names))


def write_frames_record(folder: Path, names: set[str]) -> None:
    record = {"written_by": "magicpose retarget", "frames": sorted(names)}
    atomic_write_text(folder / FRAMES_DIR_RECORD, json.dumps(record, indent=1))
