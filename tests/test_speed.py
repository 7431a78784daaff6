"""Fewer network evaluations per frame: the guidance interval, feature reuse, the solvers and the presets,
counted with hooks on the networks, on tiny models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_motion import pipelines, tiny_adapter, video_inputs
from test_retarget import json_folder, run_cli  # noqa: F401 (a fixture)

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.model_store import RecommendedSettings
from magicpose_cli.models import MagicPosePipeline, tiny_components
from magicpose_cli.models.counting import NetworkEvaluations, measure_costs
from magicpose_cli.models.denoising_state import DenoisingState
from magicpose_cli.models.feature_reuse import DeepFeatureCache, reused_deep_features
from magicpose_cli.models.loading import Scheduler, make_scheduler
from magicpose_cli.retarget import RetargetOptions, resolve_sampling, retarget
from magicpose_cli.retarget.motion import MotionSettings
from magicpose_cli.retarget.presets import Preset

STEPS = 5  # DDIM "leading": timesteps 801, 601, 401, 201, 1


@pytest.fixture(scope="module")
def pipe() -> MagicPosePipeline:
    pipe = MagicPosePipeline(**tiny_components(seed=0))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, num_frames: int = 2, frames_per_batch: int = 2, on_step=None, **options) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return pipe(
        reference_image=torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1,
        pose_maps=torch.rand(num_frames, 3, 64, 64, generator=generator),
        num_inference_steps=STEPS, frames_per_batch=frames_per_batch, generator=torch.Generator().manual_seed(0),
        output_type="latent", callback_on_step_end=on_step, **options,
    ).images  # fmt: skip


def counted(pipe, **options) -> tuple[list[dict], torch.Tensor]:
    """What each step of a 2-frame batch computed, by kind of call; and the frames' latents."""
    counter, steps = NetworkEvaluations(pipe), []

    def on_step(*_args):
        steps.append({"/".join(kind): count for kind, count in counter.counts.items()})
        counter.clear()

    try:
        latents = sample(pipe, on_step=on_step, **options)
    finally:
        counter.remove()
    return steps, latents


@pytest.fixture(scope="module")
def today(pipe) -> tuple[list[dict], torch.Tensor]:
    """The default schedule: its counts per step and its latents."""
    return counted(pipe)


def test_the_guidance_interval_skips_the_unconditional_unet_exactly_outside_it(pipe, today):
    steps, narrower = counted(pipe, guidance_interval=(0.3, 0.7))  # guides t = 601 and 401 only
    assert [step.get("unet/plain/deep", 0) for step in steps] == [0, 2, 2, 0, 0]
    assert [step["unet/conditional/deep"] for step in steps] == [2] * STEPS
    assert [step["controlnet/conditional/deep"] for step in steps] == [2] * STEPS
    assert [step["appearance/conditional/deep"] for step in steps] == [1] * STEPS
    assert [step["unet/plain/deep"] for step in today[0]] == [2] * STEPS
    assert torch.equal(sample(pipe, guidance_interval=(0.0, 1.0)), today[1])  # an interval over all steps is today's
    assert (narrower - today[1]).abs().max() > 1e-3


def test_deep_features_are_recomputed_every_interval_per_branch_and_interval_one_is_no_reuse(pipe, today):
    assert torch.equal(sample(pipe, deep_reuse_interval=1), today[1])
    steps, reused = counted(pipe, deep_reuse_interval=2)
    deep = [0, 2, 4]
    for kind in ("unet/conditional", "unet/plain", "controlnet/conditional"):
        assert [step.get(f"{kind}/deep", 0) for step in steps] == [2 if index in deep else 0 for index in range(STEPS)], kind
        assert [step.get(f"{kind}/shallow", 0) for step in steps] == [0 if index in deep else 2 for index in range(STEPS)], kind
    assert (reused - today[1]).abs().max() > 1e-4 and torch.isfinite(reused).all()
    assert type(pipe.unet.mid_block).__name__ == "UNetMidBlock2DCrossAttn"  # the blocks are put back


def test_a_computing_step_under_the_reuse_stand_ins_is_the_plain_network(pipe):
    latents, context = torch.randn(2, 4, 8, 8), torch.randn(1, 77, 32)
    pose_maps = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        plain = pipe.denoiser(latents, torch.tensor(500), context, None, pose_maps)
        cache = DeepFeatureCache(interval=2)
        with reused_deep_features(cache, pipe.unet, pipe.controlnet):
            with cache.stream("conditional", 0):
                computed = pipe.denoiser(latents, torch.tensor(500), context, None, pose_maps)
            with cache.stream("conditional", 1):
                reused = pipe.denoiser(latents, torch.tensor(400), context, None, pose_maps)
            with cache.stream("conditional", 2):
                recomputed = pipe.denoiser(latents, torch.tensor(400), context, None, pose_maps)
        fresh = pipe.denoiser(latents, torch.tensor(400), context, None, pose_maps)
    assert torch.equal(computed, plain)
    assert torch.equal(recomputed, fresh) and (reused - fresh).abs().max() > 1e-5


