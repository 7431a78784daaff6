"""The evaluation metrics, one implementation for `magicpose evaluate` and the demo model's tables.

``images`` (PSNR, SSIM, L1, correct and as published), ``perceptual`` (LPIPS), ``fid`` (FID and the
Fréchet distance), ``video`` and ``video_networks`` (FID-VID and FVD), ``face`` (Face-Cos),
``temporal`` (consecutive-frame errors and flicker); ``inputs`` pairs generated frames with their
ground truth, ``weights`` finds the networks' files and ``scorers`` runs each family over videos.
docs/evaluation.md says how each metric matches the paper's.
"""
