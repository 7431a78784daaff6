"""LPIPS with the VGG backbone, from the ``lpips`` package, fed correctly and as the published tables fed it.

LPIPS expects images in [-1, 1]. DisCo's ``tool/metrics`` (and so the MagicPose paper's 0.292) gives
``lpips.LPIPS(net="vgg")`` the [0, 1] tensors of ``ToTensor()`` without ``normalize=True``:
``lpips_disco`` reproduces that, ``lpips`` is the distance as LPIPS defines it. Both run at the
frames' full resolution, one frame pair at a time, as the original does.
"""

from __future__ import annotations

import numpy as np

from magicpose_cli.metrics.weights import VGG16, checked_sha256, load_tensors, locate


def load_lpips(device) -> tuple[object, str]:
    """``lpips.LPIPS(net="vgg")`` with torchvision's VGG16 from torch hub's folder, and its SHA-256.

    The small linear heads ship inside the lpips wheel; the backbone torchvision would download is
    looked for first, so nothing is fetched.
    """
    import warnings

    import lpips

    path = locate(VGG16, None)
    digest = checked_sha256(VGG16, path)
    load_tensors(path)  # plain tensors only, before torchvision reads the same file
    with warnings.catch_warnings():  # lpips 0.1.4 asks torchvision for pretrained=True, which it calls deprecated
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        network = lpips.LPIPS(net="vgg", verbose=False)
    return network.to(device).eval(), digest


def _tensor(frame: np.ndarray, device):
    import torch

    return torch.tensor(frame).permute(2, 0, 1)[None].float().div(255).to(device)


def lpips_distances(network, generated: np.ndarray, target: np.ndarray, device) -> tuple[float, float]:
    """(lpips, lpips_disco) of two HxWx3 uint8 frames: inputs in [-1, 1], and the original's [0, 1]."""
    import torch

    generated, target = _tensor(generated, device), _tensor(target, device)
    with torch.no_grad():
        correct = network(generated * 2 - 1, target * 2 - 1)
        disco = network(generated, target)
    return float(correct.item()), float(disco.item())


def lpips_of_crops(network, device, generated: np.ndarray, target: np.ndarray, least: int = 64) -> float:
    """LPIPS (correct input) of two crops, enlarged to ``least`` pixels on the short side where smaller:
    VGG's four poolings leave nothing of a face box a few dozen pixels wide."""
    import cv2

    height, width = target.shape[:2]
    if min(height, width) < least:
        factor = least / min(height, width)
        size = (int(round(width * factor)), int(round(height * factor)))
        generated, target = (cv2.resize(np.ascontiguousarray(frame), size, interpolation=cv2.INTER_CUBIC) for frame in (generated, target))
    return lpips_distances(network, generated, target, device)[0]
