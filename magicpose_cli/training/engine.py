"""The training loop: accelerate (one GPU, several, several machines), checkpoints, EMA, samples, logs.

Everything random about a training sample (which pair, its crops, VAE posterior samples, noise,
timestep) is drawn from generators seeded by ``(seed, sample index)``, and micro-step ``m`` of
process ``r`` of ``N`` takes samples ``(m * N + r) * B ...``: with the trained weights, optimiser,
LR schedule and EMA restored from a checkpoint, a resumed run repeats exactly what an uninterrupted
run would have done, and N processes with batch B compute what one process with batch N * B does
(but for the order of float sums).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from magicpose_cli.distributed import join_processes
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.files import atomic_directory, atomic_write_text, removed_on_failure
from magicpose_cli.models import MagicPosePipeline
from magicpose_cli.models.loading import TORCH_DTYPES, Precision
from magicpose_cli.training.checkpoints import (
    checkpoint_dir,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from magicpose_cli.training.data import DatasetScan, PairDataset, StepBatchSampler, evaluation_pairs, find_training_videos, report_scan
from magicpose_cli.training.loss_log import LossLog
from magicpose_cli.training.model_init import load_initial_pipeline
from magicpose_cli.training.samples import sample_grid, save_sample_grid
from magicpose_cli.training.clips import clip_span
from magicpose_cli.training.motion_stage import MOTION_MODULE_DIR, clip_dataset, sample_strip, save_motion_module, save_sample_strip, with_motion_module
from magicpose_cli.training.stages import DenoisingLoss, Stage, freeze_all_but, get_stage, sample_generators, trained_parts, training_loss

CONFIG_FILE = "train_config.json"
MODEL_DIR = "model"
MIXED_PRECISION = {"no": Precision.fp32, "fp16": Precision.fp16, "bf16": Precision.bf16}
"""accelerate's --mixed-precision names, and the precision the frozen networks then compute in."""
# Settings a resumed run must share with the run it continues: they decide what the checkpoint holds.
RESUME_MUST_MATCH = ("stage", "freeze_appearance", "ema")
MOTION_RESUME_MUST_MATCH = ("clip_frames", "clip_stride", "clip_noise", "motion_module")
CLIP_NOISE = ("per-frame", "shared")


@dataclass
class TrainConfig:
    """Everything ``magicpose train`` needs; defaults follow the released training scripts."""

    data: Path
    stage: str
    model: Path
    output_dir: Path
    controlnet_init: Path | None = None
    resolution: int = 512
    batch_size: int | None = None  # per process; None: the stage's (32 appearance, 8 pose)
    max_steps: int = 100_000
    learning_rate: float = 1e-5
    warmup_steps: int = 0
    gradient_accumulation: int = 1
    mixed_precision: str = "no"
    max_grad_norm: float = 0.5
    checkpoint_every: int = 1000
    checkpoints_total_limit: int = 3  # 0: keep every checkpoint
    sample_every: int = 500
    sample_count: int = 4
    sample_steps: int = 50
    resume: bool = False
    max_frame_gap: int | None = None
    freeze_appearance: bool = False
    seed: int = 42
    ema: bool = False
    ema_decay: float = 0.9999
    gradient_checkpointing: bool = False
    num_workers: int = 2
    clip_frames: int = 16  # the motion stage: frames per clip, every clip_stride-th, from motion_module (None: from scratch)
    clip_stride: int = 4
    clip_noise: str = "per-frame"  # as AnimateDiff trains; "shared": one draw per clip, as MagicPose samples by default
    motion_module: Path | None = None

    def to_json(self) -> str:
        return json.dumps({key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}, indent=2)


def _check_paths(config: TrainConfig) -> None:
    """Paths of the wrong kind, found before any slow work."""
    if not Path(config.data).is_dir():
        raise MagicPoseError(f"training data folder not found: {config.data}")
    if Path(config.output_dir).exists() and not Path(config.output_dir).is_dir():
        raise MagicPoseError(f"-o {config.output_dir} is a file; the run folder must be a folder")
    if config.controlnet_init is not None and not Path(config.controlnet_init).exists():
        raise MagicPoseError(f"--controlnet-init not found: {config.controlnet_init}")


