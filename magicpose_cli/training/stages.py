"""The training stages of MagicPose: what each trains, what it freezes and the loss it minimises.

Stage 1, ``appearance`` (appearance control pretraining): the appearance model (``reference_unet``)
learns to pass the identity of a reference frame to the frozen SD UNet, with no pose control; the
target is another frame of the same video. Stage 2, ``pose`` (appearance-disentangled pose control):
the pose ControlNet, started from the OpenPose ControlNet, learns together with the appearance model
from stage 1 (only the ControlNet with ``--freeze-appearance``); the SD UNet stays frozen.

A third stage, ``motion``, trains only the motion modules of an AnimateDiff motion module (from a
published one, or from scratch with zero output projections, so it starts as no module at all)
on clips of consecutive frames, with everything else frozen (training/motion_stage.py).

The loss is the original's: plain MSE between the true and the predicted noise at a timestep drawn
uniformly from the 1000 training steps; the reference latent goes in without noise, at the target's
timestep, as at inference (``--wonoise`` in the released scripts). In the motion stage a clip's
frames share one timestep and each frame gets its own noise, as AnimateDiff trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models.networks import MagicPoseDenoiser

STREAM_STEP = 3  # the random stream of noise/timesteps/posterior samples (data.py uses 1 and 2)


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
    "motion": Stage(
        "motion",
        uses_pose=True,
        batch_size=1,
        summary="motion: trains only an AnimateDiff motion module on clips; appearance model, ControlNet and SD UNet frozen",
    ),
}
ALL_PARTS = ("unet", "reference_unet", "controlnet", "vae", "motion_adapter")  # the motion UNet holds the adapter: it comes last


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise MagicPoseError(f"unknown stage {name!r}: choose {' or '.join(STAGES)}")
    return STAGES[name]


def trained_parts(stage: Stage, freeze_appearance: bool = False) -> tuple[str, ...]:
    """Names of the pipeline components a stage trains."""
    if stage.name == "motion":
        if freeze_appearance:
            raise MagicPoseError("--freeze-appearance is for the pose stage; the motion stage freezes everything but the motion module")
        return ("motion_adapter",)
    if not stage.uses_pose:
        if freeze_appearance:
            raise MagicPoseError("--freeze-appearance leaves nothing to train in the appearance stage; leave it out, or train --stage pose")
        return ("reference_unet",)
    return ("controlnet",) if freeze_appearance else ("controlnet", "reference_unet")


def freeze_all_but(components: dict, trained: tuple[str, ...]) -> list[nn.Parameter]:
    """Set ``requires_grad`` so that only the ``trained`` components learn; return their parameters."""
    parameters = []
    for name in [part for part in ALL_PARTS if components.get(part) is not None]:
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
        num_frames: int = 1,
    ) -> torch.Tensor:
        """``num_frames`` > 1: ``latents`` are clips of that many frames, one reference and one timestep each."""
        frame_timesteps = timesteps.repeat_interleave(num_frames) if num_frames > 1 else timesteps
        noisy_latents = self.noise_schedule.add_noise(latents, noise, frame_timesteps)
        features = self.denoiser.reference_features(reference_latents, timesteps, prompt_embeds.expand(len(reference_latents), -1, -1))
        prompt_embeds = prompt_embeds.expand(latents.shape[0], -1, -1)
        prediction = self.denoiser(
            noisy_latents, timesteps, prompt_embeds, reference_features=features, pose_maps=pose_maps,
            num_frames=num_frames if num_frames > 1 else None,
        )  # fmt: skip
        if self.noise_schedule.config.prediction_type == "v_prediction":
            target = self.noise_schedule.get_velocity(latents, noise, frame_timesteps)
        else:
            target = noise
        return F.mse_loss(prediction.float(), target.float())


def sample_generators(seed: int, sample_indices: list[int]) -> list[torch.Generator]:
    """One CPU generator per training sample (its VAE posterior samples, noise and timestep), so that a
    sample's draws never depend on which process, or which batch, it falls in."""
    states = [np.random.SeedSequence([seed, STREAM_STEP, index]).generate_state(2, np.uint32) for index in sample_indices]
    return [torch.Generator().manual_seed(int(high) << 32 | int(low)) for high, low in states]


def _encode(vae, images: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """VAE latents of images in [-1, 1]: a posterior sample times the scaling factor, as the original trains."""
    posterior = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
    return (posterior.sample(generators) * vae.config.scaling_factor).float()


def training_loss(
    loss_module: torch.nn.Module,
    vae,
    batch: dict[str, torch.Tensor],
    prompt_embeds: torch.Tensor,
    generators: list[torch.Generator],
    num_train_timesteps: int,
    uses_pose: bool,
    shared_noise: bool = False,
) -> torch.Tensor:
    """The loss of one micro-batch (of pairs, or of clips: ``target`` B x F x 3 x H x W, whose frames get
    their own noise, or with ``shared_noise`` one draw per clip). Every random draw of sample ``i`` comes
    from ``generators[i]``, so a sample's draws do not depend on the batch, or the process, it is in."""
    num_frames = batch["target"].shape[1] if batch["target"].ndim == 5 else 1
    frame_generators = [generator for generator in generators for _ in range(num_frames)]  # a clip's frames in turn
    with torch.no_grad():
        latents = _encode(vae, batch["target"].flatten(0, 1) if num_frames > 1 else batch["target"], frame_generators)
        reference_latents = _encode(vae, batch["reference"], generators)
    if shared_noise and num_frames > 1:
        clips = randn_tensor((len(generators), 1, *latents.shape[1:]), generator=generators, dtype=torch.float32)
        noise = clips.expand(-1, num_frames, *latents.shape[1:]).flatten(0, 1).to(latents.device)
    else:
        noise = randn_tensor(tuple(latents.shape), generator=frame_generators, dtype=torch.float32).to(latents.device)
    timesteps = torch.cat([torch.randint(0, num_train_timesteps, (1,), generator=generator) for generator in generators])
    pose_maps = batch["pose_map"].to(latents.device) if uses_pose else None
    if pose_maps is not None and num_frames > 1:
        pose_maps = pose_maps.flatten(0, 1)
    return loss_module(latents, reference_latents, prompt_embeds, noise, timesteps.to(latents.device), pose_maps, num_frames)
