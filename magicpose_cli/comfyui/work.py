"""The work behind the ComfyUI nodes: `retarget`'s own steps (retarget/run.py) on ComfyUI's images.

ComfyUI's IMAGE is a float32 tensor, frames x height x width x channels in [0, 1]; the library works
on uint8 RGB frames, so images cross over here and nowhere else. Inside ComfyUI every step moves
its progress bar and stops at its interrupt (Cancel) between denoising steps; the frames already
finished stay in the frame cache, keyed as retarget keys them, so the next run makes only the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from magicpose_cli.cache import check_cache_root
from magicpose_cli.driving import DrivingPoses, load_driving_poses
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import default_cache_root
from magicpose_cli.framing import FitMode
from magicpose_cli.hashing import hash_arrays
from magicpose_cli.images import to_uint8
from magicpose_cli.model_store import DEMO_MODEL_DIR
from magicpose_cli.models.context_windows import ContextFusion
from magicpose_cli.models.loading import Device, LoadedPipelines, Precision, Scheduler, resolve_device
from magicpose_cli.pose.detectors import DetectorName
from magicpose_cli.pose.extract import PoseSettings, poses_of_frames
from magicpose_cli.retarget import RetargetOptions
from magicpose_cli.retarget.options import check_pose_options, parse_choice, validate_options
from magicpose_cli.retarget.outputs import output_frames
from magicpose_cli.retarget.presets import Preset
from magicpose_cli.retarget.run import ReferenceIdentity, find_run_model, generate_frames
from magicpose_cli.ui.jobs import ProgressRelay

PIPELINES = LoadedPipelines()  # the networks stay loaded from one queued run to the next (the latest model only)
PROGRESS_STEPS = 1000  # ComfyUI's bar counts whole units: a thousandth of the part under way
LOG = logging.getLogger("magicpose")  # retarget's notices (the demo model is in use, the settings and where each came from) in ComfyUI's log


@dataclass(frozen=True)
class NodeModel:
    """MAGICPOSE_MODEL: a located model folder, its motion module, and where it runs."""

    folder: Path
    motion_module: Path | None
    device: Device  # as chosen, for the run's description
    torch_device: str  # as resolved (ComfyUI's own device for auto)
    dtype: Precision


@dataclass(frozen=True)
class NodePoses:
    """MAGICPOSE_POSES: the driving poses, and whether their maps are drawn with face and hands."""

    driving: DrivingPoses
    face: bool = True
    hands: bool = True


@dataclass(frozen=True)
class NodeSettings:
    """MagicPoseRetarget's widgets; a widget's "unset" value (0, -1, auto) leaves retarget's default."""

    preset: str = "quality"
    steps: int = 0
    guidance: float = 0.0
    scheduler: str = "auto"
    seed: int = 0
    batch_size: int = 4
    size: int = 0
    context_frames: int = 0
    context_overlap: int = -1
    context_fusion: str = "auto"
    motion_scale: float = 1.0

    def options(self, model: NodeModel, poses: NodePoses) -> RetargetOptions:
        """The retarget options these settings are, for ``model`` and ``poses``."""
        return RetargetOptions(
            model=model.folder, motion_module=model.motion_module, no_motion=model.motion_module is None, device=model.device,
            dtype=model.dtype, face=poses.face, hands=poses.hands, size=self.size or None, seed=self.seed, batch_size=self.batch_size,
            preset=parse_choice(Preset, self.preset, "preset"), steps=self.steps or None, guidance=self.guidance or None,
            scheduler=None if self.scheduler == "auto" else parse_choice(Scheduler, self.scheduler, "scheduler"),
            context_frames=self.context_frames or None, context_overlap=None if self.context_overlap < 0 else self.context_overlap,
            context_fusion=None if self.context_fusion == "auto" else parse_choice(ContextFusion, self.context_fusion, "context_fusion"),
            motion_scale=None if self.motion_scale == 1.0 else self.motion_scale,
        )  # fmt: skip


def load_model(model: str, device: str = "auto", dtype: str = "auto", motion_module: str = "") -> NodeModel:
    """MagicPoseLoadModel: find the model (``demo``: the bundled one; a hub id is fetched and converted once)
    and its motion module, and load the networks into the kept pipelines."""
    device_choice, precision = parse_choice(Device, device, "device"), parse_choice(Precision, dtype, "dtype")
    motion = motion_module.strip() or None
    options = RetargetOptions(model=model_argument(model), motion_module=motion, no_motion=motion is None, device=device_choice, dtype=precision)
    run = find_run_model(options, cache_root(), comfy_device(device_choice), on_notice=LOG.info, on_detail=LOG.info)
    motion_path = run.motion and run.motion.path
    PIPELINES.get(run.model.folder, run.device, run.dtype, run.sampling.scheduler, motion_module=motion_path)
    return NodeModel(run.model.folder, motion_path, device_choice, str(run.device), precision)


def model_argument(model: str) -> str | Path | None:
    """The model box as retarget's --model: ``demo`` is the bundled demo model, empty the configured one."""
    model = model.strip()
    return DEMO_MODEL_DIR if model == "demo" else (model or None)


def comfy_device(device: Device) -> torch.device:
    """``auto`` inside ComfyUI is the device ComfyUI runs on (so ``--cpu`` holds); elsewhere, retarget's choice."""
    if device is Device.auto:
        try:
            from comfy.model_management import get_torch_device
        except ImportError:
            return resolve_device(device)
        return get_torch_device()
    return resolve_device(device)


