"""The model a training run starts from: a MagicPose folder or an original checkpoint, and the pose ControlNet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from diffusers import ControlNetModel

from magicpose_cli import __version__
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import default_cache_root
from magicpose_cli.hashing import hash_bytes, hash_file
from magicpose_cli.model_store import original_config_beside, prepare_model_path
from magicpose_cli.models import MagicPosePipeline
from magicpose_cli.models.conversion import convert_checkpoint

CONVERTED_CONTROLNET_DIR = "init_controlnet"


def _converted_controlnet(checkpoint: Path, work_dir: Path) -> Path:
    """``checkpoint`` converted once into ``work_dir/init_controlnet/<key>``, keyed by what made it.

    The key covers the checkpoint's bytes, the original yaml beside it (its sizes) and the
    converter's version, so a changed ``--controlnet-init`` is converted again, never reused stale.
    Conversions of other keys are removed: one run starts from one ControlNet.
    """
    config = original_config_beside(checkpoint)
    made_from = {"checkpoint": hash_file(checkpoint), "config": hash_file(config) if config else None, "converter": __version__}
    converted_root = work_dir / CONVERTED_CONTROLNET_DIR
    converted = converted_root / hash_bytes(json.dumps(made_from, sort_keys=True).encode())[:32]
    if not (converted / "config.json").is_file():
        convert_checkpoint(checkpoint, converted, config_path=config)  # writes the folder atomically
    for stale in converted_root.iterdir():
        if stale.is_dir() and stale != converted:
            shutil.rmtree(stale)
        elif stale.is_file():
            stale.unlink()  # an earlier version's conversion, made straight into init_controlnet/
    return converted


def load_controlnet(path: str | Path, work_dir: Path) -> ControlNetModel:
    """An OpenPose ControlNet: a diffusers folder, or an original file such as ``control_v11p_sd15_openpose.pth``
    (with ``<name>.yaml`` beside it for other than SD 1.5 sizes), converted once into the run folder."""
    path = Path(path)
    if not path.exists():
        raise MagicPoseError(f"--controlnet-init not found: {path} (check the path)")
    if path.is_file():
        path = _converted_controlnet(path, work_dir)
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
