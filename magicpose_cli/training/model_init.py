"""The model a training run starts from: a MagicPose folder or an original checkpoint, and the pose ControlNet."""

from __future__ import annotations

from pathlib import Path

from diffusers import ControlNetModel

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import default_cache_root
from magicpose_cli.model_store import prepare_model_path
from magicpose_cli.models import MagicPosePipeline
from magicpose_cli.models.conversion import convert_checkpoint

CONVERTED_CONTROLNET_DIR = "init_controlnet"


def load_controlnet(path: str | Path, work_dir: Path) -> ControlNetModel:
    """An OpenPose ControlNet: a diffusers folder, or an original file such as ``control_v11p_sd15_openpose.pth``
    (converted once into ``work_dir/init_controlnet``)."""
    path = Path(path)
    if not path.exists():
        raise MagicPoseError(f"--controlnet-init not found: {path}")
    if path.is_file():
        converted = work_dir / CONVERTED_CONTROLNET_DIR
        if not (converted / "config.json").is_file():
            convert_checkpoint(path, converted)  # writes the folder atomically
        path = converted
    if not (path / "config.json").is_file():
        raise MagicPoseError(f"{path} is not a diffusers ControlNet folder (no config.json)")
    return ControlNetModel.from_pretrained(path)


def load_initial_pipeline(model: str | Path, work_dir: Path, controlnet_init: str | Path | None = None) -> MagicPosePipeline:
    """The pipeline to train from: ``model`` is a MagicPose model folder or an original checkpoint.

    An original checkpoint (a MagicPose one, or an SD 1.5 one whose UNet then also initialises the
    appearance model, as the original stage 1 does) is converted once into the model cache that
    ``retarget`` shares. ``controlnet_init`` replaces the pose ControlNet (stage 2 starts from the
    OpenPose ControlNet).
    """
    folder = prepare_model_path(Path(model), default_cache_root())
    pipeline = MagicPosePipeline.from_pretrained(folder)
    if controlnet_init is not None:
        pipeline = MagicPosePipeline(**{**pipeline.components, "controlnet": load_controlnet(controlnet_init, work_dir)})
    return pipeline
