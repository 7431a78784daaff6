"""Loading a MagicPose model folder for inference: device, dtype, scheduler and memory savers.

The choices are enums (magicpose_cli.choices: the CLI offers their values) and are resolved to torch objects once.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from magicpose_cli.choices import Device, Precision, Scheduler
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.hashing import files_in
from magicpose_cli.models.plugin_options import Plugins




TORCH_DTYPES = {Precision.fp16: torch.float16, Precision.bf16: torch.bfloat16, Precision.fp32: torch.float32}


def resolve_device(device: Device | str) -> torch.device:
    """``auto``: the first of cuda, mps, cpu that this machine has; a named one must be there."""
    device = Device(device)
    mps_available = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device is Device.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_available else "cpu")
    if device is Device.cuda and not torch.cuda.is_available():
        raise MagicPoseError("--device cuda asked for, but no CUDA GPU is available; pass --device auto or cpu")
    if device is Device.mps and not mps_available:
        raise MagicPoseError("--device mps asked for, but MPS is not available; pass --device auto or cpu")
    return torch.device(device.value)


def resolve_dtype(precision: Precision | str, device: torch.device) -> torch.dtype:
    """``auto``: float16 on CUDA, float32 elsewhere. The CPU computes in float32 or bfloat16 only."""
    precision = Precision(precision)
    if precision is Precision.auto:
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision is Precision.fp16 and device.type == "cpu":
        raise MagicPoseError("--dtype fp16 needs a GPU; on the CPU use bf16 or fp32")
    return TORCH_DTYPES[precision]


def make_scheduler(scheduler: Scheduler | str, config):
    """The sampler asked for over a model's noise schedule (``config``: its scheduler's config)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

    scheduler = Scheduler(scheduler)
    if scheduler in (Scheduler.lcm, Scheduler.tcd):
        from magicpose_cli.models.few_step import few_step_scheduler

        return few_step_scheduler(scheduler.value, config)
    if scheduler is Scheduler.dpm_karras:
        return DPMSolverMultistepScheduler.from_config(config, use_karras_sigmas=True)
    if scheduler is Scheduler.dpm1:
        return DPMSolverMultistepScheduler.from_config(config, solver_order=1)
    return {Scheduler.ddim: DDIMScheduler, Scheduler.dpm: DPMSolverMultistepScheduler, Scheduler.unipc: UniPCMultistepScheduler}[
        scheduler
    ].from_config(config)


def load_pipeline(
    folder: Path,
    device: torch.device,
    dtype: torch.dtype,
    scheduler: Scheduler | str = Scheduler.ddim,
    vae_slicing: bool = False,
    vae_tiling: bool = False,
    cpu_offload: bool = False,
    motion_module: Path | None = None,
    plugins: Plugins = Plugins(),
):
    """The pipeline of ``folder`` on ``device`` in ``dtype``, quiet, with the scheduler and memory savers asked for.

    ``plugins`` (models/plugins.py): another SD 1.5's UNet, VAE or text encoder, LoRAs, and with a
    prompt the CLIP text encoder and tokenizer; without one the empty prompt is the folder's stored
    embedding. ``motion_module`` (a file or MotionAdapter folder, see models/motion_loading.py) puts
    a motion module into the main UNet; without it none runs, whatever the folder holds.
    """
    pipe = _load_networks(folder, device, dtype, cpu_offload, motion_module, plugins)
    return _configure(pipe, dict(pipe.scheduler.config), scheduler, vae_slicing, vae_tiling)


def _load_networks(
    folder: Path, device: torch.device, dtype: torch.dtype, cpu_offload: bool, motion_module: Path | None = None, plugins: Plugins = Plugins()
):
    from diffusers.utils import logging as diffusers_logging

    from magicpose_cli.models.pipeline import MagicPosePipeline
    from magicpose_cli.models.plugins import plugged_components

    diffusers_logging.disable_progress_bar()
    motion_adapter = None
    if motion_module is not None:
        from magicpose_cli.models.motion_loading import load_motion_adapter

        motion_adapter = load_motion_adapter(motion_module)
    pipe = MagicPosePipeline.from_pretrained(folder, dtype=dtype, motion_adapter=motion_adapter, **plugged_components(folder, plugins, dtype))
    if plugins.loras:
        from magicpose_cli.models.lora import apply_loras

        apply_loras(pipe, plugins.loras, plugins.text)
    if cpu_offload and device.type != "cpu":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _configure(pipe, scheduler_config: dict, scheduler: Scheduler | str, vae_slicing: bool, vae_tiling: bool):
    """A fresh scheduler of the kind asked for (from the folder's own config) and the VAE's memory savers on or off."""
    pipe.scheduler = make_scheduler(scheduler, scheduler_config)
    pipe.vae.enable_slicing() if vae_slicing else pipe.vae.disable_slicing()
    pipe.vae.enable_tiling() if vae_tiling else pipe.vae.disable_tiling()
    return pipe


def files_stamp(path: Path) -> tuple:
    """The path and the name (relative to it), size and modification time of every file it is or
    holds: cheap to read, and different whenever a file is written again."""
    path = Path(path).resolve()
    stamps = ((file.relative_to(path).as_posix(), file.stat()) for file in files_in(path))
    return (str(path), *((name, stat.st_size, stat.st_mtime_ns) for name, stat in stamps))


class LoadedPipelines:
    """Pipelines kept loaded from one run to the next (``magicpose batch``, ``magicpose ui``): the networks
    are loaded once per model folder, device, dtype, offloading, motion module and plugins (base model,
    VAE, LoRAs and their scales, text); the scheduler and the VAE's savers are set per run. The folder,
    the module and the plugins count with their files (``files_stamp``),
    so weights written again while the app runs are loaded anew.

    Only the latest model is kept, so that two models never share the GPU's memory. ``loading(folder)``
    gives a context that a load runs in (the app shows it as progress).
    """

    def __init__(self, loading: Callable[[Path], AbstractContextManager] = lambda folder: nullcontext()) -> None:
        self._kept: dict[tuple, tuple[object, dict]] = {}
        self.loads = 0
        self.loading = loading

    def holds(self, folder: Path) -> bool:
        """Whether the networks of ``folder`` (as its files are now) are loaded already."""
        return any(key[0] == files_stamp(folder) for key in self._kept)

    def get(self, folder: Path, device: torch.device, dtype: torch.dtype, scheduler: Scheduler | str = Scheduler.ddim,
            vae_slicing: bool = False, vae_tiling: bool = False, cpu_offload: bool = False, motion_module: Path | None = None,
            plugins: Plugins = Plugins()):  # fmt: skip
        """The pipeline as :func:`load_pipeline` gives it, loading its networks only when not kept already."""
        motion = None if motion_module is None else files_stamp(motion_module)
        plugged = (tuple(files_stamp(path) for path in plugins.files()), tuple(lora.scale for lora in plugins.loras), plugins.text)
        key = (files_stamp(folder), str(device), dtype, cpu_offload and device.type != "cpu", motion, plugged)
        if key not in self._kept:
            if self._kept:
                self._kept.clear()
                gc.collect()  # the old networks go before the new ones load
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            with self.loading(Path(folder)):
                pipe = _load_networks(folder, device, dtype, cpu_offload, motion_module, plugins)
            self._kept[key] = (pipe, dict(pipe.scheduler.config))
            self.loads += 1
        pipe, scheduler_config = self._kept[key]
        return _configure(pipe, scheduler_config, scheduler, vae_slicing, vae_tiling)
