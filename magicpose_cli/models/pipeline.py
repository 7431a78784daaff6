"""MagicPosePipeline: one reference image and N pose maps in, N frames out."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, ControlNetModel, DiffusionPipeline, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from magicpose_cli.distributed import Processes
from magicpose_cli.models.context_windows import ContextFusion
from magicpose_cli.models.denoising_state import DenoisingState
from magicpose_cli.models.feature_reuse import DeepFeatureCache, reused_deep_features
from magicpose_cli.models.guidance import GuidanceInterval
from magicpose_cli.models.image_to_image import ImageToImageMixin, InitFrames
from magicpose_cli.models.motion import make_faithful, motion_transformers, motion_unet
from magicpose_cli.models.networks import AppearanceUNet, MagicPoseDenoiser, PromptEmbedding
from magicpose_cli.models.pose_maps import PoseMapProcessor
from magicpose_cli.models.reference_attention import ReferenceFeatures, StepFeatures, StepReferenceFeatures
from magicpose_cli.models.vae_decoding import LatentDecodingMixin
from magicpose_cli.models.video_denoising import DEFAULT_CONTEXT_FRAMES, DEFAULT_CONTEXT_OVERLAP, NoiseMode, VideoDenoisingMixin

CPU = torch.device("cpu")


class GuidanceMode(str, Enum):
    """``image``: guide on reference and pose (the original default); ``text``: guide on the prompt only."""

    image = "image"
    text = "text"


@dataclass
class MagicPoseOutput(BaseOutput):
    """``images``: N frames (PIL list, NxHxWx3 array or Nx3xHxW tensor in [0,1]) or N latents."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor


def frame_batches(num_frames: int, frames_per_batch: int) -> list[range]:
    """Frame indices of each batch, always cut at multiples of ``frames_per_batch`` (so resuming is exact)."""
    return [range(start, min(start + frames_per_batch, num_frames)) for start in range(0, num_frames, frames_per_batch)]


