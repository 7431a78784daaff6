"""MagicPose networks and pipeline on diffusers components.

The names below are imported on first use, so that a light module of this package (the
recommended settings, say) can be imported without torch and diffusers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AppearanceUNet": "magicpose_cli.models.networks",
    "MagicPoseDenoiser": "magicpose_cli.models.networks",
    "PromptEmbedding": "magicpose_cli.models.networks",
    "MagicPoseOutput": "magicpose_cli.models.pipeline",
    "MagicPosePipeline": "magicpose_cli.models.pipeline",
    "tiny_components": "magicpose_cli.models.configs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