def extract_poses(frames, fps: float, face: bool, hands: bool, smoothing: float, detector: str, reference=None) -> tuple[NodePoses, torch.Tensor]:
    """MagicPoseExtractPoses: the poses of the frames (detected, filled, smoothed as `extract-pose` does), fitted
    to the reference body when one is given (as retarget does), and their maps to preview."""
    images = image_frames(frames, "frames")
    settings = PoseSettings(detector=parse_choice(DetectorName, detector, "detector").value, smooth=smoothing > 0, smooth_strength=smoothing or 1.0)
    progress = comfy_progress()
    task = progress.add_task("detecting poses", total=len(images))
    poses = poses_of_frames(
        images, fps, settings, on_progress=lambda done, _total: progress.update(task, completed=done), what="the frames of MagicPoseExtractPoses"
    )  # fmt: skip
    driving = DrivingPoses(fps, poses[0].width, poses[0].height, keypoints=poses)
    if reference is not None:
        driving = driving.aligned_to(one_image(reference, "reference"))
    node_poses = NodePoses(driving, face, hands)
    return node_poses, pose_map_images(node_poses)


def load_poses(folder: str, face: bool = True, hands: bool = True, reference=None) -> tuple[NodePoses, torch.Tensor]:
    """MagicPoseLoadPoses: a folder of OpenPose JSON (fitted to the reference body when one is given) or of pose maps."""
    path = Path(folder.strip()).expanduser()
    if not folder.strip() or not path.is_dir():
        raise MagicPoseError(f"folder {folder!r} is not a folder: give a folder of OpenPose JSON files or of pose map images")
    driving = load_driving_poses(path)
    check_pose_options(RetargetOptions(face=face, hands=hands, align=True if reference is not None else None), driving)
    if reference is not None:
        driving = driving.aligned_to(one_image(reference, "reference"))
    node_poses = NodePoses(driving, face, hands)
    return node_poses, pose_map_images(node_poses)


def retarget_frames(model: NodeModel, reference, poses: NodePoses, settings: NodeSettings) -> torch.Tensor:
    """MagicPoseRetarget: retarget's frames (its frame cache, canvas and sampling), restored to the driving
    shape as retarget writes them to its video, as one IMAGE batch."""
    reference_image = one_image(reference, "reference")
    options = settings.options(model, poses)
    validate_options(options)
    root = cache_root()
    run = find_run_model(options, root, torch.device(model.torch_device), on_notice=LOG.info)
    identity = ReferenceIdentity(hash_arrays([reference_image]), "an image given to MagicPoseRetarget")
    made = generate_frames(
        reference_image, identity, poses.driving, options, run, comfy_progress(), cache_root=root, pipelines=PIPELINES, on_notice=LOG.info,
        on_detail=LOG.info,
    )  # fmt: skip
    return image_batch(output_frames(made.cache, len(made.pose_maps), made.placement, reference_image))


def cache_root() -> Path:
    """retarget's cache root ($MAGICPOSE_CACHE, else the user's cache folder): ComfyUI runs share frames with the CLI's."""
    return check_cache_root(default_cache_root())


def comfy_progress() -> Progress:
    """A rich Progress for retarget's steps that moves ComfyUI's bar of the running node and raises ComfyUI's
    interrupt at the next move after Cancel; outside ComfyUI it shows and stops nothing."""
    try:
        from comfy.model_management import throw_exception_if_processing_interrupted
        from comfy.utils import ProgressBar
    except ImportError:
        return Progress(disable=True)
    bar = ProgressBar(PROGRESS_STEPS)

    def on_change(fraction: float | None, _line: str) -> None:
        throw_exception_if_processing_interrupted()
        if fraction is not None:
            bar.update_absolute(round(fraction * PROGRESS_STEPS), PROGRESS_STEPS)

    return ProgressRelay(on_change)


def image_frames(images, what: str) -> list[np.ndarray]:
    """A ComfyUI IMAGE as uint8 RGB frames (an alpha channel is dropped, as ComfyUI's own nodes do)."""
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) != 4 or shape[0] == 0 or shape[-1] not in (3, 4):
        raise MagicPoseError(f"{what} must be a ComfyUI IMAGE (frames x height x width x 3), got one of shape {shape}")
    array = images[..., :3].detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)[..., :3]
    return list(to_uint8(array))


def one_image(images, what: str) -> np.ndarray:
    """The single picture of a ComfyUI IMAGE batch; a batch of several is refused."""
    frames = image_frames(images, what)
    if len(frames) != 1:
        raise MagicPoseError(f"{what} must be one image, got a batch of {len(frames)}: pick one (e.g. with an image-from-batch node)")
    return frames[0]


def image_batch(frames: Iterable[np.ndarray]) -> torch.Tensor:
    """uint8 RGB frames as one ComfyUI IMAGE."""
    return torch.from_numpy(np.stack(list(frames))).float().div_(255.0)


def pose_map_images(poses: NodePoses) -> torch.Tensor:
    """The pose maps on the poses' own canvas, drawn as retarget draws them, to preview."""
    driving = poses.driving
    placement = driving.placement(driving.canvas_width, driving.canvas_height, FitMode.stretch)
    return image_batch(driving.pose_maps(placement, face=poses.face, hands=poses.hands))
