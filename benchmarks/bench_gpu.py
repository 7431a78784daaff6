"""What a 512x512 frame costs on a GPU: seconds per frame and peak VRAM at SD 1.5 size.

Random weights at the published sizes (SD 1.5 UNet, appearance model, OpenPose ControlNet, VAE,
a 77x768 empty prompt), so nothing is downloaded; the cost of a network does not depend on its
weights. For fp16 and bf16, at batch 1, 4 and 8, with and without model CPU offload, it times
``MagicPosePipeline.__call__`` over the same frames (after one warm-up frame) and reads the peak of
``torch.cuda.max_memory_allocated``. Then it times the presets (``--preset quality|balanced|fast``
resolved for the published model's 50 DDIM steps) in fp16 without offload, and generates one frame
in fp32 and in fp16 from the same noise and reports how far apart they are (pixels in [0, 1]).
The face pass's rows time retarget's second pass per preset: image-to-image from the frames at
``--face-strengths`` (a face canvas of the frame's size), fp16, no offload, beside the main pass.

    python benchmarks/bench_gpu.py                      # the whole table (about 10 minutes on an H100)
    python benchmarks/bench_gpu.py --offload no --dtypes fp16 --batch-sizes 1 4
    python benchmarks/bench_gpu.py --motion --frames 24     # with a random SD 1.5 motion module (mm_sd_v15_v2 layout)
    python benchmarks/bench_gpu.py --only-presets --batch-sizes 1 4

With ``--motion`` the whole video is denoised in context windows of 16 frames overlapping by 4 and
"batch" is the decoding batch; the seconds are per frame of the video.

Only the pipeline's public API is used, so the numbers follow whatever the pipeline does inside.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, MotionAdapter, UNet2DConditionModel

sys.path.insert(0, str(Path(__file__).parent))
from speed_variants import describe, resolve_variant, sampler_for  # noqa: E402

from magicpose_cli.models import AppearanceUNet, MagicPosePipeline, PromptEmbedding  # noqa: E402
from magicpose_cli.models.configs import SD15_RECOMMENDED_SETTINGS, sd15_original_config, sd15_scheduler  # noqa: E402
from magicpose_cli.models.conversion import unet_config, vae_config  # noqa: E402
from magicpose_cli.models.loading import TORCH_DTYPES, Precision  # noqa: E402
from magicpose_cli.retarget.presets import Preset  # noqa: E402


def sd15_pipeline(seed: int = 0) -> MagicPosePipeline:
    """MagicPose at the published sizes with random weights, built on the CPU in float32."""
    torch.manual_seed(seed)
    original = sd15_original_config()
    unet = UNet2DConditionModel(**unet_config(original, "unet_config"))
    empty_prompt = PromptEmbedding(77, unet.config.cross_attention_dim)
    empty_prompt.embeds.data.normal_()
    return MagicPosePipeline(
        unet=unet,
        reference_unet=AppearanceUNet(**unet_config(original, "appearance_control_stage_config")),
        controlnet=ControlNetModel.from_unet(unet),
        vae=AutoencoderKL(**vae_config(original)),
        scheduler=sd15_scheduler(),
        empty_prompt=empty_prompt,
    )


def inputs(frames: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    reference = torch.rand(1, 3, size, size, generator=generator) * 2 - 1
    pose_maps = (torch.rand(frames, 3, size, size, generator=generator) > 0.97).float()  # sparse strokes, like pose maps
    return reference, pose_maps


def place(pipe: MagicPosePipeline, dtype: torch.dtype, offload: bool) -> MagicPosePipeline:
    pipe.remove_all_hooks()
    pipe.to("cpu", dtype)
    if offload:
        pipe.enable_model_cpu_offload()
    else:
        pipe.to("cuda")
    return pipe


def generate(pipe, reference, pose_maps, steps: int, batch: int, seed: int = 0, sampler=None, **image_to_image) -> torch.Tensor:
    """Frames of ``sampler`` (a pipeline with its speed options bound; default ``pipe`` itself); ``image_to_image``:
    the pipeline's ``image`` and ``strength``."""
    return (sampler or pipe)(
        reference_image=reference,
        pose_maps=pose_maps,
        num_inference_steps=steps,
        guidance_scale=7.0,
        generator=torch.Generator("cuda").manual_seed(seed),
        frames_per_batch=batch,
        output_type="pt",
        **image_to_image,
    ).images


def time_one(pipe, reference, pose_maps, steps: int, batch: int, sampler=None, **image_to_image) -> tuple[float, float]:
    """(seconds per frame, peak GiB) over all frames, after a warm-up frame."""
    generate(pipe, reference, pose_maps[:1], 2, 1, sampler=sampler)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    generate(pipe, reference, pose_maps, steps, batch, sampler=sampler, **image_to_image)
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / len(pose_maps), torch.cuda.max_memory_allocated() / 2**30


