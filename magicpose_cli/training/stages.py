"""The two training stages of MagicPose: what each trains, what it freezes and the loss it minimises.

Stage 1, ``appearance`` (appearance control pretraining): the appearance model (``reference_unet``)
learns to pass the identity of a reference frame to the frozen SD UNet, with no pose control; the
target is another frame of the same video. Stage 2, ``pose`` (appearance-disentangled pose control):
the pose ControlNet, started from the OpenPose ControlNet, learns together with the appearance model
from stage 1 (only the ControlNet with ``--freeze-appearance``); the SD UNet stays frozen.

The loss is the original's: plain MSE between the true and the predicted noise at a timestep drawn
uniformly from the 1000 training steps; the reference latent goes in without noise, at the target's
timestep, as at inference (``--wonoise`` in the released scripts).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import nn

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models.networks import MagicPoseDenoiser


@dataclass(frozen=True)
class Stage:
    name: str
    uses_pose: bool
    batch_size: int  # per device, as the released script for the stage
    summary: str


STAGES = {
    "appearance": Stage(
        "appearance",
        uses_pose=False,
        batch_size=32,
        summary="stage 1: trains the appearance model (reference_unet); SD UNet frozen, no pose ControlNet",
    ),
    "pose": Stage(
        "pose",
        uses_pose=True,
        batch_size=8,
        summary="stage 2: trains the pose ControlNet with the appearance model (or alone with --freeze-appearance); "
        "SD UNet frozen",
    ),
}
ALL_PARTS = ("unet", "reference_unet", "controlnet", "vae")


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise MagicPoseError(f"unknown stage {name!r}: choose {' or '.join(STAGES)}")
    return STAGES[name]


def trained_parts(stage: Stage, freeze_appearance: bool = False) -> tuple[str, ...]:
    """Names of the pipeline components a stage trains."""
    if not stage.uses_pose:
        if freeze_appearance:
            raise MagicPoseError("--freeze-appearance leaves nothing to train in the appearance stage")
        return ("reference_unet",)
    return ("controlnet",) if freeze_appearance else ("controlnet", "reference_unet")


def freeze_all_but(components: dict, trained: tuple[str, ...]) -> list[nn.Parameter]:
    """Set ``requires_grad`` so that only the ``trained`` components learn; return their parameters."""
    parameters = []
    for name in ALL_PARTS:
        module: nn.Module = components[name]
        module.requires_grad_(name in trained)
        module.train(name in trained)
        if name in trained:
            parameters.extend(module.parameters())
    return parameters


class DenoisingLoss(nn.Module):
    """The training objective as one module, so that accelerate/DDP can wrap it and sync its gradients.

    ``forward`` takes clean target and reference latents (and the target pose maps in stage 2),
    noises the targets with ``noise`` at ``timesteps`` and returns the mean squared error of the
    prediction against its target (the noise, or the velocity for v-prediction models).
    """

    def __init__(self, denoiser: MagicPoseDenoiser, scheduler_config: dict) -> None:
        super().__init__()
        # The pipeline's own denoiser: its attention processors are the ones installed on the UNets.
        self.denoiser = denoiser
        self.unet, self.reference_unet, self.controlnet = denoiser.unet, denoiser.reference_unet, denoiser.controlnet
        self.noise_schedule = DDPMScheduler.from_config(scheduler_config)

    def forward(
        self,
        latents: torch.Tensor,
        reference_latents: torch.Tensor,
        prompt_embeds: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        pose_maps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        noisy_latents = self.noise_schedule.add_noise(latents, noise, timesteps)
        prompt_embeds = prompt_embeds.expand(latents.shape[0], -1, -1)
        features = self.denoiser.reference_features(reference_latents, timesteps, prompt_embeds)
        prediction = self.denoiser(noisy_latents, timesteps, prompt_embeds, reference_features=features, pose_maps=pose_maps)
        if self.noise_schedule.config.prediction_type == "v_prediction":
            target = self.noise_schedule.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        return F.mse_loss(prediction.float(), target.float())
