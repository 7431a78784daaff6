"""Finding what is plugged into the model (models/plugins.py), as ``model_store`` finds the model.

- the base model: ``--base-model``, else ``MAGICPOSE_BASE_MODEL``, else ``base_model = "..."`` in the
  config file, else none (the model's own UNet);
- ``--base-vae`` and each ``--lora SOURCE[:SCALE]`` (scale 1 when left out).

A SOURCE is a local file (``.safetensors``, or a ``.ckpt``/``.pt``/``.pth``/``.bin`` read without
code) or folder, else a Hugging Face Hub reference: ``owner/name/file.safetensors``, or
``owner/name`` (a diffusers SD 1.5 repo for the base model, a VAE repo, or a LoRA repo's
``pytorch_lora_weights.safetensors``), fetched once into the shared hub cache with the same
offline behaviour as ``--model``. A prompt also needs the CLIP tokenizer: the base model's
``tokenizer/``, the model folder's, ``<cache>/models/clip-tokenizer/``, else SD 1.5's from the hub.
"""

from __future__ import annotations

import re
from pathlib import Path

from magicpose_cli.cache import MODELS_KIND
from magicpose_cli.errors import MagicPoseError, MissingWeightsError
from magicpose_cli.model_store import _HUB_REFERENCE, _hub_download, configured_setting
from magicpose_cli.models.plugin_options import LoraWeights, Plugins

BASE_MODEL_ENVIRONMENT_VARIABLE = "MAGICPOSE_BASE_MODEL"
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
HUB_LORA_FILE = "pytorch_lora_weights.safetensors"
CLIP_TOKENIZER_REPO = "openai/clip-vit-large-patch14"  # SD 1.5's tokenizer
CLIP_TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
TOKENIZER_FOLDER = "clip-tokenizer"
_HUB_FOLDER_PARTS = {
    "--base-model": ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
                     "text_encoder/model.safetensors", "tokenizer/*", "vae/config.json", "vae/diffusion_pytorch_model.safetensors"],
    "--base-vae": ["config.json", "diffusion_pytorch_model.safetensors", "vae/config.json", "vae/diffusion_pytorch_model.safetensors"],
}  # fmt: skip
_SCALE = re.compile(r"(?P<source>.+):(?P<scale>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)")


def locate_plugins(base_model, base_vae, loras, prompted: bool, model_folder: Path, cache_root: Path) -> tuple[Plugins, str | None]:
    """The Plugins of a run (see the module's docstring) and where the base model came from (None: none)."""
    base, base_source = (str(base_model), "--base-model") if base_model is not None else configured_setting("base_model", BASE_MODEL_ENVIRONMENT_VARIABLE) or (None, None)
    base_path = weights_path(base, "--base-model", base_source) if base is not None else None
    vae_path = weights_path(str(base_vae), "--base-vae") if base_vae is not None else None
    lora_weights = tuple(parse_lora(text) for text in loras)
    tokenizer = clip_tokenizer(model_folder, base_path, cache_root) if prompted else None
    plugins = Plugins(base_path, vae_path, lora_weights, prompted, tokenizer)
    return plugins, None if base_path is None else f"base model {base_path} ({base_source})"


def parse_lora(text: str) -> LoraWeights:
    """``SOURCE[:SCALE]`` as a LoRA file (a colon followed by a number is the scale; a Windows drive's is not)."""
    match = _SCALE.fullmatch(str(text))
    source, scale = (match["source"], float(match["scale"])) if match and not Path(str(text)).exists() else (str(text), 1.0)
    return LoraWeights(weights_path(source, "--lora"), scale)


def weights_path(reference: str, option: str, source: str | None = None) -> Path:
    """A local file or folder as it is, else what a hub reference names, fetched once."""
    source = source or option
    path = Path(reference).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        if path.suffix.lower() not in WEIGHT_SUFFIXES:
            raise MagicPoseError(f"{option} {path} is neither a folder nor a weights file ({', '.join(WEIGHT_SUFFIXES)})")
        return path
    match = _HUB_REFERENCE.fullmatch(reference)
    if match is None or ".." in reference:
        raise MagicPoseError(f"{option.removeprefix('--').replace('-', ' ')} not found: {path} (from {source})")
    if match["file"] is None and option != "--lora":
        return _hub_folder(match["repo"], option, source)
    name = match["file"] or HUB_LORA_FILE
    found = _hub_download(match["repo"], name, source, required=True, option=option)
    if found is None:
        raise MagicPoseError(f"the Hugging Face Hub repo {match['repo']} has no {name} (from {source}); name the file: {match['repo']}/FILE.safetensors")
    return found


def _hub_folder(repo: str, option: str, source: str) -> Path:
    """A diffusers repo's parts this option reads, from the hub cache (fetched once); offline without them, one line."""
    from huggingface_hub import snapshot_download

    first = "model_index.json" if option == "--base-model" else "config.json"
    if _hub_download(repo, first, source, required=True, option=option) is None:
        raise MagicPoseError(f"the Hugging Face Hub repo {repo} has no {first}: {option} takes a diffusers repo, or name its file: {repo}/FILE.safetensors")
    try:
        return Path(snapshot_download(repo, allow_patterns=_HUB_FOLDER_PARTS[option]))
    except Exception as error:  # the hub's errors have many types; each is a fetch that failed
        raise MagicPoseError(f"cannot fetch {repo} from the Hugging Face Hub ({type(error).__name__}) for {option}") from None


def clip_tokenizer(model_folder: Path, base_model: Path | None, cache_root: Path) -> Path:
    """A folder holding SD 1.5's CLIP tokenizer: the base model's, the model folder's, the cache's, else the hub's (fetched once)."""
    kept = cache_root / MODELS_KIND / TOKENIZER_FOLDER
    candidates = [*([base_model / "tokenizer"] if base_model is not None and base_model.is_dir() else []), model_folder / "tokenizer", kept]
    for folder in candidates:
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            return folder
    try:
        files = [_hub_download(CLIP_TOKENIZER_REPO, name, "--prompt", required=True, option="--prompt") for name in CLIP_TOKENIZER_FILES]
    except MissingWeightsError:
        raise MissingWeightsError(
            f"a prompt needs SD 1.5's CLIP tokenizer and none is here (offline): download {', '.join(CLIP_TOKENIZER_FILES)} from "
            f"https://huggingface.co/{CLIP_TOKENIZER_REPO}/tree/main into {kept}/"
        ) from None
    return files[0].parent
