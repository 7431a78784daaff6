"""Retarget with a motion module: which module, its settings, and the whole-video state that resumes a run.

A motion module ties every frame to its neighbours at every step, so a video is denoised whole,
step by step, and a run that stops cannot keep finished batches as the frame cache does without
one. Instead the video's latents and the scheduler's memory are saved (atomically, in the run's
frame-cache folder) after every step; the same command then goes on from the last saved step and
finishes with the bytes an uninterrupted run writes. Frames are cached as usual once decoded, and
the state is deleted when every frame is in the cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_path
from magicpose_cli.frame_cache import FrameCache
from magicpose_cli.models.context_windows import ContextFusion
from magicpose_cli.models.video_denoising import DEFAULT_CONTEXT_FRAMES, DEFAULT_CONTEXT_OVERLAP
from magicpose_cli.motion_store import MotionLocation, locate_motion_module

STATE_FILE = "denoising-state.pt"
MOTION_OPTIONS = ("context_frames", "context_overlap", "context_fusion", "motion_scale")
_FLAGS = {"context_frames": "--context-frames", "context_overlap": "--context-overlap",
          "context_fusion": "--context-fusion", "motion_scale": "--motion-scale"}  # fmt: skip


@dataclass(frozen=True)
class MotionSettings:
    """How the motion module runs (all of it decides the frames, so all of it goes into the cache key)."""

    context_frames: int
    context_overlap: int
    context_fusion: ContextFusion
    motion_scale: float

    def key(self) -> dict:
        return {"context_frames": self.context_frames, "context_overlap": self.context_overlap,
                "context_fusion": ContextFusion(self.context_fusion).value, "motion_scale": self.motion_scale}  # fmt: skip

    def pipeline_arguments(self) -> dict:
        return {"context_frames": self.context_frames, "context_overlap": self.context_overlap,
                "context_fusion": ContextFusion(self.context_fusion), "motion_scale": self.motion_scale}  # fmt: skip


def validate_motion_options(options) -> None:
    """Refuse motion settings out of range before any work (whether a module runs is known later)."""
    checks = [
        (options.context_frames is None or options.context_frames >= 1, f"--context-frames must be at least 1, got {options.context_frames}"),
        (options.context_overlap is None or options.context_overlap >= 0, f"--context-overlap must not be negative, got {options.context_overlap}"),
        (options.motion_scale is None or 0.0 <= options.motion_scale <= 1.0, f"--motion-scale must be in [0, 1], got {options.motion_scale}"),
        (not (options.no_motion and options.motion_module is not None), "--no-motion and --motion-module contradict each other: give one"),
    ]
    for ok, message in checks:
        if not ok:
            raise MagicPoseError(message)


def find_motion_module(options, model_folder: Path) -> tuple[MotionLocation | None, MotionSettings | None]:
    """The motion module of this run and how it runs, checked against the model before slow work."""
    from magicpose_cli.models.motion import check_adapter_fits
    from magicpose_cli.models.motion_loading import motion_adapter_config

    motion = locate_motion_module(options.motion_module, disabled=options.no_motion)
    if motion is None:
        given = [_FLAGS[name] for name in MOTION_OPTIONS if getattr(options, name) is not None]
        if given:
            raise MagicPoseError(f"{' and '.join(given)} only apply with a motion module (--motion-module); none is in use")
        return None, None
    config = motion_adapter_config(motion.path)
    unet_config = json.loads((Path(model_folder) / "unet" / "config.json").read_text())
    check_adapter_fits(config, unet_config, str(motion.path))
    return motion, motion_settings(options, config)


def motion_settings(options, adapter_config: dict) -> MotionSettings:
    """The context windows and motion scale: each the user's, else the default (16 frames, overlap 4, pyramid, 1)."""
    positions = int(adapter_config.get("motion_max_seq_length", DEFAULT_CONTEXT_FRAMES))
    frames = options.context_frames or min(DEFAULT_CONTEXT_FRAMES, positions)
    overlap = DEFAULT_CONTEXT_OVERLAP if options.context_overlap is None else options.context_overlap
    if frames > positions:
        raise MagicPoseError(f"--context-frames {frames} is more than the motion module's {positions} frame positions; pass --context-frames {positions} or fewer")
    if overlap >= frames:
        raise MagicPoseError(f"--context-overlap {overlap} must be less than the {frames} context frames")
    fusion = ContextFusion(options.context_fusion or ContextFusion.pyramid)
    return MotionSettings(frames, overlap, fusion, 1.0 if options.motion_scale is None else float(options.motion_scale))


def describe_motion(motion: MotionLocation | None, settings: MotionSettings | None) -> str | None:
    """One line on the motion module in use, if any."""
    if motion is None or settings is None:
        return None
    fusion = ContextFusion(settings.context_fusion).value
    return (
        f"motion module: {motion.path.name} ({motion.source}); windows of {settings.context_frames} frames overlapping by "
        f"{settings.context_overlap} ({fusion}), motion scale {settings.motion_scale:g}"
    )


class VideoStateFile:
    """The whole-video denoising state of one run, in its frame-cache folder (see the module's docstring)."""

    def __init__(self, cache: FrameCache):
        self.cache = cache
        self.path = cache.folder / STATE_FILE

    def load(self):
        """The saved state, or None (no state, or an unreadable one: the run then starts over)."""
        import torch

        from magicpose_cli.models.denoising_state import DenoisingState

        if not self.path.is_file():
            return None
        try:
            return DenoisingState.from_dict(torch.load(self.path, map_location="cpu", weights_only=True))
        except Exception:  # noqa: BLE001: a damaged state costs the steps it held, nothing else
            return None

    def save(self, state) -> None:
        import torch

        self.cache.open_folder()
        with atomic_path(self.path) as temporary:
            torch.save(state.as_dict(), temporary)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
