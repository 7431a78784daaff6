"""Finding the model to run: a converted folder, an original checkpoint, a hub repo, or a configured default.

Where the model comes from, first match wins:
1. ``--model``: a converted folder or an original ``model_state-*.th`` checkpoint (converted once
   and kept under the cache root), or, when no such local path exists, a Hugging Face Hub repo
   (``Boese0601/MagicDance``, or ``owner/name/file.th``) fetched through the shared hub cache;
2. the ``MAGICPOSE_MODEL`` environment variable (same kinds);
3. ``model = "..."`` in ``~/.config/magicpose/config.toml`` (or ``$MAGICPOSE_CONFIG``);
4. the tiny demo model bundled in ``magicpose_cli/demo_model/`` when present;
otherwise a MissingWeightsError saying how to get the published weights.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from magicpose_cli.cache import MODELS_KIND
from magicpose_cli.errors import MagicPoseError, MissingWeightsError
from magicpose_cli.files import atomic_write_text
from magicpose_cli.hashing import hash_bytes, hash_file
from magicpose_cli.models.settings import RecommendedSettings

DEMO_MODEL_DIR = Path(__file__).parent / "demo_model"
PUBLISHED_MODEL = "Boese0601/MagicDance"
PUBLISHED_CHECKPOINT = "model_state-110000.th"
"""The published MagicPose checkpoint in its hub repo; a repo named without a file is read for it."""
DEMO_MODEL_NOTICE = (
    "no model configured: using the tiny demo model, which only knows 64x64 synthetic cartoon people "
    f"(not real photos); for real weights pass --model {PUBLISHED_MODEL} (downloaded once, about 9 GB)"
)
CONVERT_AGAIN = "convert its checkpoint again: magicpose convert CHECKPOINT -o FOLDER --overwrite"
REQUIRED_COMPONENTS = ("unet", "reference_unet", "controlnet", "vae", "scheduler")
TEXT_COMPONENTS = ("empty_prompt", "text_encoder")
CHECKPOINT_SUFFIXES = (".th", ".pt", ".pth", ".ckpt", ".bin", ".safetensors")
_WEIGHT_NAMES = ("diffusion_pytorch_model", "model")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")
_HUB_FOLDER_FILES = ["*.json", "*.safetensors", "*.txt"]
_HUB_REFERENCE = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:/(?P<file>[\w./-]+))?")

NO_MODEL_MESSAGE = (
    f"no MagicPose model found. Pass --model {PUBLISHED_MODEL} (the published weights, fetched from the "
    "Hugging Face Hub and converted once), or a model folder or model_state-*.th checkpoint you have; "
    "or set MAGICPOSE_MODEL (or `model = \"...\"` in ~/.config/magicpose/config.toml)"
)


@dataclass(frozen=True)
class ModelLocation:
    """A converted model folder ready to load, and where it came from."""

    folder: Path
    source: str  # "--model", "MAGICPOSE_MODEL", "config file ...", "demo model"
    notice: str | None = None  # a line to show the user (the demo model is in use)

    @property
    def recommended(self) -> RecommendedSettings:
        return RecommendedSettings.read(self.folder)


def config_path() -> Path:
    configured = os.environ.get("MAGICPOSE_CONFIG")
    return Path(configured).expanduser() if configured else Path.home() / ".config" / "magicpose" / "config.toml"


def configured_model() -> tuple[str, str] | None:
    """(model, where it was configured) from the environment or the config file, if either names one."""
    return configured_setting("model", "MAGICPOSE_MODEL")


def configured_setting(key: str, environment_variable: str) -> tuple[str, str] | None:
    """(value, where it was configured) from ``environment_variable``, else ``key = "..."`` in the config file."""
    from_environment = os.environ.get(environment_variable)
    if from_environment:
        return from_environment, environment_variable
    path = config_path()
    if path.is_file():
        try:
            config = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise MagicPoseError(f"cannot read config file {path}: {error}") from None
        if config.get(key):
            return str(config[key]), f"config file {path}"
    return None


def locate_model(model: str | Path | None, cache_root: Path) -> ModelLocation:
    """Resolve the model to a checked, converted folder (fetching and converting when needed).

    Checkpoints converted here are inference folders, so they are written in float16.
    """
    if model is not None:
        return ModelLocation(prepare_model_path(model, cache_root, dtype="fp16"), "--model")
    configured = configured_model()
    if configured is not None:
        path, source = configured
        return ModelLocation(prepare_model_path(path, cache_root, source, dtype="fp16"), source)
    if DEMO_MODEL_DIR.is_dir() and (DEMO_MODEL_DIR / "model_index.json").is_file():
        return ModelLocation(check_model_folder(DEMO_MODEL_DIR), "demo model", DEMO_MODEL_NOTICE)
    raise MissingWeightsError(NO_MODEL_MESSAGE)


def prepare_model_path(model: str | Path, cache_root: Path, source: str = "--model", dtype: str = "fp32") -> Path:
    """A converted folder as it is, or an original checkpoint (local or on the hub) converted into the
    cache once, in ``dtype`` (see ``conversion.conversion_dtype``; fp32 suits a training start).

    A local path always wins over a hub repo of the same spelling.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return check_model_folder(path)
    if path.is_file():
        if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise MagicPoseError(
                f"model {path} is neither a converted model folder nor a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})"
            )
        return converted_checkpoint(path, cache_root, dtype)
    if is_hub_reference(str(model)):
        return hub_model_folder(str(model), cache_root, dtype, source)
    raise MagicPoseError(f"model not found: {path} (from {source}); check the path, or give a hub id such as {PUBLISHED_MODEL}")