def test_appearance_features_reused_over_steps_whatever_the_batches(pipe, today):
    assert torch.equal(sample(pipe, appearance_reuse_interval=1), today[1])
    steps, together = counted(pipe, appearance_reuse_interval=2)
    assert [step.get("appearance/conditional/deep", 0) for step in steps] == [1, 0, 1, 0, 1]
    one_by_one = sample(pipe, frames_per_batch=1, appearance_reuse_interval=2)  # the second batch reads the kept ones
    assert torch.allclose(together, one_by_one, atol=1e-4)
    assert (together - today[1]).abs().max() > 1e-4


def test_the_costs_weigh_each_kind_of_call():
    costs = measure_costs(MagicPosePipeline(**tiny_components(seed=0)), 8, 8)
    assert 0 < costs.unet_plain_shallow < 1 < costs.unet_conditional  # the reference tokens cost extra attention
    assert 0 < costs.controlnet_shallow < costs.controlnet < 1
    assert costs.unet_conditional_shallow < costs.unet_conditional and 0.5 < costs.appearance < 1


def test_karras_sigmas_first_order_and_unipc_are_their_own_samplers(pipe):
    karras = make_scheduler(Scheduler.dpm_karras, pipe.scheduler.config)
    assert karras.config.use_karras_sigmas and type(karras).__name__ == "DPMSolverMultistepScheduler"
    assert type(make_scheduler("unipc", pipe.scheduler.config)).__name__ == "UniPCMultistepScheduler"
    assert not make_scheduler("dpm", pipe.scheduler.config).config.use_karras_sigmas
    assert make_scheduler("dpm-1", pipe.scheduler.config).config.solver_order == 1


def test_presets_resolve_from_the_quality_schedule_and_given_options_win():
    recommended = RecommendedSettings(steps=20, guidance=7.0, scheduler="dpm")
    samplings = {preset: resolve_sampling(RetargetOptions(preset=preset), recommended, "cpu", "float32")[0] for preset in Preset}
    assert samplings[Preset.quality] == resolve_sampling(RetargetOptions(), recommended, "cpu", "float32")[0]
    assert (samplings[Preset.quality].steps, samplings[Preset.quality].guidance_interval) == (20, (0.0, 1.0))
    keys = [str(sampling.key()) for sampling in samplings.values()]
    assert len(set(keys)) == 3  # each preset its own frames in the cache
    assert all(sampling.steps < 20 for preset, sampling in samplings.items() if preset is not Preset.quality)
    given, chosen = resolve_sampling(RetargetOptions(preset="fast", steps=7, deep_reuse=1), recommended, "cpu", "float32")
    assert (given.steps, given.deep_reuse) == (7, 1) and chosen["steps"] == (7, "given")
    assert chosen["preset"] == (Preset.fast, "given")


@pytest.fixture(scope="module")
def quick_model(recommending_tiny_model) -> Path:
    """The tiny model recommending 4 DDIM steps, so that every preset runs in a few steps."""
    return recommending_tiny_model(RecommendedSettings(width=64, height=64, steps=4, guidance=3.0, scheduler="ddim"))


@pytest.mark.parametrize(
    ("preset", "speed_options"),
    [("balanced", {"guidance_interval": (0.5, 1.0), "deep_reuse": 2, "appearance_reuse": 2}), ("fast", {})],
)  # quality is the default: test_retarget's resume test
def test_every_preset_resumes_to_the_same_bytes_in_its_own_cache(preset, speed_options, quick_model, reference_png, json_folder, tmp_path):
    def run(name: str, **extra):
        options = RetargetOptions(
            model=quick_model, preset=preset, batch_size=2, max_frames=3, align=False, cache_root=tmp_path / "cache",
            frames_dir=tmp_path / name, overwrite=True, **speed_options,
        )  # fmt: skip
        return retarget(reference_png, json_folder, tmp_path / f"{name}.mp4", options, **extra)

    def stop(*_args):
        raise KeyboardInterrupt

    run("whole")
    shutil.move(tmp_path / "cache", tmp_path / "whole_cache")
    with pytest.raises(KeyboardInterrupt):
        run("interrupted", on_batch_saved=stop)
    resumed = run("resumed")
    assert (resumed.generated, resumed.cache_hits) == (1, 2)
    whole, again = sorted((tmp_path / "whole").glob("*.png")), sorted((tmp_path / "resumed").glob("*.png"))
    assert len(whole) == 3 and [path.read_bytes() for path in whole] == [path.read_bytes() for path in again]
    assert [path.name for path in (tmp_path / "cache" / "frames").iterdir()] == [path.name for path in (tmp_path / "whole_cache" / "frames").iterdir()]


