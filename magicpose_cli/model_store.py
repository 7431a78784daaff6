"""Finding the model to run: a converted folder, an original checkpoint, or a configured default.

Where the model comes from, first match wins:
1. ``--model PATH``: a converted folder, or an original ``model_state-*.th`` checkpoint
   (converted once and kept under the cache root by the checkpoint's content hash);
2. the ``MAGICPOSE_MODEL`` environment variable (same two kinds of path);
3. ``model = "PATH"`` in ``~/.config/magicpose/config.toml`` (or ``$MAGICPOSE_CONFIG``);
4. the tiny demo model bundled in ``magicpose_cli/demo_model/`` when present;
otherwise a MissingWeightsError saying what to download and how to convert it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from magicpose_cli.errors import MagicPoseError, MissingWeightsError
from magicpose_cli.files import atomic_write_text
from magicpose_cli.hashing import hash_bytes, hash_file

DEMO_MODEL_DIR = Path(__file__).parent / "demo_model"
DEMO_MODEL_NOTICE = (
    "no model configured: using the tiny demo model trained on synthetic people; see README to use real weights"
)
REQUIRED_COMPONENTS = ("unet", "reference_unet", "controlnet", "vae", "scheduler")
TEXT_COMPONENTS = ("empty_prompt", "text_encoder")
CHECKPOINT_SUFFIXES = (".th", ".pt", ".pth", ".ckpt", ".bin", ".safetensors")
_WEIGHT_NAMES = ("diffusion_pytorch_model", "model")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")

NO_MODEL_MESSAGE = (
    "no MagicPose model found. Download the published MagicPose weights (model_state-*.th from the "
    "authors' MagicDance release, https://github.com/Boese0601/MagicDance) plus the Stable Diffusion 1.5 "
    "VAE and CLIP text encoder, run `magicpose convert model_state-XXXX.th -o ~/magicpose-model`, then pass "
    "`--model ~/magicpose-model` or set MAGICPOSE_MODEL (or `model = \"...\"` in ~/.config/magicpose/config.toml)"
)


@dataclass(frozen=True)
class ModelLocation:
    """A converted model folder ready to load, and where it came from."""

    folder: Path
    source: str  # "--model", "MAGICPOSE_MODEL", "config file", "demo model"
    notice: str | None = None  # a line to show the user (the demo model is in use)


def config_path() -> Path:
    configured = os.environ.get("MAGICPOSE_CONFIG")
    return Path(configured).expanduser() if configured else Path.home() / ".config" / "magicpose" / "config.toml"


def configured_model() -> tuple[str, str] | None:
    """(path, where it was configured) from the environment or the config file, if either names one."""
    from_environment = os.environ.get("MAGICPOSE_MODEL")
    if from_environment:
        return from_environment, "MAGICPOSE_MODEL"
    path = config_path()
    if path.is_file():
        try:
            config = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise MagicPoseError(f"cannot read config file {path}: {error}") from None
        if config.get("model"):
            return str(config["model"]), f"config file {path}"
    return None


def locate_model(model: str | Path | None, cache_root: Path) -> ModelLocation:
    """Resolve the model to a checked, converted folder (converting a checkpoint when needed)."""
    if model is not None:
        return ModelLocation(prepare_model_path(Path(model), cache_root), "--model")
    configured = configured_model()
    if configured is not None:
        path, source = configured
        return ModelLocation(prepare_model_path(Path(path), cache_root, source), source)
    if DEMO_MODEL_DIR.is_dir() and (DEMO_MODEL_DIR / "model_index.json").is_file():
        return ModelLocation(check_model_folder(DEMO_MODEL_DIR), "demo model", DEMO_MODEL_NOTICE)
    raise MissingWeightsError(NO_MODEL_MESSAGE)


def prepare_model_path(path: Path, cache_root: Path, source: str = "--model") -> Path:
    """A converted folder as it is, or an original checkpoint converted into the cache once."""
    path = path.expanduser()
    if not path.exists():
        raise MagicPoseError(f"model not found: {path} (from {source})")
    if path.is_dir():
        return check_model_folder(path)
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise MagicPoseError(f"model {path} is neither a converted model folder nor a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})")
    return converted_checkpoint(path, cache_root)


def converted_checkpoint(checkpoint: Path, cache_root: Path) -> Path:
    """The converted folder of an original checkpoint, converting it on first use.

    An original-format yaml beside the checkpoint (``<name>.yaml`` or ``model_config.yaml``) is
    used for the sizes; without one the published SD 1.5 sizes are assumed. The folder is named by
    the content hash of checkpoint and yaml, so a renamed file is not converted again and a
    changed one is. Conversion writes to a staging folder that is renamed when complete.
    """
    from magicpose_cli.models.conversion import convert_checkpoint

    config = original_config_beside(checkpoint)
    content = hash_file(checkpoint) + (hash_file(config) if config else "")
    folder = cache_root / "models" / hash_bytes(content.encode())[:32]
    if (folder / "model_index.json").is_file():
        return check_model_folder(folder)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    convert_checkpoint(checkpoint, staging, config_path=config)
    provenance = {"checkpoint": str(checkpoint.resolve()), "config": str(config.resolve()) if config else None}
    atomic_write_text(staging / "converted_from.json", json.dumps(provenance))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    return check_model_folder(folder)


def original_config_beside(checkpoint: Path) -> Path | None:
    for candidate in (checkpoint.with_suffix(".yaml"), checkpoint.parent / "model_config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def check_model_folder(folder: Path) -> Path:
    """Fail with a clear line unless every component that model_index.json lists is on disk."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise MagicPoseError(
            f"model folder {folder} is incomplete: no model_index.json (convert a checkpoint with `magicpose convert`)"
        )
    try:
        index = json.loads(index_path.read_text())
    except ValueError as error:
        raise MagicPoseError(f"model folder {folder} has a broken model_index.json: {error}") from None
    present = [
        component
        for component, spec in index.items()
        if not component.startswith("_") and isinstance(spec, list) and spec[0] is not None
    ]
    missing = [file for component in present for file in _missing_files(folder / component)]
    missing += [f"{name}/" for name in REQUIRED_COMPONENTS if name not in present]
    if not any(name in present for name in TEXT_COMPONENTS):
        missing.append("a text conditioning (empty_prompt/ or text_encoder/: convert with the SD 1.5 CLIP text encoder)")
    if missing:
        raise MagicPoseError(f"model folder {folder} is incomplete: missing {', '.join(missing)}")
    return folder


def _missing_files(component_folder: Path) -> list[str]:
    """What a component folder lacks: the folder, its config, or (for networks) its weights."""
    name = component_folder.name
    if not component_folder.is_dir():
        return [f"{name}/"]
    configs = list(component_folder.glob("*.json"))
    if not configs:
        return [f"{name}/ config"]
    is_network = (component_folder / "config.json").is_file()
    has_weights = any(
        (component_folder / f"{stem}{suffix}").is_file() for stem in _WEIGHT_NAMES for suffix in _WEIGHT_SUFFIXES
    ) or any(component_folder.glob("*.safetensors"))
    if is_network and not has_weights:
        return [f"{name}/ weights"]
    return []