def is_hub_reference(text: str) -> bool:
    """``owner/name`` or ``owner/name/path/file.th``, spelled as the Hugging Face Hub allows."""
    match = _HUB_REFERENCE.fullmatch(text)
    if match is None or ".." in text or "--" in match["repo"]:
        return False
    return match["file"] is None or match["file"].lower().endswith(CHECKPOINT_SUFFIXES)


def checkpoint_file(reference: str | Path, source: str = "checkpoint") -> Path:
    """A local checkpoint file, or the one a hub reference names when no local path of that spelling exists."""
    path = Path(reference).expanduser()
    if not path.exists() and is_hub_reference(str(reference)):
        return fetch_hub_checkpoint(str(reference), source)
    if path.is_dir():
        raise MagicPoseError(f"{path} is a folder; {source} must be a checkpoint file ({', '.join(CHECKPOINT_SUFFIXES)})")
    if not path.is_file():
        raise MagicPoseError(f"{source} not found: {path}")
    return path


def fetch_hub_checkpoint(reference: str, source: str = "--model") -> Path:
    """The checkpoint a hub reference names (``owner/name`` means its model_state-110000.th), fetched into
    the shared hub cache (resumable, with its progress bar; HF_TOKEN, HF_HOME, HF_ENDPOINT and
    HF_HUB_OFFLINE apply) unless it is there already."""
    match = _HUB_REFERENCE.fullmatch(reference)
    filename = match["file"] or PUBLISHED_CHECKPOINT
    checkpoint = _hub_download(match["repo"], filename, source, required=True)
    if checkpoint is None:
        raise MagicPoseError(
            f"the Hugging Face Hub repo {match['repo']} has neither a converted model (model_index.json) nor {filename} "
            f"(from {source}); name the file: {match['repo']}/FILE.th"
        )
    return checkpoint