class MagicPosePipeline(DiffusionPipeline, VideoDenoisingMixin, LatentDecodingMixin, ImageToImageMixin):
    """MagicPose sampling for one frame or a thousand, with or without a motion module.

    All frames share the reference features and, by default, one initial noise, so a video is
    as consistent as the model allows. Without a motion module frames are denoised in batches; per
    step the appearance model runs once for the whole video, and the ControlNet only in branches
    that use the pose. With one (``motion_adapter``, an AnimateDiff MotionAdapter) the main UNet
    becomes a motion UNet running the frames of a context window together, and the whole video is
    denoised step by step (:class:`VideoDenoisingMixin`); appearance attention stays on the spatial
    self-attention, so the motion modules never see reference tokens.

    Guidance modes: ``"image"`` (the original default) guides on reference and pose: the
    unconditional branch is the plain SD UNet with the same text. ``"text"`` keeps reference and
    pose in both branches and guides on the prompt against ``negative_prompt_embeds``.

    Fewer evaluations per frame: ``guidance_interval`` (:class:`GuidanceInterval`) guides only the
    steps in it; k > 1 runs the appearance model (``appearance_reuse_interval``) or the deep blocks of
    UNet and ControlNet (``deep_reuse_interval``, :mod:`~magicpose_cli.models.feature_reuse`; without
    a motion module) every k-th step only. Image-to-image: ``image`` and ``strength`` (:mod:`~magicpose_cli.models.image_to_image`).
    """

    model_cpu_offload_seq = "text_encoder->reference_unet->controlnet->unet->vae"
    _optional_components = ["empty_prompt", "text_encoder", "tokenizer", "motion_adapter"]

    def __init__(
        self,
        unet: UNet2DConditionModel | UNetMotionModel,
        reference_unet: AppearanceUNet,
        controlnet: ControlNetModel,
        vae: AutoencoderKL,
        scheduler: KarrasDiffusionSchedulers,
        empty_prompt: PromptEmbedding | None = None,
        text_encoder=None,
        tokenizer=None,
        motion_adapter: MotionAdapter | None = None,
    ):
        super().__init__()
        if motion_adapter is not None and not isinstance(unet, UNetMotionModel):
            unet = motion_unet(unet, motion_adapter)  # built from the UNet's and the adapter's own modules
        for transformer in motion_transformers(unet):
            make_faithful(transformer)
        self.register_modules(
            unet=unet, reference_unet=reference_unet, controlnet=controlnet, vae=vae, scheduler=scheduler,
            empty_prompt=empty_prompt, text_encoder=text_encoder, tokenizer=tokenizer, motion_adapter=motion_adapter,
        )  # fmt: skip
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.pose_map_processor = PoseMapProcessor()
        self._denoiser: MagicPoseDenoiser | None = None

    @property
    def denoiser(self) -> MagicPoseDenoiser:
        """The noise predictor over the registered networks; rebuilt when one of them is swapped."""
        networks = (self.unet, self.reference_unet, self.controlnet)
        built = self._denoiser
        if built is None or any(a is not b for a, b in zip((built.unet, built.reference_unet, built.controlnet), networks)):
            self._denoiser = built = MagicPoseDenoiser(*networks)
        return built

    @property
    def has_motion(self) -> bool:
        return isinstance(self.unet, UNetMotionModel)

    def __call__(self, *args, return_dict: bool = True, **kwargs) -> MagicPoseOutput | tuple:
        """Generate one frame per pose map: the arguments of :meth:`generate_batches`, its batches joined."""
        outputs = [images for _frames, images in self.generate_batches(*args, **kwargs)]
        images = outputs[0] if len(outputs) == 1 else self._join(outputs)
        self.maybe_free_model_hooks()
        return MagicPoseOutput(images=images) if return_dict else (images,)

    @torch.no_grad()
    def generate_batches(
        self,
        reference_image: torch.Tensor | PIL.Image.Image | np.ndarray,
        pose_maps: torch.Tensor | np.ndarray | Sequence,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.0,
        guidance_mode: GuidanceMode | str = GuidanceMode.image,
        prompt: str | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        noise: NoiseMode | str | None = None,
        frames_per_batch: int = 4,
        output_type: str = "pil",
        callback_on_step_end: Callable[["MagicPosePipeline", int, int, dict], dict | None] | None = None,
        use_reference: bool = True,
        skip_batch: Callable[[range], bool] | None = None,
        context_frames: int | None = None,
        context_overlap: int = DEFAULT_CONTEXT_OVERLAP,
        context_fusion: ContextFusion | str = ContextFusion.pyramid,
        motion_scale: float = 1.0,
        resume_state: DenoisingState | None = None,
        on_state: Callable[[DenoisingState], None] | None = None,
        guidance_interval: GuidanceInterval | tuple[float, float] = GuidanceInterval(),
        deep_reuse_interval: int = 1,
        appearance_reuse_interval: int = 1,
        processes: Processes = Processes(),
        image: torch.Tensor | np.ndarray | Sequence | None = None,
        strength: float = 1.0,
    ) -> Iterator[tuple[range, list[PIL.Image.Image] | np.ndarray | torch.Tensor]]:
        """Yield ``(frame indices, frames)`` batch by batch, so a long video never sits in memory whole.

        ``pose_maps``: any sequence of maps (uint8 HxWx3 arrays, PIL images, 3xHxW tensors in [0,1],
        read one batch or window at a time) or an Nx3xHxW tensor. ``skip_batch(frame indices) -> True``
        skips a batch (e.g. cached) without changing any other frame. ``noise``: see :class:`NoiseMode`
        (None: shared, with a motion module too). The noise is drawn in float32 where
        ``generator`` lives (the CPU if none), so a CPU generator gives it on every device alike.
        ``use_reference=False`` switches appearance attention off. ``image``: an init frame per pose map, noised to ``strength``.

        With a motion module: windows of ``context_frames`` (default 16) overlapping by
        ``context_overlap``, fused by ``context_fusion``; ``motion_scale`` blends the modules' output
        with their input; ``resume_state``/``on_state`` resume and report the whole-video state
        (:class:`DenoisingState`); batches are then decoding batches.

        Several ``processes`` (magicpose_cli.distributed) take the batches not skipped in turn, and with
        a motion module each step's windows too (see ``denoise_video``); every process yields its own.
        """
        pose_maps = self.pose_map_processor.frames(pose_maps)
        height, width = self.check_inputs(reference_image, pose_maps, guidance_mode, frames_per_batch, num_inference_steps, deep_reuse_interval)
        guidance_mode, noise = GuidanceMode(guidance_mode), self.noise_mode(noise)
        num_frames, image = len(pose_maps), self.checked_image(image, strength, len(pose_maps), height, width)
        batches = frame_batches(num_frames, frames_per_batch)
        todo = [index for index, frames in enumerate(batches) if skip_batch is None or not skip_batch(frames)]
        if not todo:
            return
        windows = self.video_windows(num_frames, context_frames, context_overlap, motion_scale)

        # 1. The text, the initial noise, the reference latent and its features per step.
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(prompt, prompt_embeds, negative_prompt_embeds)
        tile_frames = len(windows[0]) if windows else context_frames or DEFAULT_CONTEXT_FRAMES
        initial_noise = self.prepare_latents(num_frames, height, width, generator, latents, noise, tile_frames)
        reference_latents = self.encode_reference(reference_image, height, width) if use_reference else None
        references = self.prepare_reference_features(
            reference_latents, prompt_embeds, negative_prompt_embeds, guidance_scale, guidance_mode, len(todo) > 1 and not self.has_motion,
            appearance_reuse_interval,
        )
        denoising = (prompt_embeds, negative_prompt_embeds, num_inference_steps, guidance_scale, guidance_mode, GuidanceInterval.of(guidance_interval))

        # 2a. With a motion module: the whole video step by step, window by window; then decode batch by batch.
        if self.has_motion:
            video_latents = self.denoise_video(
                initial_noise.expand(num_frames, -1, -1, -1).clone(), pose_maps, references, *denoising, windows,
                context_fusion, resume_state, on_state, callback_on_step_end, processes, self.init_frames(image, range(num_frames), strength),
            )  # fmt: skip
            for batch_index in processes.share(todo):
                frames = batches[batch_index]
                yield frames, self.decode(video_latents[frames.start : frames.stop], output_type)
            return

        # 2b. Without one: denoise and decode batch by batch (each frame is denoised on its own).
        for batch_index in processes.share(todo):
            frames = batches[batch_index]
            batch_poses = self.pose_map_processor.preprocess([pose_maps[index] for index in frames])
            batch_noise = initial_noise[frames.start : frames.stop] if len(initial_noise) > 1 else initial_noise
            batch_latents = self.denoise(
                batch_noise.expand(len(frames), -1, -1, -1).clone(), batch_poses.to(self._execution_device, self.unet.dtype),
                references, *denoising, callback_on_step_end, {"batch_index": batch_index, "num_batches": len(batches)},
                DeepFeatureCache(deep_reuse_interval), self.init_frames(image, frames, strength),
            )  # fmt: skip
            yield frames, self.decode(batch_latents, output_type)

    def check_inputs(
        self, reference_image, pose_maps: Sequence, guidance_mode, frames_per_batch, num_inference_steps, deep_reuse_interval: int = 1
    ) -> tuple[int, int]:
        """Refuse bad inputs before any network runs; returns the pose maps' (height, width)."""
        if guidance_mode not in {mode.value for mode in GuidanceMode}:
            raise ValueError(f"guidance_mode must be one of {[mode.value for mode in GuidanceMode]}, got {guidance_mode!r}")
        if frames_per_batch < 1 or num_inference_steps < 1 or deep_reuse_interval < 1:
            raise ValueError("frames_per_batch, num_inference_steps and deep_reuse_interval must be at least 1")
        if deep_reuse_interval > 1 and self.has_motion:  # its cache would hold every context window's deep features at once
            raise ValueError("deep-feature reuse runs without a motion module only (with one it would keep every window's deep features)")
        if len(pose_maps) == 0:
            raise ValueError("pose_maps must be N x 3 x H x W (N >= 1), got no pose maps")
        height, width = self.pose_map_processor.to_tensor(pose_maps[0]).shape[1:]
        multiple = self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        if height % multiple or width % multiple:
            raise ValueError(f"pose maps are {width}x{height}; width and height must be multiples of {multiple}")
        if isinstance(reference_image, torch.Tensor) and tuple(reference_image.shape[-2:]) != (height, width):
            raise ValueError(f"reference image is {tuple(reference_image.shape[-2:])} but the pose maps are {(height, width)}")
        return height, width

    def denoise(
        self,
        latents: torch.Tensor,
        pose_maps: torch.Tensor,
        references: StepReferenceFeatures | None,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor,
        num_inference_steps: int,
        guidance_scale: float,
        guidance_mode: GuidanceMode,
        guidance_interval: GuidanceInterval = GuidanceInterval(),
        callback_on_step_end=None,
        batch_info: dict | None = None,
        deep_features: DeepFeatureCache | None = None,
        init: InitFrames | None = None,
    ) -> torch.Tensor:
        """The sampling loop for one batch of frames (from its ``init`` frames' latents noised, if given); returns their final latents.

        ``deep_features`` (this batch's own) serves the deep blocks between the steps that compute them.
        """
        latents, first_step = self.starting_latents(latents, num_inference_steps, init)
        deep_features = deep_features or DeepFeatureCache()
        networks = (self.denoiser.unet, self.denoiser.controlnet)
        with self.progress_bar(total=len(self.scheduler.timesteps) - first_step) as progress, reused_deep_features(deep_features, *networks):
            for step_index in range(first_step, len(self.scheduler.timesteps)):
                timestep = self.scheduler.timesteps[step_index]
                model_input = self.scheduler.scale_model_input(latents, timestep)
                reference, negative_reference = self.step_references(references, step_index, latents.device)
                noise = self.guided_noise(
                    model_input, timestep, pose_maps, reference, negative_reference, prompt_embeds, negative_prompt_embeds,
                    self.step_guidance(guidance_scale, guidance_interval, timestep), guidance_mode, deep_features, step_index,
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
        reference: ReferenceFeatures | None,
        negative_reference: ReferenceFeatures | None,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor,
        guidance_scale: float,
        guidance_mode: GuidanceMode,
        deep_features: DeepFeatureCache | None = None,
        step_index: int = 0,
    ) -> torch.Tensor:
        """Classifier-free guided noise prediction for a batch of frames at one timestep
        (``guidance_scale`` 1: the conditional branch alone); each branch is its own stream of ``deep_features``."""
        deep_features = deep_features or DeepFeatureCache()
        with deep_features.stream("conditional", step_index):
            conditional = self.denoiser(latents, timestep, prompt_embeds, reference, pose_maps)
        if self.uses_conditional_only(guidance_scale, guidance_mode, prompt_embeds, negative_prompt_embeds):
            return conditional
        with deep_features.stream("unconditional", step_index):
            if guidance_mode == GuidanceMode.image:
                unconditional = self.denoiser(latents, timestep, prompt_embeds)
            else:
                unconditional = self.denoiser(latents, timestep, negative_prompt_embeds, negative_reference, pose_maps)
        return unconditional + guidance_scale * (conditional - unconditional)

    def step_references(self, references: StepReferenceFeatures | None, step_index: int, device) -> StepFeatures:
        """The reference features serving ``step_index`` of the scheduler's timesteps (none without a reference)."""
        return references.at(step_index, self.scheduler.timesteps, device) if references is not None else (None, None)

    def step_guidance(self, guidance_scale: float, guidance_interval: GuidanceInterval, timestep) -> float:
        """The guidance scale of the step at ``timestep``: 1 (the conditional branch alone) outside the interval."""
        return guidance_scale if guidance_interval.guides(timestep, self.scheduler.config.num_train_timesteps) else 1.0

    @staticmethod
    def uses_conditional_only(guidance_scale: float, guidance_mode: GuidanceMode, prompt_embeds, negative_prompt_embeds) -> bool:
        """No guidance, or "text" guidance between two equal prompts: both branches are the same computation."""
        if guidance_scale == 1.0:
            return True
        same_text = negative_prompt_embeds is prompt_embeds or torch.equal(negative_prompt_embeds, prompt_embeds)
        return guidance_mode == GuidanceMode.text and same_text

    def prepare_reference_features(
        self, reference_latents, prompt_embeds, negative_prompt_embeds, guidance_scale, guidance_mode, keep: bool, reuse_interval: int = 1
    ) -> StepReferenceFeatures | None:
        """Features of the reference per step, for the conditional branch and (``"text"`` mode) the negative one."""
        if reference_latents is None:
            return None
        negative_needed = guidance_mode == GuidanceMode.text and not self.uses_conditional_only(
            guidance_scale, guidance_mode, prompt_embeds, negative_prompt_embeds
        )

        def features(timestep) -> StepFeatures:
            positive = self.denoiser.reference_features(reference_latents, timestep, prompt_embeds)
            negative = self.denoiser.reference_features(reference_latents, timestep, negative_prompt_embeds) if negative_needed else None
            return positive, negative

        return StepReferenceFeatures(features, keep, reuse_interval)

    def encode_reference(self, reference_image, height: int | None = None, width: int | None = None) -> torch.Tensor:
        """Reference latent: VAE posterior mode times the scaling factor (no noise is added).

        A tensor is taken as 1x3xHxW in [-1,1]; a PIL image or uint8 HxWx3 array is resized to the size asked.
        """
        if isinstance(reference_image, np.ndarray):
            reference_image = PIL.Image.fromarray(reference_image)
        if isinstance(reference_image, torch.Tensor):
            image = reference_image if reference_image.ndim == 4 else reference_image.unsqueeze(0)
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

    def prepare_latents(self, num_frames, height, width, generator, latents, noise: NoiseMode, tile_frames: int) -> torch.Tensor:
        """The initial noise: 1 x 4 x h x w (shared by all frames) or ``num_frames`` x 4 x h x w (per
        frame, or ``tile_frames`` draws repeated over the video)."""
        draws = {NoiseMode.shared: 1, NoiseMode.per_frame: num_frames, NoiseMode.tiled: min(tile_frames, num_frames)}[noise]
        shape = (draws, self.unet.config.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        if latents is None:
            draw_device = generator.device if generator is not None else CPU
            latents = randn_tensor(shape, generator=generator, device=draw_device, dtype=torch.float32)
            if noise is NoiseMode.tiled:
                latents = latents[torch.arange(num_frames) % draws]
        elif latents.ndim != 4 or latents.shape[0] not in (1, num_frames) or tuple(latents.shape[1:]) != shape[1:]:
            raise ValueError(f"latents must be 1 or {num_frames} x {shape[1]} x {shape[2]} x {shape[3]}, got {tuple(latents.shape)}")
        return latents.to(self._execution_device, self.unet.dtype)

    @staticmethod
    def _join(outputs: list):
        if isinstance(outputs[0], torch.Tensor):
            return torch.cat(outputs)
        if isinstance(outputs[0], np.ndarray):
            return np.concatenate(outputs)
        return [image for batch in outputs for image in batch]
