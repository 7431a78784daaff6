"""Sampling variants for the speed benchmarks, resolved exactly as `magicpose retarget` resolves them.

A variant is written as ``quality``, ``preset=fast``, ``recipe=lcm-lora`` (a few-step recipe of
docs/plug-in.md, ``RECIPES``) or comma-separated options, e.g.
``scheduler=dpm,steps=10,interval=0-0.7,deep=2,app=2`` (``interval``: --guidance-interval,
``deep``: --deep-reuse, ``app``: --appearance-reuse). Options a variant leaves out come from the
model's recommendation, as in retarget.
"""

from __future__ import annotations

from functools import partial

from magicpose_cli.models.loading import make_scheduler
from magicpose_cli.models.settings import RecommendedSettings
from magicpose_cli.retarget import RetargetOptions, Sampling, resolve_sampling

_FIELDS = {
    "preset": ("preset", str),
    "scheduler": ("scheduler", str),
    "steps": ("steps", int),
    "guidance": ("guidance", float),
    "interval": ("guidance_interval", lambda text: tuple(float(end) for end in text.split("-"))),
    "deep": ("deep_reuse", int),
    "app": ("appearance_reuse", int),
}


RECIPES = {
    "lcm-lora": "scheduler=lcm,steps=4,guidance=1",  # latent-consistency/lcm-lora-sdv1-5
    "hyper-sd-8-cfg": "scheduler=ddim,steps=8,guidance=5",  # ByteDance/Hyper-SD Hyper-SD15-8steps-CFG-lora
    "hyper-sd-12-cfg": "scheduler=ddim,steps=12,guidance=5",  # ByteDance/Hyper-SD Hyper-SD15-12steps-CFG-lora
    "tcd": "scheduler=tcd,steps=4,guidance=1",  # h1t/TCD-SD15-LoRA
    "animatelcm": "scheduler=lcm,steps=6,guidance=1.5",  # wangfuyun/AnimateLCM: its motion module and its LoRA
    "animatediff-lightning": "scheduler=dpm-1,steps=4,guidance=1",  # ByteDance/AnimateDiff-Lightning 4-step module
}
"""The few-step recipes of docs/plug-in.md (each LoRA or module named beside it) as variants."""


def variant_options(spec: str) -> RetargetOptions:
    """The retarget options a variant spec stands for."""
    if spec == "quality":
        return RetargetOptions()
    if spec.startswith("recipe="):
        return variant_options(RECIPES[spec.removeprefix("recipe=")])
    fields = {}
    for item in spec.split(","):
        name, _, value = item.partition("=")
        if name not in _FIELDS:
            raise SystemExit(f"unknown variant field {name!r} in {spec!r}; known: {', '.join(_FIELDS)}")
        field, parse = _FIELDS[name]
        fields[field] = parse(value)
    return RetargetOptions(**fields)


def resolve_variant(spec: str, recommended: RecommendedSettings, batch_size: int = 4) -> Sampling:
    options = variant_options(spec)
    options.batch_size = batch_size
    return resolve_sampling(options, recommended, "cpu", "float32")[0]


def describe(sampling: Sampling) -> str:
    """The resolved settings in a few words, e.g. ``dpm 10, guided 0-0.7, deep reuse 2``."""
    words = [f"{sampling.scheduler.value} {sampling.steps}"]
    if sampling.guidance_interval != (0.0, 1.0):
        words.append("guided {:g}-{:g}".format(*sampling.guidance_interval))
    if sampling.deep_reuse > 1:
        words.append(f"deep reuse {sampling.deep_reuse}")
    if sampling.appearance_reuse > 1:
        words.append(f"appearance reuse {sampling.appearance_reuse}")
    return ", ".join(words)


def sampler_for(pipe, sampling: Sampling, scheduler_config):
    """``pipe`` with the variant's scheduler, as a callable that samples with the variant's settings."""
    pipe.scheduler = make_scheduler(sampling.scheduler, scheduler_config)
    return partial(
        pipe,
        guidance_interval=sampling.guidance_interval,
        deep_reuse_interval=sampling.deep_reuse,
        appearance_reuse_interval=sampling.appearance_reuse,
    )
