"""MagicPosePipeline: one reference image and N pose maps in, N frames out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, ControlNetModel, DiffusionPipeline, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from magicpose_cli.models.networks import AppearanceUNet, MagicPoseDenoiser, PromptEmbedding

GUIDANCE_MODES = ("image", "text")


@dataclass
class MagicPoseOutput(BaseOutput):
    """``images``: N frames (PIL list, NxHxWx3 array or Nx3xHxW tensor in [0,1]) or N latents."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor


class MagicPosePipeline(DiffusionPipeline):
    """MagicPose sampling for one frame or a thousand.

    All frames share the reference features and, by default, one initial noise, so a video is
    as consistent as the model allows. Frames are denoised in batches; per step the appearance
    model runs once per batch, and the ControlNet only in branches that use the pose.

    Guidance modes: ``"image"`` (the original default) guides on reference and pose: the
    unconditional branch is the plain SD UNet with the same text. ``"text"`` keeps reference and
    pose in both branches and guides on the prompt against ``negative_prompt_embeds``.
    """

    model_cpu_offload_seq = "text_encoder->reference_unet->controlnet->unet->vae"
    _optional_components = ["empty_prompt", "text_encoder", "tokenizer"]

    def __init__(
        self,
        unet: UNet2DConditionModel,
        reference_unet: AppearanceUNet,
        controlnet: ControlNetModel,
        vae: AutoencoderKL,
        scheduler: KarrasDiffusionSchedulers,
        empty_prompt: PromptEmbedding | None = None,
        text_encoder=None,
        tokenizer=None,
    ):
        super().__init__()
        self.register_modules(
            unet=unet,
            reference_unet=reference_unet,
            controlnet=controlnet,
            vae=vae,
            scheduler=scheduler,
            empty_prompt=empty_prompt,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
        )
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.denoiser = MagicPoseDenoiser(unet, reference_unet, controlnet)

    @torch.no_grad()
    def __call__(
        self,
        reference_image: torch.Tensor | PIL.Image.Image,
        pose_maps: torch.Tensor | Sequence[PIL.Image.Image] | np.ndarray,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.0,
        guidance_mode: str = "image",
        prompt: str | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        per_frame_noise: bool = False,
        frames_per_batch: int = 4,
        output_type: str = "pil",
        callback_on_step_end: Callable[["MagicPosePipeline", int, int, dict], dict | None] | None = None,
        return_dict: bool = True,
        use_reference: bool = True,
    ) -> MagicPoseOutput | tuple:
        """Generate one frame per pose map; ``use_reference=False`` switches appearance attention off (ablation)."""
        if guidance_mode not in GUIDANCE_MODES:
            raise ValueError(f"guidance_mode must be one of {GUIDANCE_MODES}, got {guidance_mode!r}")
        if frames_per_batch < 1:
            raise ValueError("frames_per_batch must be at least 1")

        # 1. Inputs: pose maps, the reference latent, the text.
        pose_maps = self.prepare_pose_maps(pose_maps)
        num_frames, height, width = pose_maps.shape[0], pose_maps.shape[2], pose_maps.shape[3]
        reference_latents = self.encode_reference(reference_image, height, width) if use_reference else None
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(prompt, prompt_embeds, negative_prompt_embeds)

        # 2. Initial noise: one shared by all frames, unless per-frame noise is asked for.
        initial_noise = self.prepare_latents(num_frames, height, width, generator, latents, per_frame_noise)

        # 3. Denoise and decode batch by batch.
        frame_batches = range(0, num_frames, frames_per_batch)
        outputs = []
        for batch_index, start in enumerate(frame_batches):
            batch_poses = pose_maps[start : start + frames_per_batch]
            batch_noise = initial_noise[start : start + len(batch_poses)] if len(initial_noise) > 1 else initial_noise
            batch_latents = self.denoise(
                batch_noise.expand(len(batch_poses), -1, -1, -1).clone(),
                batch_poses,
                reference_latents,
                prompt_embeds,
                negative_prompt_embeds,
                num_inference_steps,
                guidance_scale,
                guidance_mode,
                callback_on_step_end,
                {"batch_index": batch_index, "num_batches": len(frame_batches)},
            )
            outputs.append(self.decode(batch_latents, output_type))

        images = outputs[0] if len(outputs) == 1 else self._join(outputs)
        self.maybe_free_model_hooks()
        return MagicPoseOutput(images=images) if return_dict else (images,)

    def denoise(
        self,
        latents: torch.Tensor,
        pose_maps: torch.Tensor,
        reference_latents: torch.Tensor | None,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor,
        num_inference_steps: int,
        guidance_scale: float,
        guidance_mode: str,
        callback_on_step_end=None,
        batch_info: dict | None = None,
    ) -> torch.Tensor:
        """The sampling loop for one batch of frames; returns their final latents."""
        self.scheduler.set_timesteps(num_inference_steps, device=latents.device)
        latents = latents * self.scheduler.init_noise_sigma
        with self.progress_bar(total=len(self.scheduler.timesteps)) as progress:
            for step_index, timestep in enumerate(self.scheduler.timesteps):
                model_input = self.scheduler.scale_model_input(latents, timestep)
                noise = self.guided_noise(
                    model_input, timestep, pose_maps, reference_latents, prompt_embeds,
                    negative_prompt_embeds, guidance_scale, guidance_mode,
                )  # fmt: skip
                latents = self.scheduler.step(noise, timestep, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    returned = callback_on_step_end(self, step_index, timestep, {"latents": latents, **(batch_info or {})})
                    latents = (returned or {}).get("latents", latents)
                progress.update()
        return latents

    def guided_noise(
        self,
        latents: torch.Tensor,
        timestep,
        pose_maps: torch.Tensor,
        reference_latents: torch.Tensor | None,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor,
        guidance_scale: float,
        guidance_mode: str,
    ) -> torch.Tensor:
        """Classifier-free guided noise prediction for a batch of frames at one timestep."""
        reference = None
        if reference_latents is not None:
            reference = self.denoiser.reference_features(reference_latents, timestep, prompt_embeds)
        conditional = self.denoiser(latents, timestep, prompt_embeds, reference, pose_maps)
        if guidance_scale == 1.0:
            return conditional
        if guidance_mode == "image":
            unconditional = self.denoiser(latents, timestep, prompt_embeds)
        elif negative_prompt_embeds is prompt_embeds or torch.equal(negative_prompt_embeds, prompt_embeds):
            return conditional  # both branches are the same computation
        else:
            negative_reference = None
            if reference_latents is not None:
                negative_reference = self.denoiser.reference_features(reference_latents, timestep, negative_prompt_embeds)
            unconditional = self.denoiser(latents, timestep, negative_prompt_embeds, negative_reference, pose_maps)
        return unconditional + guidance_scale * (conditional - unconditional)

    def prepare_pose_maps(self, pose_maps) -> torch.Tensor:
        """Pose maps as an Nx3xHxW tensor in [0,1] on the UNet's device and dtype."""
        if isinstance(pose_maps, torch.Tensor):
            maps = pose_maps if pose_maps.ndim == 4 else pose_maps.unsqueeze(0)
        else:
            maps = self.image_processor.pil_to_numpy(list(pose_maps)) if not isinstance(pose_maps, np.ndarray) else pose_maps
            maps = torch.from_numpy(np.asarray(maps, dtype=np.float32)).permute(0, 3, 1, 2)
            if maps.max() > 1.0:
                maps = maps / 255.0
        if maps.ndim != 4 or maps.shape[1] != 3 or len(maps) == 0:
            raise ValueError(f"pose_maps must be N x 3 x H x W (N >= 1), got {tuple(maps.shape)}")
        multiple = self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        if maps.shape[2] % multiple or maps.shape[3] % multiple:
            raise ValueError(f"pose maps are {maps.shape[3]}x{maps.shape[2]}; width and height must be multiples of {multiple}")
        return maps.to(self._execution_device, self.unet.dtype)

    def encode_reference(self, reference_image, height: int | None = None, width: int | None = None) -> torch.Tensor:
        """Reference latent: VAE posterior mode times the scaling factor (no noise is added)."""
        if isinstance(reference_image, torch.Tensor):
            image = reference_image if reference_image.ndim == 4 else reference_image.unsqueeze(0)
            if height is not None and tuple(image.shape[-2:]) != (height, width):
                raise ValueError(f"reference image is {tuple(image.shape[-2:])} but the pose maps are {(height, width)}")
        else:
            image = self.image_processor.preprocess(reference_image.convert("RGB"), height=height, width=width)
        image = image.to(self._execution_device, self.vae.dtype)
        posterior = self.vae.encode(image).latent_dist
        return (posterior.mode() * self.vae.config.scaling_factor).to(self.unet.dtype)

    def encode_prompt(self, prompt, prompt_embeds, negative_prompt_embeds) -> tuple[torch.Tensor, torch.Tensor]:
        """Text embeddings; by default the stored embedding of the empty prompt (no tokenizer needed).

        A model that stores none (e.g. converted without its CLIP) needs ``prompt_embeds``, which
        then also stands for the empty prompt in the ``"text"`` mode's unconditional branch.
        """
        device = self._execution_device
        if prompt_embeds is None and prompt is not None:
            if self.text_encoder is None or self.tokenizer is None:
                raise ValueError("a text prompt needs a text encoder and a tokenizer in the model folder")
            tokens = self.tokenizer(
                prompt, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True, return_tensors="pt"
            )
            prompt_embeds = self.text_encoder(tokens.input_ids.to(device))[0]
        stored = self.empty_prompt() if self.empty_prompt is not None else None
        if prompt_embeds is None:
            prompt_embeds = stored
        if prompt_embeds is None:
            raise ValueError("this model stores no empty-prompt embedding: pass prompt_embeds")
        if negative_prompt_embeds is None:
            negative_prompt_embeds = stored if stored is not None else prompt_embeds
        dtype = self.unet.dtype
        return prompt_embeds.to(device, dtype), negative_prompt_embeds.to(device, dtype)

    def prepare_shared_noise(self, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The 1x4xhxw initial noise that every frame of a video starts from."""
        return self.prepare_latents(1, height, width, generator, None, per_frame_noise=False)

    def prepare_latents(self, num_frames, height, width, generator, latents, per_frame_noise) -> torch.Tensor:
        shape = (
            num_frames if per_frame_noise else 1,
            self.unet.config.in_channels,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        if latents is None:
            return randn_tensor(shape, generator=generator, device=self._execution_device, dtype=self.unet.dtype)
        if latents.ndim != 4 or latents.shape[0] not in (1, num_frames) or tuple(latents.shape[1:]) != shape[1:]:
            raise ValueError(f"latents must be 1 or {num_frames} x {shape[1]} x {shape[2]} x {shape[3]}, got {tuple(latents.shape)}")
        return latents.to(self._execution_device, self.unet.dtype)

    def decode(self, latents: torch.Tensor, output_type: str):
        if output_type == "latent":
            return latents
        images = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor, return_dict=False)[0]
        return self.image_processor.postprocess(images, output_type=output_type)

    @staticmethod
    def _join(outputs: list):
        if isinstance(outputs[0], torch.Tensor):
            return torch.cat(outputs)
        if isinstance(outputs[0], np.ndarray):
            return np.concatenate(outputs)
        return [image for batch in outputs for image in batch]
