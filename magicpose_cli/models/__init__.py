"""MagicPose networks and pipeline on diffusers components."""

from magicpose_cli.models.configs import tiny_components
from magicpose_cli.models.networks import AppearanceUNet, MagicPoseDenoiser, PromptEmbedding
from magicpose_cli.models.pipeline import MagicPoseOutput, MagicPosePipeline

__all__ = [
    "AppearanceUNet",
    "MagicPoseDenoiser",
    "MagicPoseOutput",
    "MagicPosePipeline",
    "PromptEmbedding",
    "tiny_components",
]
