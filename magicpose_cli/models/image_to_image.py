"""Image-to-image: denoising from given frames noised part of the way, diffusers' ``image`` and ``strength``.

``strength`` says how far back into the noise the init frames go, as diffusers' img2img pipelines
count it: the first ``1 - strength`` of the schedule is skipped, the frames' latents are noised
to the timestep where sampling starts (the scheduler's ``add_noise``, with the run's own initial
noise), and the usual loop denoises them from there with the same networks and conditions.
``strength`` 1 is plain generation (the init frames are not used: the path without ``image``);
a strength too small to leave one step decodes the init frames' latents as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class InitFrames:
    """The clean latents of the frames one denoising loop starts from, and the strength they are noised to."""

    latents: torch.Tensor
    strength: float


def first_step_index(num_inference_steps: int, strength: float, order: int = 1) -> int:
    """The index in the scheduler's timesteps where sampling starts (diffusers' ``get_timesteps`` rule)."""
    noised_steps = min(int(num_inference_steps * strength), num_inference_steps)
    return max(num_inference_steps - noised_steps, 0) * order


class ImageToImageMixin:
    """The pipeline's image-to-image entry: encoding the init frames and the latents sampling starts from."""

    def starting_latents(self, noise: torch.Tensor, num_inference_steps: int, init: InitFrames | None) -> tuple[torch.Tensor, int]:
        """Set the scheduler's timesteps; return the latents the loop starts from and the index of its first step.

        Without ``init``: the initial ``noise`` scaled as the scheduler wants it, from step 0.
        """
        self.scheduler.set_timesteps(num_inference_steps, device=noise.device)
        if init is None:
            return noise * self.scheduler.init_noise_sigma, 0
        first = first_step_index(num_inference_steps, init.strength, self.scheduler.order)
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(first)
        latents = init.latents.to(noise.device, noise.dtype)
        if first >= len(self.scheduler.timesteps):
            return latents, first
        timesteps = self.scheduler.timesteps[first : first + 1].repeat(len(latents))
        return self.scheduler.add_noise(latents, noise.expand_as(latents), timesteps), first

    def init_frames(self, image: Sequence | None, frames: range, strength: float) -> InitFrames | None:
        """The init frames ``frames`` of ``image`` as latents (VAE posterior mode), or None where plain generation runs."""
        if image is None or strength >= 1.0:
            return None
        pixels = self.pose_map_processor.preprocess([image[index] for index in frames])
        pixels = (pixels * 2.0 - 1.0).to(self._execution_device, self.vae.dtype)
        latents = [self.vae.encode(pixels[start : start + 1]).latent_dist.mode() for start in range(len(pixels))]
        return InitFrames(torch.cat(latents) * self.vae.config.scaling_factor, strength)

    def checked_image(self, image, strength: float, num_frames: int, height: int, width: int) -> Sequence | None:
        """The init frames as a sequence of single frames (as the pose maps' forms allow); refuses frames that do not
        match the pose maps, and a strength outside [0, 1]."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be between 0 and 1, got {strength}")
        if image is None:
            return None
        image = self.pose_map_processor.frames(image)
        if len(image) != num_frames:
            raise ValueError(f"image has {len(image)} init frames for {num_frames} pose maps; give one per pose map")
        size = tuple(self.pose_map_processor.to_tensor(image[0]).shape[1:])
        if size != (height, width):
            raise ValueError(f"the init frames are {size[1]}x{size[0]} but the pose maps are {width}x{height}")
        return image