def check_config(config: TrainConfig) -> Stage:
    stage = get_stage(config.stage)
    trained_parts(stage, config.freeze_appearance)  # refuses --freeze-appearance in stage 1
    if config.clip_noise not in CLIP_NOISE:
        raise MagicPoseError(f"--clip-noise must be one of {', '.join(CLIP_NOISE)}, got {config.clip_noise!r}")
    if config.mixed_precision not in MIXED_PRECISION:
        raise MagicPoseError(f"--mixed-precision must be one of {', '.join(MIXED_PRECISION)}, got {config.mixed_precision!r}")
    positive = {"--max-steps": config.max_steps, "--gradient-accumulation": config.gradient_accumulation,
                "--resolution": config.resolution, "--sample-steps": config.sample_steps,
                "--batch-size": config.batch_size, "--max-frame-gap": config.max_frame_gap,
                "--clip-frames": config.clip_frames, "--clip-stride": config.clip_stride}  # fmt: skip
    for option, value in positive.items():
        if value is not None and value < 1:
            raise MagicPoseError(f"{option} must be at least 1, got {value}")
    for option, value in {"--checkpoint-every": config.checkpoint_every, "--sample-every": config.sample_every,
                          "--warmup-steps": config.warmup_steps, "--num-workers": config.num_workers,
                          "--checkpoints-total-limit": config.checkpoints_total_limit}.items():  # fmt: skip
        if value < 0:
            raise MagicPoseError(f"{option} must not be negative, got {value}")
    if config.learning_rate <= 0:
        raise MagicPoseError(f"--learning-rate must be positive, got {config.learning_rate}")
    _check_paths(config)
    return stage


def _resume_point(config: TrainConfig) -> Path | None:
    """The checkpoint to continue from, after checking that the run folder fits the request."""
    found = latest_checkpoint(config.output_dir)
    if not config.resume:
        if found is not None:
            raise MagicPoseError(f"{config.output_dir} already holds checkpoints: pass --resume to continue, or choose another -o")
        return None
    if found is None:
        raise MagicPoseError(f"--resume: no checkpoint in {config.output_dir / 'checkpoints'}; leave out --resume to start the run there")
    saved_file = config.output_dir / CONFIG_FILE
    if saved_file.is_file():
        saved = json.loads(saved_file.read_text())
        for key in RESUME_MUST_MATCH + (MOTION_RESUME_MUST_MATCH if config.stage == "motion" else ()):
            if saved.get(key) != json.loads(config.to_json())[key]:
                raise MagicPoseError(
                    f"--resume: this run was started with {key}={saved.get(key)!r}, not {getattr(config, key)!r}; "
                    "give the options it started with, or choose another -o"
                )
    return found


def _empty_prompt_embeds(pipeline: MagicPosePipeline) -> torch.Tensor:
    try:
        with torch.no_grad():
            return pipeline.encode_prompt("" if pipeline.empty_prompt is None else None, None, None)[0].float()
    except ValueError as error:
        raise MagicPoseError(
            f"the model stores no empty-prompt embedding and has no text encoder ({error}); "
            "convert a checkpoint that includes its CLIP text encoder (published MagicPose ones do)"
        ) from None


def _check_resolution(pipeline: MagicPosePipeline, resolution: int) -> None:
    multiple = pipeline.vae_scale_factor * 2 ** (len(pipeline.unet.config.block_out_channels) - 1)
    if resolution % multiple:
        raise MagicPoseError(f"--resolution must be a multiple of {multiple} for this model, got {resolution}")


