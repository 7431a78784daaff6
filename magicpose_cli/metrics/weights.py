"""The networks' weight files: where each is looked for, where to get it, and its check.

pytorch-fid's Inception and torchvision's VGG16 (LPIPS's backbone) are looked for where those
packages keep them, torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``); the networks the original loads from a folder of its own (the
video networks) and the face-recognition model are looked for in ``--weights-dir``. Nothing is ever
downloaded: a missing file is a :class:`MissingWeightsError` whose one line says what to fetch and
where to put it, and the metrics that need it are skipped.

Torch hub files carry the first 8 hex digits of their SHA-256 in their name, which is checked; the
other files have no published hash, so the SHA-256 of every file used is reported with the results.
Every file must also load as plain tensors (``torch.load(weights_only=True)``) before a package is
allowed to read it, so no checkpoint can run code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from magicpose_cli.errors import MagicPoseError, MissingWeightsError
from magicpose_cli.hashing import hash_file

WEIGHTS_DIR_ENV = "MAGICPOSE_EVAL_WEIGHTS"


@dataclass(frozen=True)
class WeightFile:
    name: str
    url: str  # where to download it
    about: str  # what it is, for the message
    in_torch_hub: bool  # True: torch hub's checkpoint folder; False: --weights-dir
    sha256_prefix: str | None = None  # the published hash's first digits (torch hub's file names carry them)

    @property
    def source(self) -> str:
        return f"{self.url} ({self.about})"


FID_INCEPTION = WeightFile(
    "pt_inception-2015-12-05-6726825d.pth",
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    "pytorch-fid's Inception",
    in_torch_hub=True,
    sha256_prefix="6726825d",
)
VGG16 = WeightFile(
    "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth", "torchvision's VGG16, LPIPS's backbone",
    in_torch_hub=True, sha256_prefix="397923af",
)  # fmt: skip
RESNET3D_KINETICS = WeightFile(
    "resnet-50-kinetics.pth",
    "https://github.com/yjh0410/YOWOF/releases/download/yowof-weight/resnet-50-kinetics.pth",
    "Hara et al.'s 3D ResNet-50 on Kinetics, the file of DisCo's eval_fvd folder",
    in_torch_hub=False,
)
I3D_KINETICS = WeightFile(
    "i3d_pretrained_400.pt",
    "https://drive.google.com/file/d/1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT",
    "VideoGPT's Kinetics-400 I3D, the file DisCo uses",
    in_torch_hub=False,
)
ARCFACE = WeightFile(
    "w600k_r50.onnx",
    "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
    "insightface's ArcFace, inside the zip; non-commercial research use only; --face-model takes any ArcFace ONNX",
    in_torch_hub=False,
)


def torch_hub_checkpoints() -> Path:
    """torch hub's checkpoint folder (follows ``$TORCH_HOME``), where pytorch-fid and torchvision look."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights_dir(weights_dir: str | Path | None) -> Path | None:
    """``--weights-dir``, else ``$MAGICPOSE_EVAL_WEIGHTS``, else None."""
    value = weights_dir or os.environ.get(WEIGHTS_DIR_ENV)
    return Path(value).expanduser() if value else None


def locate(weight: WeightFile, weights_dir: Path | None, path: Path | None = None) -> Path:
    """The file of ``weight`` (``path`` when the user named one), or a one-line MissingWeightsError."""
    if path is not None:
        if not Path(path).is_file():
            raise MissingWeightsError(f"{path} not found (it stands for {weight.name}: {weight.source})")
        return Path(path)
    if weight.in_torch_hub:
        folder = torch_hub_checkpoints()
        if not (folder / weight.name).is_file():
            raise MissingWeightsError(f"{weight.name} not found in {folder} (torch hub's folder; TORCH_HOME moves it): download {weight.source} into it")
        return folder / weight.name
    if weights_dir is None:
        raise MissingWeightsError(
            f"{weight.name} not found: download {weight.source} into a folder and pass --weights-dir FOLDER (or set {WEIGHTS_DIR_ENV})"
        )
    if not (Path(weights_dir) / weight.name).is_file():
        raise MissingWeightsError(f"{weight.name} not found in {weights_dir}: download {weight.source} into it")
    return Path(weights_dir) / weight.name


def checked_sha256(weight: WeightFile, path: Path) -> str:
    """The file's SHA-256, refused in one line when it is not the published file."""
    digest = hash_file(path)
    if weight.sha256_prefix and not digest.startswith(weight.sha256_prefix):
        raise MagicPoseError(
            f"{path} is not the published {weight.name} (its SHA-256 starts {digest[:8]}, not {weight.sha256_prefix}): download it again from {weight.source}"
        )
    return digest


def load_tensors(path: Path) -> dict:
    """A checkpoint read as plain tensors and containers only, or a one-line error."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        first_line = (str(error).strip().splitlines() or ["unreadable"])[0]
        raise MagicPoseError(f"cannot read {path} as a weights file: {first_line}") from None
