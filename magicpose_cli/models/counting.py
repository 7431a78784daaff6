"""Counting what a sampling run computes: the network evaluations of a pipeline, and what each costs.

:class:`NetworkEvaluations` counts with forward hooks on the registered networks, so it counts what
really ran whatever the sampling code does: images per network call, split into calls with the pose
and reference (the conditional branch) and plain ones (the unconditional branch), and into calls
that ran the deep blocks and calls whose deep features were reused. :func:`measure_costs` measures
each kind of call in floating-point operations (``torch.utils.flop_counter``, also on the meta
device, so SD 1.5 sizes cost no memory), so counts add up to UNet-equivalents.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from magicpose_cli.models.feature_reuse import DeepFeatureCache, reused_deep_features

CallKind = tuple[str, str, str]
"""(network, "conditional" or "plain", "deep" or "shallow")."""


class NetworkEvaluations:
    """Images processed by the UNet, the ControlNet and the appearance model of ``pipe``, by kind of call.

    The hooks are registered on the networks' own blocks, so create the counter before sampling
    (not while deep features are being reused) and :meth:`remove` it when done.
    """

    def __init__(self, pipe):
        self.counts: Counter[CallKind] = Counter()
        self._pending: dict[str, dict] = {}
        self._handles = []
        for name in ("unet", "controlnet"):
            network = getattr(pipe, name)
            self._handles += [
                network.register_forward_pre_hook(lambda _m, args, kwargs, name=name: self._start(name, args, kwargs), with_kwargs=True),
                network.mid_block.register_forward_pre_hook(lambda _m, _args, name=name: self._pending[name].update(deep=True)),
                network.register_forward_hook(lambda *_args, name=name: self._finish(name)),
            ]
        self._handles.append(
            pipe.reference_unet.register_forward_pre_hook(lambda _m, args: self.counts.update({("appearance", "conditional", "deep"): args[0].shape[0]}))
        )

    def _start(self, name: str, args: tuple, kwargs: dict) -> None:
        conditional = name == "controlnet" or kwargs.get("down_block_additional_residuals") is not None or bool(kwargs.get("cross_attention_kwargs"))
        sample = args[0]  # a motion UNet's is videos x channels x frames x h x w: it counts the frames
        images = sample.shape[0] * (sample.shape[2] if sample.ndim == 5 else 1)
        self._pending[name] = {"images": images, "kind": "conditional" if conditional else "plain", "deep": False}

    def _finish(self, name: str) -> None:
        call = self._pending.pop(name)
        self.counts[(name, call["kind"], "deep" if call["deep"] else "shallow")] += call["images"]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def clear(self) -> None:
        self.counts.clear()

    def total(self, network: str, kind: str | None = None, depth: str | None = None) -> int:
        """Images ``network`` processed, of one kind and depth of call if given."""
        return sum(count for (name, k, d), count in self.counts.items() if name == network and kind in (None, k) and depth in (None, d))

    def unet_equivalents(self, costs: EvaluationCosts) -> float:
        """All evaluations in plain-UNet evaluations, each kind of call weighed by its measured cost."""
        return sum(count * costs.of(kind) for kind, count in self.counts.items())


@dataclass(frozen=True)
class EvaluationCosts:
    """Floating-point operations of each kind of call per image, as fractions of a plain UNet call's."""

    unet_conditional: float
    unet_plain_shallow: float
    unet_conditional_shallow: float
    controlnet: float
    controlnet_shallow: float
    appearance: float
    unet_flops: float  # a plain UNet call's, per image

    def of(self, kind: CallKind) -> float:
        network, condition, depth = kind
        if network == "appearance":
            return self.appearance
        if network == "controlnet":
            return self.controlnet if depth == "deep" else self.controlnet_shallow
        if condition == "plain":
            return 1.0 if depth == "deep" else self.unet_plain_shallow
        return self.unet_conditional if depth == "deep" else self.unet_conditional_shallow


def count_flops(run) -> int:
    """Floating-point operations of ``run()`` (on the meta device too)."""
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


@torch.no_grad()
def measure_costs(pipe, latent_height: int, latent_width: int) -> EvaluationCosts:
    """What each kind of call costs ``pipe``'s networks for one image of ``latent_height x latent_width``
    latents (wherever the pipeline lives; on the meta device nothing is computed or stored)."""
    device, dtype = pipe.unet.device, pipe.unet.dtype
    latents = torch.zeros(1, pipe.unet.config.in_channels, latent_height, latent_width, device=device, dtype=dtype)
    pose = torch.zeros(1, 3, latent_height * pipe.vae_scale_factor, latent_width * pipe.vae_scale_factor, device=device, dtype=dtype)
    context = torch.zeros(1, 77, pipe.unet.config.cross_attention_dim, device=device, dtype=dtype)
    timestep, denoiser = torch.tensor(500, device=device), pipe.denoiser
    with FlopCounterMode(display=False) as counter:
        reference = denoiser.reference_features(latents, timestep, context)
    appearance = counter.get_total_flops()

    def controlnet():
        denoiser.controlnet(latents, timestep, context, controlnet_cond=pose, return_dict=False)

    def calls():
        return {"plain": lambda: denoiser(latents, timestep, context), "conditional": lambda: denoiser(latents, timestep, context, reference, pose)}

    full = {kind: count_flops(run) for kind, run in calls().items()}
    cache = DeepFeatureCache(interval=2)
    shallow = {}
    with reused_deep_features(cache, pipe.unet, pipe.controlnet):
        for kind, run in calls().items():
            with cache.stream(kind, 0):
                run()
            with cache.stream(kind, 1):
                shallow[kind] = count_flops(run)
        with cache.stream("controlnet", 0):
            controlnet()
        with cache.stream("controlnet", 1):
            controlnet_shallow = count_flops(controlnet)
    controlnet_full = count_flops(controlnet)
    unet = full["plain"]
    return EvaluationCosts(
        unet_conditional=(full["conditional"] - controlnet_full) / unet,
        unet_plain_shallow=shallow["plain"] / unet,
        unet_conditional_shallow=(shallow["conditional"] - controlnet_shallow) / unet,
        controlnet=controlnet_full / unet,
        controlnet_shallow=controlnet_shallow / unet,
        appearance=appearance / unet,
        unet_flops=float(unet),
    )
