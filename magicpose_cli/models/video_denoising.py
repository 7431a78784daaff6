"""Denoising a whole video with a motion module: every step, every context window, then one fusion.

With a motion module a frame's noise depends on the frames around it, so the video is denoised
step by step rather than batch by batch: at each step the appearance model runs once for the whole
video (its features depend on the reference and the timestep only), each context window's frames go
through the motion UNet together (the ControlNet still sees one frame at a time), the windows'
predictions are fused per frame, and the scheduler steps all frames at once. Only the latents are
held for the whole video; each window's pose maps are drawn when it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from enum import Enum

import torch

from magicpose_cli.distributed import Processes
from magicpose_cli.models.context_windows import ContextFusion, context_windows, fuse_window_predictions
from magicpose_cli.models.denoising_state import DenoisingState, restore_scheduler_state, scheduler_state
from magicpose_cli.models.guidance import GuidanceInterval
from magicpose_cli.models.motion import set_motion_scale
from magicpose_cli.models.reference_attention import ReferenceFeatures

DEFAULT_CONTEXT_FRAMES = 16  # the clip length every published SD 1.5 motion module was trained on
DEFAULT_CONTEXT_OVERLAP = 4


class NoiseMode(str, Enum):
    """The initial noise: one draw ``shared`` by all frames (the default without a motion module),
    a draw ``per-frame`` (as AnimateDiff trains), or one window-long draw ``tiled`` over the video."""

    shared = "shared"
    per_frame = "per-frame"
    tiled = "tiled"


DEFAULT_MOTION_NOISE = NoiseMode.shared  # with a motion module: best of the three in benchmarks/eval_motion.py (docs/motion.md)


class VideoDenoisingMixin:
    """The pipeline's loop for videos whose frames move together (see the module's docstring)."""

    def denoise_video(
        self,
        latents: torch.Tensor,
        pose_maps: Sequence,
        references,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor,
        num_inference_steps: int,
        guidance_scale: float,
        guidance_mode,
        guidance_interval: GuidanceInterval,
        windows: list[range],
        fusion: ContextFusion | str = ContextFusion.pyramid,
        resume_state: DenoisingState | None = None,
        on_state: Callable[[DenoisingState], None] | None = None,
        callback_on_step_end=None,
        processes: Processes = Processes(),
        init=None,
    ) -> torch.Tensor:
        """The sampling loop over the whole video's initial ``latents`` (noise, or with ``init``, an
        :class:`~magicpose_cli.models.image_to_image.InitFrames`, the init frames noised with it); returns the final latents.

        ``resume_state`` continues a run from its state after some step; ``on_state`` hears the
        state after every step (to save it, say), while it is still current. Several ``processes``
        predict each step's windows in turn and gather the predictions; every process then fuses all
        windows in order, as one process does, and holds the same latents.
        """
        latents, first_step = self.starting_latents(latents, num_inference_steps, init)
        total_steps = len(self.scheduler.timesteps)
        if resume_state is not None:
            self.check_resume_state(resume_state, latents, total_steps)
            latents, first_step = resume_state.latents.to(latents.device, latents.dtype), resume_state.steps_done
            restore_scheduler_state(self.scheduler, resume_state.scheduler, latents.device)
        with self.progress_bar(total=total_steps - first_step) as progress:
            for step_index in range(first_step, total_steps):
                timestep = self.scheduler.timesteps[step_index]
                model_input = self.scheduler.scale_model_input(latents, timestep)
                reference, negative_reference = self.step_references(references, step_index, latents.device)
                mine = self.predict_windows(
                    processes.share(windows), model_input, timestep, pose_maps, reference, negative_reference, prompt_embeds,
                    negative_prompt_embeds, self.step_guidance(guidance_scale, guidance_interval, timestep), guidance_mode,
                )  # fmt: skip
                template = model_input[windows[0].start : windows[0].stop]
                predictions = processes.gather_shares(mine, len(windows), template) if processes.count > 1 else mine
                noise = fuse_window_predictions(windows, predictions, len(latents), fusion)
                latents = self.scheduler.step(noise, timestep, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    returned = callback_on_step_end(self, step_index, timestep, {"latents": latents, "batch_index": 0, "num_batches": 1})
                    latents = (returned or {}).get("latents", latents)
                if on_state is not None:
                    on_state(DenoisingState(step_index + 1, total_steps, latents, scheduler_state(self.scheduler)))
                progress.update()
        return latents

    def predict_windows(
        self,
        windows: list[range],
        latents: torch.Tensor,
        timestep,
        pose_maps: Sequence,
        reference: ReferenceFeatures | None,
        negative_reference: ReferenceFeatures | None,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor,
        guidance_scale: float,
        guidance_mode,
    ) -> Iterator[torch.Tensor]:
        """The guided noise prediction of each window of the video's ``latents``, one window at a time."""
        for window in windows:
            window_poses = self.pose_map_processor.preprocess([pose_maps[index] for index in window])
            yield self.guided_noise(
                latents[window.start : window.stop], timestep, window_poses.to(latents.device, self.unet.dtype), reference,
                negative_reference, prompt_embeds, negative_prompt_embeds, guidance_scale, guidance_mode,
            )  # fmt: skip

    def noise_mode(self, noise: NoiseMode | str | None) -> NoiseMode:
        """The noise asked for, or the default: shared, with a motion module DEFAULT_MOTION_NOISE (shared too, as measured)."""
        if noise is None:
            return DEFAULT_MOTION_NOISE if self.has_motion else NoiseMode.shared
        return NoiseMode(noise)

    def video_windows(self, num_frames: int, context_frames: int | None, context_overlap: int, motion_scale: float) -> list[range]:
        """The motion module's context windows over the video (none without a module); sets the motion scale."""
        if not self.has_motion:
            return []
        positions = self.unet.config.motion_max_seq_length
        length = context_frames or min(DEFAULT_CONTEXT_FRAMES, positions)
        if length > positions:
            raise ValueError(f"context_frames {length} exceeds the motion module's {positions} positions")
        set_motion_scale(self.unet, motion_scale)
        return context_windows(num_frames, length, context_overlap)

    @staticmethod
    def check_resume_state(state: DenoisingState, latents: torch.Tensor, total_steps: int) -> None:
        if state.total_steps != total_steps or tuple(state.latents.shape) != tuple(latents.shape):
            raise ValueError(
                f"the resume state is of {state.total_steps} steps for latents {tuple(state.latents.shape)}, "
                f"this run has {total_steps} steps and latents {tuple(latents.shape)}"
            )
