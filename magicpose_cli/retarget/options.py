"""Retarget's settings: the options a run can be given, and how each one is resolved.

Each setting is the user's value, else the model folder's recommendation, else our default, and
the run says which; everything that decides the generated pixels goes into ``Sampling`` (and so
into the frame cache's key). A new option lands here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path

from magicpose_cli.driving import DrivingPoses
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.framing import DEFAULT_GENERATION_SIZE, SIZE_MULTIPLE, FitMode, Placement, generation_size, training_scale_size
from magicpose_cli.models.context_windows import ContextFusion
from magicpose_cli.models.guidance import GuidanceInterval
from magicpose_cli.models.loading import Device, Precision, Scheduler
from magicpose_cli.models.pipeline import GuidanceMode, NoiseMode
from magicpose_cli.models.settings import RecommendedSettings
from magicpose_cli.models.video_denoising import DEFAULT_MOTION_NOISE
from magicpose_cli.retarget.motion import MotionSettings, validate_motion_options
from magicpose_cli.retarget.outputs import check_frames_dir
from magicpose_cli.retarget.presets import Preset, preset_settings

DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 7.0
DEFAULT_SCHEDULER = Scheduler.ddim
DEFAULT_GUIDANCE_INTERVAL = (0.0, 1.0)  # every step guided


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
    preset: Preset | None = None  # None: quality, the schedule without a preset
    guidance_interval: tuple[float, float] | None = None  # None (also the reuses): the preset's, else the default
    deep_reuse: int | None = None
    appearance_reuse: int | None = None
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
    noise: NoiseMode | None = None  # None: shared (with a motion module too, as measured: docs/motion.md)
    motion_module: str | Path | None = None  # None: $MAGICPOSE_MOTION_MODULE, else the config file's, else none
    no_motion: bool = False
    context_frames: int | None = None  # None (also the three below): the default, see retarget/motion.py
    context_overlap: int | None = None
    context_fusion: ContextFusion | None = None
    motion_scale: float | None = None
    face_pass: bool | None = None  # None (also the three below): the model's recommendation, else the default (retarget/face_pass.py)
    face_strength: float | None = None
    face_size: int | None = None
    face_margin: float | None = None
    reference_pose: Path | None = None  # OpenPose JSON of the reference photo (the demo's); None: found when aligning, else detected


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
    noise: NoiseMode = NoiseMode.shared
    motion: MotionSettings | None = None  # None: no motion module
    guidance_interval: tuple[float, float] = DEFAULT_GUIDANCE_INTERVAL
    deep_reuse: int = 1
    appearance_reuse: int = 1

    def key(self) -> dict:
        """The settings for the cache key; those added after the first release (noise, motion, the
        guidance interval and the reuses) only where they differ from their defaults, so the keys
        of runs that use none of them stay what they were."""
        key = {}
        for name in (field.name for field in fields(self)):
            value = getattr(self, name)
            if name in _KEYED_WHEN_NOT and value == _KEYED_WHEN_NOT[name]:
                continue
            key[name] = value.key() if isinstance(value, MotionSettings) else getattr(value, "value", value)
        return key


_KEYED_WHEN_NOT = {"noise": NoiseMode.shared, "motion": None, "guidance_interval": DEFAULT_GUIDANCE_INTERVAL, "deep_reuse": 1, "appearance_reuse": 1}


def parse_choice(kind: type[Enum], value: object, what: str):
    """``value`` as a member of ``kind``, or one line naming the choices (the jobs file's and the page's options)."""
    try:
        return kind(value)
    except ValueError:
        raise MagicPoseError(f"{what} must be one of {', '.join(member.value for member in kind)}, got {value!r}") from None


def validate_options(options: RetargetOptions) -> None:
    """Refuse bad settings, and options that would do nothing, before any slow work starts
    (the enums are checked where they are converted)."""
    checks = [
        (options.batch_size >= 1, f"--batch-size must be at least 1, got {options.batch_size}"),
        (options.steps is None or options.steps >= 1, f"--steps must be at least 1, got {options.steps}"),
        (options.deep_reuse is None or options.deep_reuse >= 1, f"--deep-reuse must be at least 1, got {options.deep_reuse}"),
        (options.appearance_reuse is None or options.appearance_reuse >= 1, f"--appearance-reuse must be at least 1, got {options.appearance_reuse}"),
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
    if options.guidance_interval is not None:
        try:
            GuidanceInterval(*options.guidance_interval)
        except (TypeError, ValueError):
            raise MagicPoseError(
                f"--guidance-interval LO HI needs 0 <= LO <= HI <= 1 (fractions of the noise schedule), got {options.guidance_interval}"
            ) from None
    validate_face_options(options)
    validate_motion_options(options)
    if options.frames_dir is not None:
        check_frames_dir(Path(options.frames_dir))


def validate_face_options(options: RetargetOptions) -> None:
    """The face pass's numbers in their ranges (its other checks need the driving poses: retarget/face_pass.py)."""
    checks = [
        (options.face_strength is None or 0.0 <= options.face_strength <= 1.0, f"--face-strength must be between 0 and 1, got {options.face_strength}"),
        (options.face_size is None or (options.face_size > 0 and options.face_size % SIZE_MULTIPLE == 0),
         f"--face-size must be a positive multiple of {SIZE_MULTIPLE}, got {options.face_size}"),
        (options.face_margin is None or options.face_margin >= 0, f"--face-margin must be 0 or more, got {options.face_margin}"),
        (options.reference_pose is None or Path(options.reference_pose).is_file(), f"--reference-pose {options.reference_pose} is not a file"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise MagicPoseError(message)


def check_pose_options(options: RetargetOptions, driving: DrivingPoses) -> None:
    """Pose options that rendered pose maps cannot honour are refused rather than silently ignored."""
    if driving.map_files is None:
        return
    flags = (("--no-face", not options.face), ("--no-hands", not options.hands), ("--align", options.align), ("--face-pass", options.face_pass))
    asked = [flag for flag, given in flags if given]
    if asked:
        raise MagicPoseError(
            f"{' and '.join(asked)} cannot apply to a folder of rendered pose maps (they are used as drawn, without keypoints); "
            "give a video or OpenPose JSON instead, or leave the option out"
        )


def resolve_sampling(
    options: RetargetOptions, recommended: RecommendedSettings, device: str, dtype: str, motion: MotionSettings | None = None
) -> tuple[Sampling, dict[str, tuple[object, str]]]:
    """The sampling settings: each one the user's, else the preset's, else the model's recommendation,
    else the default; with (value, where it came from) per setting for the notice (the guidance
    interval and the reuses only where they are not the default's every-step computation).
    ``motion``: the motion module's settings, if one runs."""
    if options.cpu_offload and device == "cpu":
        raise MagicPoseError("--cpu-offload keeps models on the CPU until a GPU needs them; running on the CPU, it would change nothing")
    quality = {"steps": choose(None, recommended.steps, DEFAULT_STEPS), "scheduler": choose(None, recommended.scheduler, DEFAULT_SCHEDULER)}
    preset = Preset(options.preset or Preset.quality)
    from_preset = preset_settings(preset, int(quality["steps"][0]))

    def with_preset(name: str, fallback: tuple[object, str]) -> tuple[object, str]:
        """The user's value, else the preset's, else ``fallback`` (the quality schedule's)."""
        given = getattr(options, name)
        return (given, "given") if given is not None else (from_preset[name], f"preset {preset.value}") if name in from_preset else fallback

    chosen = {
        "preset": (preset, "given" if options.preset else "default"),
        "steps": with_preset("steps", quality["steps"]),
        "guidance": choose(options.guidance, recommended.guidance, DEFAULT_GUIDANCE),
        "scheduler": with_preset("scheduler", quality["scheduler"]),
        "guidance_interval": with_preset("guidance_interval", (DEFAULT_GUIDANCE_INTERVAL, "default")),
        "deep_reuse": with_preset("deep_reuse", (1, "default")),
        "appearance_reuse": with_preset("appearance_reuse", (1, "default")),
    }
    try:
        scheduler = Scheduler(chosen["scheduler"][0])
    except ValueError:
        raise MagicPoseError(f"the model recommends an unknown scheduler {chosen['scheduler'][0]!r}; pass --scheduler") from None
    if motion is not None and int(chosen["deep_reuse"][0]) > 1:
        raise MagicPoseError("--deep-reuse runs without a motion module only (with one it would keep every context window's deep features); add --no-motion or leave it out")
    noise = choose(options.noise, None, DEFAULT_MOTION_NOISE if motion is not None else NoiseMode.shared)
    if motion is not None or options.noise is not None:
        chosen["noise"] = noise
    sampling = Sampling(
        options.seed, options.batch_size, int(chosen["steps"][0]), float(chosen["guidance"][0]),
        GuidanceMode(options.guidance_mode), scheduler, device, dtype, options.vae_slicing, options.vae_tiling,
        NoiseMode(noise[0]), motion, tuple(float(end) for end in chosen["guidance_interval"][0]), int(chosen["deep_reuse"][0]),
        int(chosen["appearance_reuse"][0]),
    )  # fmt: skip
    return sampling, {name: choice for name, choice in chosen.items() if name not in _EVERY_STEP or choice[1] != "default"}


_EVERY_STEP = ("guidance_interval", "deep_reuse", "appearance_reuse")


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
    parts += [f"{name.replace('_', ' ')} {describe_value(value)} ({source})" for name, (value, source) in chosen.items()]
    return "settings: " + ", ".join(parts)


def describe_value(value: object) -> str:
    if isinstance(value, tuple):
        return "-".join(f"{end:g}" for end in value)
    return str(getattr(value, "value", value))


