"""The model a training run starts from: a MagicPose folder or an original checkpoint, and the pose ControlNet."""

from __future__ import annotations

import shutil
from pathlib import Path

from diffusers import ControlNetModel

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models import MagicPosePipeline
from magicpose_cli.models.conversion import convert_checkpoint

CONVERTED_INIT_DIR = "init_model"
CONVERTED_CONTROLNET_DIR = "init_controlnet"


def _convert_once(checkpoint: Path, folder: Path, marker: str) -> Path:
    """``checkpoint`` converted into ``folder`` once (later runs and resumes reuse it); renamed into place when complete."""
    if not (folder / marker).is_file():
        partial = folder.with_name(f".{folder.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        convert_checkpoint(checkpoint, partial)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return folder


def load_controlnet(path: str | Path, work_dir: Path) -> ControlNetModel:
    """An OpenPose ControlNet: a diffusers folder or an original file such as ``control_v11p_sd15_openpose.pth``."""
    path = Path(path)
    if not path.exists():
        raise MagicPoseError(f"--controlnet-init not found: {path}")
    if path.is_file():
        path = _convert_once(path, work_dir / CONVERTED_CONTROLNET_DIR, "config.json")
    if not (path / "config.json").is_file():
        raise MagicPoseError(f"{path} is not a diffusers ControlNet folder (no config.json)")
    return ControlNetModel.from_pretrained(path)


def load_initial_pipeline(model: str | Path, work_dir: Path, controlnet_init: str | Path | None = None) -> MagicPosePipeline:
    """The pipeline to train from: ``model`` is a MagicPose model folder or an original checkpoint.

    An original checkpoint (a MagicPose one, or an SD 1.5 one, whose UNet then also initialises the
    appearance model, as the original stage 1 does) is converted into ``work_dir/init_model``.
    ``controlnet_init`` replaces the pose ControlNet (stage 2 starts from the OpenPose ControlNet).
    """
    model = Path(model)
    if not model.exists():
        raise MagicPoseError(f"--model not found: {model}")
    if model.is_file():
        model = _convert_once(model, work_dir / CONVERTED_INIT_DIR, "model_index.json")
    if not (model / "model_index.json").is_file():
        raise MagicPoseError(f"{model} is not a model folder (no model_index.json) nor a checkpoint file")
    pipeline = MagicPosePipeline.from_pretrained(model)
    if controlnet_init is not None:
        pipeline = MagicPosePipeline(**{**pipeline.components, "controlnet": load_controlnet(controlnet_init, work_dir)})
    return pipeline