class Trainer:
    """One training run; ``run()`` trains to ``max_steps`` and returns the saved model folder."""

    def __init__(self, config: TrainConfig, console: Console | None = None) -> None:
        self.config = config
        self.console = console or Console(stderr=True)
        self.stage = check_config(config)
        self.trained = trained_parts(self.stage, config.freeze_appearance)
        self.batch_size = config.batch_size or self.stage.batch_size
        self.run_dir = Path(config.output_dir)
        resume_from = _resume_point(config)
        self.processes = join_processes(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        self.accelerator = Accelerator(
            cpu=self.processes.count > 1 and not torch.cuda.is_available(),  # gloo: a plain state leaves each process alone
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        torch.manual_seed(config.seed)
        with removed_on_failure(self.run_dir):  # a run that cannot start leaves no run folder behind
            self.scan, self.pipeline = self.processes.main_first(self._find_data_and_model)  # pose extraction, conversion fill the caches once
            _check_resolution(self.pipeline, config.resolution)
            if self.is_main:
                report_scan(self.scan, self.console)
                self.run_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(self.run_dir / CONFIG_FILE, config.to_json())
            self._setup_models()
            self.step = 0
            if resume_from is not None:
                self._restore(resume_from)
            self.dataset = self._dataset(train=True)

    def _find_data_and_model(self) -> tuple[DatasetScan, MagicPosePipeline]:
        scan = find_training_videos(self.config.data, self.shortest_video, report=self._say)
        pipeline = load_initial_pipeline(self.config.model, self.run_dir, self.config.controlnet_init)
        return scan, with_motion_module(pipeline, self.config.motion_module) if self.is_motion else pipeline

    @property
    def is_motion(self) -> bool:
        return self.stage.name == "motion"

    @property
    def shortest_video(self) -> int:
        """The fewest usable frames a training video needs: two (a pair), or what a clip spans."""
        return clip_span(self.config.clip_frames, self.config.clip_stride) if self.is_motion else 2

    def _dataset(self, train: bool):
        if self.is_motion:
            return clip_dataset(self.scan.videos, self.config, train)
        return PairDataset(self.scan.videos, self.config.resolution, self.config.seed, self.config.max_frame_gap, train=train)

    def _say(self, message: str) -> None:
        if self.is_main:
            self.console.print(message, highlight=False)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def trained_modules(self) -> dict[str, torch.nn.Module]:
        return {name: self.pipeline.components[name] for name in self.trained}

    def _setup_models(self) -> None:
        config, pipeline, device = self.config, self.pipeline, self.accelerator.device
        self.prompt_embeds = _empty_prompt_embeds(pipeline).to(device)
        self.parameters = freeze_all_but(pipeline.components, self.trained)
        if pipeline.text_encoder is not None:
            pipeline.text_encoder.requires_grad_(False)
        if config.gradient_checkpointing:  # the frozen UNet too: gradients flow through it to the trained parts
            for name in ("unet", *self.trained):
                pipeline.components[name].enable_gradient_checkpointing()
        pipeline.to(device)
        frozen_dtype = TORCH_DTYPES[MIXED_PRECISION[config.mixed_precision]]
        for name in ("unet", "reference_unet", "controlnet", "vae"):
            if name not in self.trained and frozen_dtype != torch.float32:
                pipeline.components[name].to(dtype=frozen_dtype)
        if self.is_motion:  # the motion UNet holds the trained motion modules: they stay in float32
            torch.nn.Module.to(pipeline.motion_adapter, dtype=torch.float32)
        pipeline.set_progress_bar_config(disable=True)
        loss_module = DenoisingLoss(pipeline.denoiser, pipeline.scheduler.config)
        self.num_train_timesteps = loss_module.noise_schedule.config.num_train_timesteps
        optimizer = torch.optim.AdamW(self.parameters, lr=config.learning_rate, weight_decay=0.0)
        self.lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=config.warmup_steps)
        self.ema = EMAModel(self.parameters, decay=config.ema_decay) if config.ema else None
        self.loss_module, self.optimizer = self.accelerator.prepare(loss_module, optimizer)

    def _training_state(self) -> dict:
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.accelerator.scaler is not None:
            state["grad_scaler"] = self.accelerator.scaler.state_dict()
        return state

    def _restore(self, folder: Path) -> None:
        state = load_checkpoint(folder, self.trained_modules, self.accelerator.process_index)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
            self.ema.to(self.accelerator.device)
        if self.accelerator.scaler is not None and "grad_scaler" in state:
            self.accelerator.scaler.load_state_dict(state["grad_scaler"])
        self.step = int(state["step"])
        if self.is_main:
            self.console.print(f"resumed from {folder} at step {self.step}")

    def _loader(self):
        self.sampler = StepBatchSampler(
            self.batch_size,
            first_micro_step=self.step * self.config.gradient_accumulation,
            rank=self.accelerator.process_index,
            world_size=self.accelerator.num_processes,
        )
        return iter(
            torch.utils.data.DataLoader(
                self.dataset,
                batch_sampler=self.sampler,
                num_workers=self.config.num_workers,
                pin_memory=self.accelerator.device.type == "cuda",
            )
        )

    def _optimizer_step(self, batches) -> float:
        """``gradient_accumulation`` micro-batches and one optimiser update; returns the mean loss over all processes."""
        losses = []
        for accumulated in range(self.config.gradient_accumulation):
            micro_step = self.step * self.config.gradient_accumulation + accumulated
            generators = sample_generators(self.config.seed, self.sampler.batch_indices(micro_step))
            batch = next(batches)
            with self.accelerator.accumulate(self.loss_module), self.accelerator.autocast():
                loss = training_loss(
                    self.loss_module, self.pipeline.vae, batch, self.prompt_embeds, generators,
                    self.num_train_timesteps, self.stage.uses_pose, self.config.clip_noise == "shared",
                )  # fmt: skip
                self.accelerator.backward(loss)
                if self.accelerator.sync_gradients and self.config.max_grad_norm > 0:
                    self.accelerator.clip_grad_norm_(self.parameters, self.config.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        self.lr_scheduler.step()
        if self.ema is not None:
            self.ema.step(self.parameters)
        self.step += 1
        return self.accelerator.gather(torch.stack(losses).mean().reshape(1)).mean().item()

    def _checkpoint(self) -> None:
        save_checkpoint(
            checkpoint_dir(self.run_dir, self.step),
            self.trained_modules,
            self._training_state() if self.is_main else {},
            self.accelerator.process_index,
            self.is_main,
            self.accelerator.wait_for_everyone,
        )
        if self.is_main:
            prune_checkpoints(self.run_dir, self.config.checkpoints_total_limit)

    def _samples(self) -> Path:
        """A grid of pairs (the image stages) or a strip of a clip (the motion stage), generated as retarget would."""
        evaluation = self._dataset(train=False)
        for module in self.trained_modules.values():
            module.eval()
        try:
            with self.accelerator.autocast():
                if self.is_motion:
                    return save_sample_strip(sample_strip(self.pipeline, evaluation, self.config.sample_steps, self.config.seed), self.run_dir, self.step)
                pairs = evaluation_pairs(self.scan.videos, self.config.sample_count, self.config.max_frame_gap)
                grid = sample_grid(self.pipeline, evaluation, pairs, self.config.sample_steps, self.config.seed)
        finally:
            for module in self.trained_modules.values():
                module.train()
        return save_sample_grid(grid, self.run_dir, self.step)

    def _save_model(self) -> Path:
        """Trained weights (EMA ones with --ema) on the untouched frozen parts, as a ``save_pretrained`` folder;
        the motion stage's motion module as a MotionAdapter folder."""
        final = None if self.is_motion else load_initial_pipeline(self.config.model, self.run_dir, self.config.controlnet_init)
        if self.ema is not None:
            self.ema.store(self.parameters)
            self.ema.copy_to(self.parameters)
        try:
            if self.is_motion:
                return save_motion_module(self.pipeline.motion_adapter, self.run_dir)
            for name, module in self.trained_modules.items():
                final.components[name].load_state_dict({k: v.float().cpu() for k, v in module.state_dict().items()})
        finally:
            if self.ema is not None:
                self.ema.restore(self.parameters)
        target = self.run_dir / MODEL_DIR
        with atomic_directory(target) as staging:
            final.save_pretrained(staging, safe_serialization=True)
        return target

    def run(self) -> Path:
        config = self.config
        log = LossLog(self.run_dir, resumed_step=self.step) if self.is_main else None
        batches = self._loader()
        progress = Progress(
            TextColumn(f"[bold]{self.stage.name}[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, disable=not self.is_main,
        )  # fmt: skip
        try:
            with progress:
                task = progress.add_task("train", total=config.max_steps, completed=self.step, loss="-")
                while self.step < config.max_steps:
                    loss = self._optimizer_step(batches)
                    if not np.isfinite(loss):
                        raise MagicPoseError(f"loss became {loss} at step {self.step}; try a lower --learning-rate or bf16")
                    progress.update(task, completed=self.step, loss=f"{loss:.4f}")
                    if log is not None:
                        log.add(self.step, loss, self.lr_scheduler.get_last_lr()[0])
                    if (config.checkpoint_every and self.step % config.checkpoint_every == 0) or self.step == config.max_steps:
                        self._checkpoint()
                    if self.is_main and config.sample_every and self.step % config.sample_every == 0:
                        self._samples()
        finally:
            if log is not None:
                log.close()
        self.processes.on_main(self._save_model)
        return self.run_dir / (MOTION_MODULE_DIR if self.is_motion else MODEL_DIR)


def train(config: TrainConfig, console: Console | None = None) -> Path:
    """Train one stage as ``config`` says; returns ``RUN_DIR/model``, loadable by ``MagicPosePipeline.from_pretrained``
    (the motion stage: ``RUN_DIR/motion_module``, which ``retarget --motion-module`` loads)."""
    return Trainer(config, console).run()

