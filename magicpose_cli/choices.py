"""The choices the command line offers (``--device``, ``--scheduler``, ``--fit``, ...), as enums.

They live here, apart from the code that acts on them, so that ``magicpose --help`` and the checks
that run before any work can name them without importing torch, diffusers or an image library;
each is re-exported where it is used (models.loading, framing, retarget.presets, ...).
"""

from __future__ import annotations

from enum import Enum

ANNOTATOR_DIR_ENV = "MAGICPOSE_ANNOTATOR_DIR"  # the folder of the dwpose/openpose weight files


class Device(str, Enum):
    auto = "auto"
    cuda = "cuda"
    mps = "mps"
    cpu = "cpu"


class Precision(str, Enum):
    auto = "auto"
    fp16 = "fp16"
    bf16 = "bf16"
    fp32 = "fp32"


class Scheduler(str, Enum):
    """The sampler: DDIM (the original's), DPM-Solver++ 2M (with Karras sigmas: ``dpm-karras``), UniPC,
    or DPM-Solver++ at first order (``dpm-1``: DDIM's update on DPM-Solver's timesteps, whose last step
    reaches the clean image; it holds up at few steps where the second-order ones overshoot); ``lcm``
    and ``tcd`` for a UNet distilled to few steps (LCM-LoRA, Hyper-SD, TCD: docs/plug-in.md)."""

    ddim = "ddim"
    dpm = "dpm"
    dpm_karras = "dpm-karras"
    dpm1 = "dpm-1"
    unipc = "unipc"
    lcm = "lcm"
    tcd = "tcd"


class GuidanceMode(str, Enum):
    """``image``: guide on reference and pose (the original default); ``text``: guide on the prompt only."""

    image = "image"
    text = "text"


class NoiseMode(str, Enum):
    """The initial noise: one draw ``shared`` by all frames (the default without a motion module),
    a draw ``per-frame`` (as AnimateDiff trains), or one window-long draw ``tiled`` over the video."""

    shared = "shared"
    per_frame = "per-frame"
    tiled = "tiled"


class ContextFusion(str, Enum):
    """How overlapping windows' predictions of a frame are weighted."""

    pyramid = "pyramid"
    flat = "flat"


class FitMode(str, Enum):
    pad = "pad"
    crop = "crop"
    stretch = "stretch"


class Preset(str, Enum):
    quality = "quality"
    balanced = "balanced"
    fast = "fast"


class DetectorName(str, Enum):
    """The pose detectors ``--detector`` offers; ``auto`` picks the best one this install has."""

    AUTO = "auto"
    MEDIAPIPE = "mediapipe"
    DWPOSE = "dwpose"
    OPENPOSE = "openpose"


class TrainingStage(str, Enum):
    """``magicpose train --stage``: the paper's two stages, then a motion module (training/stages.py)."""

    appearance = "appearance"
    pose = "pose"
    motion = "motion"


class MixedPrecision(str, Enum):
    """accelerate's --mixed-precision names."""

    no = "no"
    fp16 = "fp16"
    bf16 = "bf16"


class ClipNoise(str, Enum):
    """The motion stage's noise: a draw per frame (as AnimateDiff trains) or one shared by a clip's frames."""

    per_frame = "per-frame"
    shared = "shared"


class DriveMode(str, Enum):
    """What the driving video moves: everything, the body (and hands) only, or the face only."""

    ALL = "all"
    BODY = "body"
    FACE = "face"


PERSON_HELP = "Whom to follow in a video of several people: auto (the most visible) or N, counted from the left where each is first found."
DRIVE_HELP = "What the driving video moves: all; body (and hands; the reference's face is kept); face (the reference's body from its photo is kept)."
FACE_FROM_HELP = "Take the face landmarks from this video (a talking clip; looped when shorter), the body from the driving one."
