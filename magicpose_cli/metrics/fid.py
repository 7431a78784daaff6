"""FID as the paper reports it: pytorch-fid's Inception features of every frame, pooled, and the Fréchet distance.

DisCo's authors computed the published FID with ``python -m pytorch_fid GENERATED GROUND_TRUTH``
(DisCo issue #25): the 2048 pool features of pytorch-fid's port of the TensorFlow Inception, on
frames read as RGB in [0, 1] (the network resizes them to 299x299 bilinearly), over all frames of
all videos at once. :func:`inception_features` feeds the network exactly that way; the distance
between the two feature sets is :func:`frechet_distance`, which FID-VID and FVD share.
"""

from __future__ import annotations

import numpy as np

from magicpose_cli.metrics.weights import FID_INCEPTION, checked_sha256, load_tensors, locate

FEATURE_DIMS = 2048


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two N x D feature sets.

    With more samples than dimensions this is pytorch-fid's (and DisCo's) computation, square root
    by ``scipy.linalg.sqrtm`` and its regularisation of a singular product; it is written here
    because pytorch-fid 0.3's own passes ``disp=`` to ``sqrtm``, which SciPy 1.18 removes.
    """
    features_a, features_b = (np.atleast_2d(np.asarray(features, dtype=np.float64)) for features in (features_a, features_b))
    if len(features_a) < 2 or len(features_b) < 2:
        raise ValueError("a Fréchet distance needs at least two samples on each side")
    mean_a, mean_b = features_a.mean(axis=0), features_b.mean(axis=0)
    covariance_a, covariance_b = np.atleast_2d(np.cov(features_a, rowvar=False)), np.atleast_2d(np.cov(features_b, rowvar=False))
    if min(len(features_a), len(features_b)) <= features_a.shape[1]:
        trace_root = _trace_root_from_samples(features_a - mean_a, features_b - mean_b)
    else:
        trace_root = _trace_root_by_sqrtm(covariance_a, covariance_b)
    difference = mean_a - mean_b
    return float(difference @ difference + np.trace(covariance_a) + np.trace(covariance_b) - 2.0 * trace_root)


def _trace_root_by_sqrtm(covariance_a: np.ndarray, covariance_b: np.ndarray) -> float:
    """Tr (S_a S_b)^(1/2) as pytorch-fid takes it (where it stops on a large imaginary part, the real part)."""
    from scipy import linalg

    root = linalg.sqrtm(covariance_a @ covariance_b)
    if not np.isfinite(root).all():
        offset = np.eye(len(covariance_a)) * 1e-6
        root = linalg.sqrtm((covariance_a + offset) @ (covariance_b + offset))
    return float(np.trace(np.real(root)))


def _trace_root_from_samples(centred_a: np.ndarray, centred_b: np.ndarray) -> float:
    """Tr (S_a S_b)^(1/2) for no more samples than dimensions: with S = X^T X / (n - 1), the eigenvalues
    of S_a S_b are the squared singular values of X_a X_b^T / sqrt((n_a - 1)(n_b - 1)), so the trace is
    their sum. Exact, where ``sqrtm`` of the singular D x D product is slow and only nearly right."""
    gram = centred_a @ centred_b.T / np.sqrt((len(centred_a) - 1) * (len(centred_b) - 1))
    return float(np.linalg.svd(gram, compute_uv=False).sum())


def load_inception(device) -> tuple[object, str]:
    """pytorch-fid's Inception (pool3 features) from torch hub's folder, and the weights' SHA-256."""
    from pytorch_fid.inception import InceptionV3

    path = locate(FID_INCEPTION, None)
    digest = checked_sha256(FID_INCEPTION, path)
    load_tensors(path)  # plain tensors only, before pytorch-fid reads the same file
    network = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIMS]])
    return network.to(device).eval(), digest


def inception_features(network, frames: list[np.ndarray], device) -> np.ndarray:
    """N x 2048 features of HxWx3 uint8 frames of one size, fed as pytorch-fid feeds image files."""
    import torch
    import torch.nn.functional as F

    batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(255)
    with torch.no_grad():
        pooled = network(batch.to(device))[0]
    if pooled.shape[2:] != (1, 1):
        pooled = F.adaptive_avg_pool2d(pooled, output_size=(1, 1))
    return pooled.flatten(1).cpu().numpy().astype(np.float64)