def hub_model_folder(reference: str, cache_root: Path, dtype: str, source: str = "--model") -> Path:
    """A model from the hub: a repo holding a converted folder (model_index.json) is used as it is
    (as ``DiffusionPipeline.from_pretrained`` would); otherwise its checkpoint is fetched and converted once."""
    from huggingface_hub import snapshot_download

    match = _HUB_REFERENCE.fullmatch(reference)
    if match["file"] is None and _hub_download(match["repo"], "model_index.json", source, required=False) is not None:
        return check_model_folder(Path(snapshot_download(match["repo"], allow_patterns=_HUB_FOLDER_FILES)))
    return converted_checkpoint(fetch_hub_checkpoint(reference, source), cache_root, dtype)


def _hub_download(repo_id: str, filename: str, source: str, required: bool, option: str = "--model") -> Path | None:
    """A file of a hub repo from the hub cache, downloading it when needed; None if the repo has no such
    file, or (unless ``required``) if the hub cannot be reached and the cache lacks it."""
    from huggingface_hub import constants, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(hf_hub_download(repo_id, filename))
    except RemoteEntryNotFoundError:
        return None
    except LocalEntryNotFoundError:
        if not required:
            return None
        why = "HF_HUB_OFFLINE is set" if constants.is_offline_mode() else "the hub cannot be reached (HF_HUB_OFFLINE=1 skips trying)"
        raise MissingWeightsError(
            f"could not fetch {filename} from the Hugging Face Hub ({repo_id}): {why} and the hub cache "
            f"({constants.HF_HUB_CACHE}) does not hold it. Download {hf_hub_url(repo_id, filename)} on a machine "
            f"with internet and pass the file itself: {option} /path/to/{filename}"
        ) from None
    except GatedRepoError:
        raise MagicPoseError(f"{repo_id} on the Hugging Face Hub is gated: accept its terms on the hub, then log in (`hf auth login` or HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise MagicPoseError(
            f"{option.removeprefix('--').replace('-', ' ')} not found: no local path {repo_id}, and no Hugging Face Hub repo {repo_id} (a private one needs "
            f"`hf auth login` or HF_TOKEN) (from {source})"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise MagicPoseError(f"cannot fetch {filename} from the Hugging Face Hub ({repo_id}): {str(error).splitlines()[0]}") from None


def converted_checkpoint(checkpoint: Path, cache_root: Path, dtype: str = "fp32") -> Path:
    """The converted folder of an original checkpoint, converting it on first use.

    An original-format yaml beside the checkpoint (``<name>.yaml`` or ``model_config.yaml``) is
    used for the sizes; without one the published SD 1.5 sizes are assumed. The folder is named by
    the content of checkpoint and yaml, the converter's version and the dtype: a renamed file is not
    converted again, a changed file or converter is.
    """
    from magicpose_cli.models.conversion import CONVERTER_VERSION, convert_checkpoint

    config = original_config_beside(checkpoint)
    key = {
        "checkpoint_sha256": checkpoint_digest(checkpoint),
        "config_sha256": hash_file(config) if config else None,
        "converter": CONVERTER_VERSION,
        "dtype": dtype,
    }
    folder = cache_root / MODELS_KIND / hash_bytes(json.dumps(key, sort_keys=True).encode())[:32]
    if not (folder / "model_index.json").is_file():
        convert_checkpoint(checkpoint, folder, config_path=config, dtype=dtype, overwrite=True)
        provenance = {"checkpoint": str(checkpoint.resolve()), "config": str(config.resolve()) if config else None, **key}
        atomic_write_text(folder / "converted_from.json", json.dumps(provenance, indent=2))
    return check_model_folder(folder)


def checkpoint_digest(checkpoint: Path) -> str:
    """SHA-256 of the checkpoint; a file in the hub cache is named by it already (its blob), so no re-reading 9 GB."""
    blob = checkpoint.resolve()
    if blob.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", blob.name):
        return blob.name
    return hash_file(checkpoint)


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
        raise MagicPoseError(f"model folder {folder} has a broken model_index.json: {error}; {CONVERT_AGAIN}") from None
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
        raise MagicPoseError(f"model folder {folder} is incomplete: missing {', '.join(missing)}; {CONVERT_AGAIN}")
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

