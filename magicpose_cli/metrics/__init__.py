"""The evaluation metrics, one implementation for `magicpose evaluate` and the demo model's tables.

``images`` (PSNR, SSIM, L1, correct and as published), ``perceptual`` (LPIPS), ``fid`` (FID and the
Fréchet distance), ``video`` and ``video_networks`` (FID-VID and FVD), ``face`` (Face-Cos),
``face_region`` (the face box and the scores inside it), ``temporal`` (consecutive-frame errors and flicker); ``inputs`` pairs generated frames with their
ground truth, ``weights`` finds the networks' files and ``scorers`` runs each family over videos.
docs/evaluation.md says how each metric matches the paper's. This module itself imports nothing, so
the command line can name the metrics without loading them.
"""

# In the order of the paper's table, then the corrected and the video metrics.
ALL_METRICS = (
    "fid", "ssim", "psnr_disco", "psnr", "lpips_disco", "lpips", "l1_disco", "l1", "face_cos", "fid_vid", "fvd",
    "temporal_error", "temporal_psnr", "flicker_excess", "face_psnr", "face_ssim", "face_lpips", "face_temporal_error",
)  # fmt: skip
# The scores inside the ground truth's face box (metrics/face_region.py).
FACE_REGION_METRICS = ("face_psnr", "face_ssim", "face_lpips", "face_temporal_error")
HIGHER_IS_BETTER = frozenset({"ssim", "psnr", "psnr_disco", "face_cos", "temporal_psnr", "face_psnr", "face_ssim"})
# MagicPose on TikTok (Chang et al., ICML 2024, Table 1), each beside the metric computed as it was.
PAPER_TIKTOK = {"fid": 25.50, "ssim": 0.752, "psnr_disco": 29.53, "lpips_disco": 0.292, "l1_disco": 0.81e-4, "face_cos": 0.426, "fid_vid": 46.30}
