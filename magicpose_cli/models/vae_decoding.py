"""Latents to frames with the pipeline's VAE, safe against SD 1.5's float16 overflow."""

from __future__ import annotations

from contextlib import contextmanager

import torch


class LatentDecodingMixin:
    """Decoding for a pipeline with a ``vae`` and an ``image_processor``."""

    def decode(self, latents: torch.Tensor, output_type: str):
        if output_type == "latent":
            return latents
        return self.image_processor.postprocess(self.vae_decode(latents), output_type=output_type)

    def vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents to images in [-1,1]. SD 1.5's VAE can overflow float16 (inf, then NaN); a batch
        that does is decoded again with the VAE upcast to float32."""
        scaled = latents / self.vae.config.scaling_factor
        images = self.vae.decode(scaled.to(self.vae.dtype), return_dict=False)[0]
        if self.vae.dtype == torch.float16 and not torch.isfinite(images).all():
            with self.upcast_vae():
                images = self.vae.decode(scaled.float(), return_dict=False)[0]
        return images

    @contextmanager
    def upcast_vae(self):
        """The VAE in float32 for the duration, then back in its own dtype."""
        dtype = self.vae.dtype
        self.vae.to(torch.float32)
        try:
            yield
        finally:
            self.vae.to(dtype)