def test_the_cli_takes_a_preset_and_an_interval_and_says_where_each_setting_came_from(quick_model, reference_png, json_folder, tmp_path):
    arguments = [reference_png, json_folder, "-o", tmp_path / "out.mp4", "--model", quick_model, "--no-align", "--max-frames", 1]
    result = run_cli(*arguments, "--preset", "fast", "--guidance-interval", "0.2", "1", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "preset fast (given)" in said and "guidance interval 0.2-1 (given)" in said and "(preset fast)" in said
    default = run_cli(*arguments, "--cache-dir", tmp_path / "cache", "--overwrite")
    said = " ".join(default.output.split())
    assert "preset quality (default)" in said and "guidance interval" not in said
    frames = sorted((tmp_path / "cache" / "frames").glob("*/00000.png"))
    assert len(frames) == 2 and not np.array_equal(*(np.asarray(Image.open(path)) for path in frames))
    wrong = run_cli(*arguments, "--guidance-interval", "0.8", "0.2", "--cache-dir", tmp_path / "cache", "--overwrite")
    assert wrong.exit_code == 1 and "--guidance-interval LO HI needs 0 <= LO <= HI <= 1" in " ".join(wrong.output.split())


@pytest.fixture(scope="module")
def moving_pipe() -> MagicPosePipeline:
    """The tiny model with a tiny random motion module: the whole-video, windowed denoising."""
    return pipelines(tiny_adapter())[1]


def video_counted(pipe, on_state=None, resume_state=None, **options) -> tuple[list[dict], torch.Tensor]:
    """Per step of a 6-frame video in windows of 4 overlapping by 2: what was computed; and the final latents."""
    counter, steps = NetworkEvaluations(pipe), []

    def on_step(*_args):
        steps.append({"/".join(kind): count for kind, count in counter.counts.items()})
        counter.clear()

    inputs = {**video_inputs(6, steps=STEPS), "context_frames": 4, "context_overlap": 2}
    try:
        latents = pipe(**inputs, output_type="latent", callback_on_step_end=on_step, on_state=on_state, resume_state=resume_state, **options).images
    finally:
        counter.remove()
    return steps, latents


def test_with_a_motion_module_the_interval_and_appearance_reuse_apply_to_every_window(moving_pipe):
    steps, every = video_counted(moving_pipe)
    window_frames = steps[0]["unet/conditional/deep"]
    assert window_frames > 6 and [step["unet/plain/deep"] for step in steps] == [window_frames] * STEPS  # overlaps run twice
    assert [step["controlnet/conditional/deep"] for step in steps] == [window_frames] * STEPS
    steps, narrower = video_counted(moving_pipe, guidance_interval=(0.3, 0.7), appearance_reuse_interval=2)
    assert [step.get("unet/plain/deep", 0) for step in steps] == [0, window_frames, window_frames, 0, 0]
    assert [step.get("appearance/conditional/deep", 0) for step in steps] == [1, 0, 1, 0, 1]  # once per step for the whole video
    assert torch.equal(video_counted(moving_pipe, guidance_interval=(0.0, 1.0), appearance_reuse_interval=1)[1], every)
    assert (narrower - every).abs().max() > 1e-3


def test_a_windowed_run_with_reused_appearance_resumes_exactly_from_a_step_that_reused(moving_pipe):
    states = []
    options = {"guidance_interval": (0.3, 1.0), "appearance_reuse_interval": 2}
    _, whole = video_counted(moving_pipe, on_state=lambda state: states.append(DenoisingState.from_dict(state.as_dict())), **options)
    steps, resumed = video_counted(moving_pipe, resume_state=states[2], **options)  # step 3 reuses the features of step 2
    assert len(steps) == STEPS - 3 and steps[0].get("appearance/conditional/deep") == 1
    assert torch.equal(resumed, whole)


def test_deep_reuse_with_a_motion_module_is_refused_in_one_line(moving_pipe):
    with pytest.raises(ValueError, match="deep-feature reuse runs without a motion module only"):
        video_counted(moving_pipe, deep_reuse_interval=2)
    motion = MotionSettings(16, 4, "pyramid", 1.0)
    with pytest.raises(MagicPoseError, match="--deep-reuse runs without a motion module only"):
        resolve_sampling(RetargetOptions(deep_reuse=2), RecommendedSettings(), "cpu", "float32", motion)
    balanced, _ = resolve_sampling(RetargetOptions(preset="balanced"), RecommendedSettings(), "cpu", "float32", motion)
    assert (balanced.steps, balanced.scheduler, balanced.key()["motion"]["context_frames"]) == (25, Scheduler.dpm1, 16)
