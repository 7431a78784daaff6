"""Reproduce the bundled demo model: a CPU-sized MagicPose trained from nothing on synthetic people.

There is no pretrained Stable Diffusion in this world, so the script first makes one:

1. draws a data set of synthetic people (``magicpose_cli.synthetic.write_dataset``);
2. trains a tiny VAE as an autoencoder on its frames (L1 + MSE + a small KL term) and sets its
   latent scaling factor so that latents have unit variance, as SD's 0.18215 does;
3. trains the base UNet as a plain unconditional denoiser of those latents (the "SD" of this world),
   then teaches its self-attention to read a reference image (reference-only, weights shared), the
   correspondence SD's attention has from web-scale data and MagicPose's appearance attention needs;
4. builds the MagicPose starting model from it (appearance model = a copy of the base UNet, as the
   original stage 1 starts; pose ControlNet = the base UNet's encoder with zero output convolutions);
5. runs ``magicpose train --stage appearance`` and then ``--stage pose`` exactly as a user would;
6. for the evaluation's ablation, also runs ``--stage pose`` straight from the starting model, on
   the other core beside stages 1 and 2, so that it shows what the appearance stage adds;
7. with ``--faces-steps N`` (off by default: the shipped model has not had it), fine-tunes the
   stage-2 model (``--stage pose`` again, from it) on the full-body videos mixed with close-ups
   (``magicpose_cli.synthetic.write_closeups``: people drawn larger and cut around the head, with
   their face landmarks in the pose map, as the face pass feeds them), so that the same tiny model
   may learn to redo a face at its own canvas size (docs/demo-model.md#faces says what 500 steps did);
8. copies the final model into ``--output`` (default ``magicpose_cli/demo_model/``).

``--start-model magicpose_cli/demo_model --faces-steps N --output DIR`` skips steps 1-6 and runs only
the faces phase from an existing model, without retraining the rest.

Every step count is an option, so a longer run is one command line away. Every phase checkpoints
(VAE, base UNet and the faces phase every 250 steps, the stages every 500 through ``magicpose train --resume``):
run the same command again after an interruption and it carries on where it stopped. Evaluate afterwards with
``benchmarks/eval_demo.py``. Usage::

    python scripts/train_demo_model.py --work-dir /tmp/demo_run
    python scripts/train_demo_model.py --work-dir /tmp/faces_run --start-model magicpose_cli/demo_model --faces-steps 500 --output /tmp/faces_run/shipped
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ControlNetModel, DDPMScheduler
from diffusers.models.attention_processor import AttnProcessor2_0
from PIL import Image
from rich.console import Console
from rich.progress import Progress
from safetensors.torch import load_file, save_file

from magicpose_cli.files import atomic_path
from magicpose_cli.models import AppearanceUNet, MagicPosePipeline, tiny_components
from magicpose_cli.models.networks import MagicPoseDenoiser
from magicpose_cli.synthetic import write_dataset
from magicpose_cli.synthetic.closeups import write_closeups
from magicpose_cli.training.checkpoints import completed_checkpoints

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL_DIR = REPO_ROOT / "magicpose_cli" / "demo_model"
# The demo architecture: latents at 1/4 of a 64x64 image (16x16x4), a two-level UNet.
UNET_CHANNELS = (32, 64)
CROSS_ATTENTION_DIM = 32
VAE_CHANNELS = (16, 32, 32)
CONTROLNET_CONDITIONING_CHANNELS = (16, 32, 64)  # two stride-2 steps: pose maps down to the latent size

console = Console()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True, help="Data, intermediate models and training runs.")
    parser.add_argument("--output", type=Path, default=DEMO_MODEL_DIR, help="Where the final model folder goes.")
    parser.add_argument("--size", type=int, default=64, help="Image size (multiple of 64).")
    parser.add_argument("--videos", type=int, default=800, help="Synthetic training videos (people).")
    parser.add_argument("--frames", type=int, default=8, help="Frames per training video.")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-steps", type=int, default=2000)
    parser.add_argument("--vae-batch", type=int, default=16)
    parser.add_argument("--base-steps", type=int, default=3000)
    parser.add_argument("--base-batch", type=int, default=16)
    parser.add_argument("--base-reference-steps", type=int, default=1000,
                        help="Base-UNet steps after the plain ones that also teach its self-attention to read a reference.")
    parser.add_argument("--base-reference-share", type=float, default=0.5,
                        help="Share of those steps that attend to another frame of the same video (the rest stay plain).")
    parser.add_argument("--appearance-steps", type=int, default=2400)
    parser.add_argument("--pose-steps", type=int, default=3000)
    parser.add_argument("--stage-batch", type=int, default=8)
    parser.add_argument("--stage-lr", type=float, default=2e-4)
    parser.add_argument("--pose-freezes-appearance", action="store_true",
                        help="Train the ControlNet alone in the pose stage and its ablation (the original script's "
                             "--finetune_pose_only); by default the appearance model learns on, as its released stage-2 command does.")
    parser.add_argument("--stage-warmup", type=int, default=200, help="Learning-rate warm-up steps of each stage.")
    parser.add_argument("--ema-decay", type=float, default=0.999, help="EMA of the stage weights (0: off); the shipped model uses it.")
    parser.add_argument("--skip-ablation", action="store_true", help="Do not train the pose-stage-only model.")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (here and in `magicpose train`).")
    parser.add_argument("--closeup-videos", type=int, default=400,
                        help="Close-up videos (heads drawn --closeup-zoom times larger) mixed with the full-body ones in the faces phase.")
    parser.add_argument("--closeup-zoom", type=int, default=5, help="How much larger close-up people are drawn before the head is cut out.")
    parser.add_argument("--faces-steps", type=int, default=0, help="Steps of the faces phase (0, the default: skip it). It resumes from WORK/faces; to go on "
                             "past a finished run, remove WORK/faces/model and give more steps (the rate is constant after warm-up).")
    parser.add_argument("--faces-lr", type=float, default=1e-4, help="Learning rate of the faces phase.")
    parser.add_argument("--faces-warmup", type=int, default=100, help="Learning-rate warm-up steps of the faces phase.")
    parser.add_argument("--start-model", type=Path, default=None,
                        help="Skip phases 1-6: the faces phase (give --faces-steps) starts from this MagicPose model folder "
                             "(e.g. magicpose_cli/demo_model); give --output too, or the result replaces the bundled model.")
    return parser.parse_args()


def load_frames(data_dir: Path) -> torch.Tensor:
    """All training frames as an Nx3xHxW tensor in [-1, 1]."""
    paths = sorted(data_dir.glob("*/frames/*.png"))
    frames = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def batches(count: int, batch_size: int, steps: int, seed: int, first_step: int = 0):
    """Random index batches, one per step; a resumed run skips the ones it has had, so it repeats exactly."""
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        indices = torch.randint(0, count, (batch_size,), generator=generator)
        if step >= first_step:
            yield indices


def optimise(name: str, module, loss_of, count: int, steps: int, batch_size: int, lr: float,
             checkpoint: Path, seed: int) -> list[float]:
    """AdamW with a cosine schedule over ``steps``, checkpointed every 250 steps into ``checkpoint`` and resumed from it.

    ``loss_of(indices, generator)`` gives the loss of one batch of data indices.
    """
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr / 10)
    generator = torch.Generator().manual_seed(seed + 1)
    first_step, losses = 0, []
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        first_step, losses = int(state["step"]), list(state["losses"])
        console.print(f"{name}: resuming at step {first_step}")
    module.train()
    with Progress(console=console) as progress:
        task = progress.add_task(name, total=steps, completed=first_step)
        for step, indices in enumerate(batches(count, batch_size, steps, seed, first_step), start=first_step + 1):
            loss = loss_of(indices, generator)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            losses.append(loss.item())
            progress.update(task, advance=1, description=f"{name} {loss.item():.4f}")
            if step % 250 == 0 or step == steps:
                state = {"module": module.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                         "generator": generator.get_state(), "step": step, "losses": losses}  # fmt: skip
                with atomic_path(checkpoint) as temporary:
                    torch.save(state, temporary)
    module.eval()
    return losses


def train_vae(vae, frames: torch.Tensor, args: argparse.Namespace, checkpoint: Path) -> list[float]:
    """Autoencoder training: L1 + MSE reconstruction and a small KL pull towards N(0, 1)."""

    def loss_of(indices, generator):
        images = frames[indices]
        posterior = vae.encode(images).latent_dist
        reconstruction = vae.decode(posterior.sample(generator)).sample
        return F.l1_loss(reconstruction, images) + F.mse_loss(reconstruction, images) + 1e-6 * posterior.kl().mean()

    return optimise("VAE", vae, loss_of, len(frames), args.vae_steps, args.vae_batch, 1e-3, checkpoint, args.seed)


@torch.no_grad()
def encode_all(vae, frames: torch.Tensor) -> torch.Tensor:
    """Posterior means of all frames, unscaled."""
    return torch.cat([vae.encode(frames[start : start + 64]).latent_dist.mode() for start in range(0, len(frames), 64)])


def tied_appearance_model(unet) -> AppearanceUNet:
    """An appearance model that shares every weight with ``unet``: the UNet reads the reference itself (reference-only)."""
    appearance = AppearanceUNet(**unet.config)
    weights = dict(unet.named_parameters())
    for module_name, module in appearance.named_modules():
        for name in [name for name, value in module._parameters.items() if value is not None]:
            module._parameters[name] = weights[f"{module_name}.{name}" if module_name else name]
    return appearance


def train_base_unet(unet, latents: torch.Tensor, prompt_embeds: torch.Tensor, scheduler_config, frames_per_video: int,
                    steps: int, batch_size: int, reference_share: float, checkpoint: Path, seed: int) -> list[float]:
    """The base model ("SD"): a denoiser of the (scaled) latents with the empty prompt.

    With ``reference_share`` 0 it is a plain denoiser. Stable Diffusion's self-attention matches
    content across images well enough that attending to a reference image's tokens copies its
    appearance with no training at all (the reference-only trick MagicPose's appearance attention
    builds on); a small UNet trained on a few thousand frames does not get that for free. So on
    that share of steps the base model denoises a frame while its self-attention also sees its own
    tokens of another frame of the same video; on the others it stays a plain denoiser, as
    classifier-free guidance and the no-reference ablation use it.
    """
    noise_schedule = DDPMScheduler.from_config(scheduler_config)
    denoiser = MagicPoseDenoiser(unet, tied_appearance_model(unet), controlnet=None)

    def loss_of(indices, generator):
        clean = latents[indices]
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, noise_schedule.config.num_train_timesteps, (len(clean),), generator=generator)
        prompt = prompt_embeds.expand(len(clean), -1, -1)
        features = None
        if reference_share > 0 and torch.rand((), generator=generator) < reference_share:
            position = indices % frames_per_video
            shift = torch.randint(1, frames_per_video, indices.shape, generator=generator)
            features = denoiser.reference_features(latents[indices - position + (position + shift) % frames_per_video], timesteps, prompt)
        prediction = denoiser(noise_schedule.add_noise(clean, noise, timesteps), timesteps, prompt, reference_features=features)
        return F.mse_loss(prediction, noise)

    name = "base UNet, reference-only" if reference_share > 0 else "base UNet"
    lr = 2e-4 if reference_share > 0 else 5e-4
    losses = optimise(name, unet, loss_of, len(latents), steps, batch_size, lr, checkpoint, seed)
    unet.set_attn_processor(AttnProcessor2_0())  # back to plain attention: the processors above are for training only
    return losses


def starting_model(parts: dict) -> MagicPosePipeline:
    """MagicPose before its two stages: appearance model and pose ControlNet both grown from the base UNet."""
    unet = parts["unet"]
    reference_unet = AppearanceUNet(**unet.config)
    reference_unet.load_state_dict(unet.state_dict(), strict=False)  # all but the output head it lacks
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONTROLNET_CONDITIONING_CHANNELS)
    return MagicPosePipeline(**{**parts, "reference_unet": reference_unet, "controlnet": controlnet})


def magicpose_train(data: Path, stage: str, model: Path, run_dir: Path, steps: int, args: argparse.Namespace,
                    lr: float | None = None, warmup: int | None = None, checkpoint_every: int = 500) -> subprocess.Popen:  # fmt: skip
    """Start one stage through the real command line, as a user would run it; the caller waits for it."""
    resume = bool(completed_checkpoints(run_dir))
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
    command = [
        sys.executable, "-m", "magicpose_cli", "train",
        "--data", str(data), "--stage", stage, "--model", str(model), "-o", str(run_dir),
        "--resolution", str(args.size), "--batch-size", str(args.stage_batch), "--max-steps", str(steps),
        "--learning-rate", str(lr or args.stage_lr), "--warmup-steps", str(args.stage_warmup if warmup is None else warmup), "--num-workers", "0",
        "--checkpoint-every", str(checkpoint_every), "--sample-every", "0", "--seed", str(args.seed),
    ]  # fmt: skip
    if args.ema_decay > 0:
        command += ["--ema", "--ema-decay", str(args.ema_decay)]
    if stage == "pose" and args.pose_freezes_appearance:
        command.append("--freeze-appearance")
    if resume:
        command.append("--resume")
    console.print(" ".join(command[1:]), highlight=False)
    threads = str(args.threads)
    return subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})


def run_stages(data: Path, init_dir: Path, args: argparse.Namespace, timings: dict[str, float]) -> None:
    """Stage 1 then stage 2; the ablation (stage 2 straight from the starting model) on the other core beside them."""
    work = args.work_dir

    def start(name: str, stage: str, start_model: Path, steps: int) -> subprocess.Popen | None:
        if (work / name / "model" / "model_index.json").is_file():
            console.print(f"{name}: reusing {work / name / 'model'}")
            return None
        return magicpose_train(data, stage, start_model, work / name, steps, args)

    def finish(name: str, process: subprocess.Popen | None, started: float) -> None:
        if process is not None:
            if process.wait() != 0:
                raise SystemExit(f"{name} failed (exit status {process.returncode}); run the same command again to resume")
            timings[name] = time.perf_counter() - started

    started = time.perf_counter()
    ablation = None if args.skip_ablation else start("ablation_pose_only", "pose", init_dir, args.pose_steps)
    try:
        finish("stage1_appearance", start("stage1_appearance", "appearance", init_dir, args.appearance_steps), started)
        stage2_started = time.perf_counter()
        finish("stage2_pose", start("stage2_pose", "pose", work / "stage1_appearance" / "model", args.pose_steps), stage2_started)
        finish("ablation_pose_only", ablation, started)
    finally:
        if ablation is not None and ablation.poll() is None:  # stopped early: a rerun must not find it still writing
            ablation.terminate()
            ablation.wait()


def run_faces(data: Path, start_model: Path, args: argparse.Namespace, timings: dict[str, float]) -> Path:
    """The faces phase: stage 2 resumed from ``start_model`` on full-body videos and close-ups together.

    The mixed folder links the full-body videos beside the close-ups, so ``magicpose train`` visits
    each video once per epoch and the close-ups' share is their share of the videos.
    """
    work = args.work_dir
    closeups, mixed = work / "closeups", work / "data_faces"
    if not (closeups / f"closeup_{args.closeup_videos - 1:05d}" / "meta.json").is_file():
        started = time.perf_counter()
        write_closeups(closeups, args.closeup_videos, args.frames, size=args.size, zoom=args.closeup_zoom, seed=args.data_seed)
        timings["closeups"] = time.perf_counter() - started
    mixed.mkdir(exist_ok=True)
    for video in [*sorted(data.glob("person_*")), *sorted(closeups.glob("closeup_*"))[: args.closeup_videos]]:
        if not (mixed / video.name).exists():
            (mixed / video.name).symlink_to(video.resolve(), target_is_directory=True)
    run_dir = work / "faces"
    if not (run_dir / "model" / "model_index.json").is_file():
        started = time.perf_counter()
        process = magicpose_train(mixed, "pose", start_model, run_dir, args.faces_steps, args, lr=args.faces_lr, warmup=args.faces_warmup,
                                  checkpoint_every=250)  # fmt: skip
        if process.wait() != 0:
            raise SystemExit(f"faces phase failed (exit status {process.returncode}); run the same command again to resume")
        timings["faces"] = time.perf_counter() - started
    return run_dir / "model"


def ship(model_dir: Path, output: Path, start_model: Path | None = None) -> None:
    """Copy the trained folder into place whole, weights stored as float16 (half the size; they load as float32);
    the hand-written files are kept from ``output``; the recommended settings, where it has none, from ``start_model``
    (its card describes another model, so it stays behind)."""
    partial = output.with_name(f".{output.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(model_dir, partial)
    for weights in partial.glob("*/*.safetensors"):
        save_file({name: tensor.half() for name, tensor in load_file(weights).items()}, weights, metadata={"format": "pt"})
    for kept in ("MODEL_CARD.md", "recommended_settings.json"):  # written by hand from the evaluation
        for source in (output, start_model if kept == "recommended_settings.json" else None):
            if source is not None and (source / kept).is_file():
                shutil.copy2(source / kept, partial / kept)
                break
    shutil.rmtree(output, ignore_errors=True)
    partial.rename(output)


def train_stage2_model(data: Path, args: argparse.Namespace, timings: dict[str, float], report: dict) -> Path:
    """Steps 2-6: the VAE and base UNet, the starting model, stage 1 and stage 2 (each reused when done)."""
    work = args.work_dir
    init_dir = work / "init_model"
    if not (init_dir / "model_index.json").is_file():
        parts = tiny_components(args.seed, UNET_CHANNELS, CROSS_ATTENTION_DIM, VAE_CHANNELS)
        frames = load_frames(data)
        started = time.perf_counter()
        vae_losses = train_vae(parts["vae"], frames, args, work / "vae.ckpt")
        latents = encode_all(parts["vae"], frames)
        scaling_factor = float(1.0 / latents.std())
        parts["vae"].register_to_config(scaling_factor=scaling_factor)
        timings["vae"] = time.perf_counter() - started

        started = time.perf_counter()
        with torch.no_grad():
            prompt_embeds = parts["empty_prompt"]()
        base_losses = train_base_unet(
            parts["unet"], latents * scaling_factor, prompt_embeds, parts["scheduler"].config, args.frames,
            args.base_steps, args.base_batch, 0.0, work / "base_unet.ckpt", args.seed + 2,
        )  # fmt: skip
        base_losses += train_base_unet(
            parts["unet"], latents * scaling_factor, prompt_embeds, parts["scheduler"].config, args.frames,
            args.base_reference_steps, args.base_batch, args.base_reference_share, work / "base_unet_reference.ckpt", args.seed + 4,
        )  # fmt: skip
        timings["base_unet"] = time.perf_counter() - started
        starting_model(parts).save_pretrained(init_dir, safe_serialization=True)
        report["vae"] = {"scaling_factor": scaling_factor, "final_loss": float(np.mean(vae_losses[-50:]))}
        report["base_unet"] = {"final_loss": float(np.mean(base_losses[-50:]))}

    run_stages(data, init_dir, args, timings)
    return work / "stage2_pose" / "model"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    report: dict = {"args": {key: str(value) for key, value in vars(args).items()}, "timings_s": timings}

    data = work / "data"
    if not (data / f"person_{args.videos - 1:05d}" / "meta.json").is_file():
        started = time.perf_counter()
        write_dataset(data, args.videos, args.frames, size=args.size, seed=args.data_seed)
        timings["data"] = time.perf_counter() - started

    final_model = args.start_model if args.start_model is not None else train_stage2_model(data, args, timings, report)
    if args.faces_steps > 0:
        final_model = run_faces(data, final_model, args, timings)

    ship(final_model, args.output, args.start_model)
    previous = json.loads((work / "report.json").read_text()) if (work / "report.json").is_file() else {}
    (work / "report.json").write_text(json.dumps({**previous, **report, "timings_s": {**previous.get("timings_s", {}), **timings}}, indent=2))
    console.print(f"[green]demo model written:[/] {args.output}  (timings: {json.dumps({k: round(v) for k, v in timings.items()})})")


if __name__ == "__main__":
    main()