def preset_table(pipe, reference, pose_maps, batch_sizes) -> None:
    """Seconds per frame of each preset for the published model's schedule, fp16, no offload."""
    place(pipe, torch.float16, offload=False)
    config = pipe.scheduler.config
    print("| preset | settings | batch | s/frame | vs quality | peak VRAM (GiB) |\n| --- | --- | ---: | ---: | ---: | ---: |")
    for batch in batch_sizes:
        baseline = None
        for preset in Preset:
            sampling = resolve_variant(f"preset={preset.value}", SD15_RECOMMENDED_SETTINGS, batch)
            seconds, peak = time_one(pipe, reference, pose_maps, sampling.steps, batch, sampler_for(pipe, sampling, config))
            baseline = baseline or seconds
            print(f"| {preset.value} | {describe(sampling)} | {batch} | {seconds:.2f} | x{baseline / seconds:.2f} | {peak:.2f} |", flush=True)
    pipe.scheduler = sd15_scheduler()


def face_pass_table(pipe, reference, pose_maps, batch: int, strengths: list[float]) -> None:
    """Seconds per frame of the face pass (image-to-image from the frames) beside the main pass's, per preset; fp16, no offload."""
    place(pipe, torch.float16, offload=False)
    config, init = pipe.scheduler.config, torch.rand(pose_maps.shape, generator=torch.Generator().manual_seed(2))
    print("| preset | settings | batch | pass | s/frame | vs main pass | peak VRAM (GiB) |\n| --- | --- | ---: | --- | ---: | ---: | ---: |")
    for preset in Preset:
        sampling = resolve_variant(f"preset={preset.value}", SD15_RECOMMENDED_SETTINGS, batch)
        sampler = sampler_for(pipe, sampling, config)
        main_seconds, peak = time_one(pipe, reference, pose_maps, sampling.steps, batch, sampler)
        print(f"| {preset.value} | {describe(sampling)} | {batch} | main | {main_seconds:.2f} | x1.00 | {peak:.2f} |", flush=True)
        for strength in strengths:
            seconds, peak = time_one(pipe, reference, pose_maps, sampling.steps, batch, sampler, image=init, strength=strength)
            print(f"| {preset.value} | {describe(sampling)} | {batch} | face pass {strength:g} | {seconds:.2f} | x{seconds / main_seconds:.2f} | {peak:.2f} |", flush=True)
    pipe.scheduler = sd15_scheduler()


def precision_gap(pipe, reference, pose_maps, steps: int) -> dict[str, float]:
    """How far one fp16 frame is from the fp32 frame of the same noise."""
    frames = {}
    for name in ("fp32", "fp16"):
        place(pipe, TORCH_DTYPES[Precision(name)], offload=False)
        frames[name] = generate(pipe, reference, pose_maps[:1], steps, 1).float().cpu()
    gap = (frames["fp16"] - frames["fp32"]).abs()
    return {"max": gap.max().item(), "mean": gap.mean().item(), "nan": bool(frames["fp16"].isnan().any())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--frames", type=int, default=8, help="Frames per measurement (a multiple of every batch size).")
    parser.add_argument("--dtypes", nargs="+", default=["fp16", "bf16"], choices=["fp16", "bf16"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--offload", choices=["both", "no", "yes"], default="both")
    parser.add_argument("--skip-precision", action="store_true", help="Skip the fp16-vs-fp32 frame.")
    parser.add_argument("--motion", action="store_true", help="Add a random SD 1.5 motion module (453 M parameters, v2 layout).")
    parser.add_argument("--skip-presets", action="store_true", help="Skip the presets' table.")
    parser.add_argument("--only-presets", action="store_true", help="Only the presets' table.")
    parser.add_argument("--face-strengths", nargs="*", type=float, default=[0.3, 0.5], help="The face pass's rows (none: skip them).")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu needs a CUDA GPU (this machine has none)")

    pipe = sd15_pipeline()
    if args.motion:
        pipe = MagicPosePipeline(**{**pipe.components, "motion_adapter": MotionAdapter()})
    pipe.set_progress_bar_config(disable=True)
    reference, pose_maps = inputs(args.frames, args.size)
    offloads = {"both": [False, True], "no": [False], "yes": [True]}[args.offload]
    motion = ", motion module in windows of 16 overlapping by 4" if args.motion else ""
    print(f"{torch.cuda.get_device_name()}, {args.size}x{args.size}, {args.steps} DDIM steps, guidance 7, {args.frames} frames{motion}")
    if not args.skip_presets:
        preset_table(pipe, reference, pose_maps, args.batch_sizes)
    if args.face_strengths:
        face_pass_table(pipe, reference, pose_maps, max(args.batch_sizes), args.face_strengths)
    if args.only_presets:
        return
    print("| dtype | batch | cpu offload | s/frame | peak VRAM (GiB) |\n| --- | ---: | --- | ---: | ---: |")
    for dtype in args.dtypes:
        for offload in offloads:
            place(pipe, TORCH_DTYPES[Precision(dtype)], offload)
            for batch in args.batch_sizes:
                seconds, peak = time_one(pipe, reference, pose_maps, args.steps, batch)
                print(f"| {dtype} | {batch} | {'yes' if offload else 'no'} | {seconds:.2f} | {peak:.2f} |", flush=True)
    if not args.skip_precision:
        gap = precision_gap(pipe, reference, pose_maps, args.steps)
        print(f"fp16 vs fp32, one frame: max |diff| {gap['max']:.4f}, mean {gap['mean']:.5f}, NaN in fp16: {gap['nan']}")


if __name__ == "__main__":
    main()
