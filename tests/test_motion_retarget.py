"""`magicpose retarget --motion-module` and `magicpose train --stage motion` end to end, on the tiny model."""

from __future__ import annotations

from pathlib import Path

import re

import pytest
import torch
from test_motion import tiny_adapter, original_layout
from test_retarget import json_folder, run_cli  # noqa: F401 (a fixture)
from test_train import config, init_model, make_frame_folders  # noqa: F401 (a fixture)

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models.motion_loading import load_motion_adapter
from magicpose_cli.retarget import RetargetOptions, retarget
from magicpose_cli.retarget.motion import STATE_FILE
from magicpose_cli.retarget.options import Sampling
from magicpose_cli.training import train
from magicpose_cli.training.loss_log import read_loss_log


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("motion") / "adapter"
    tiny_adapter(seed=1).save_pretrained(folder)
    return folder


def options(model: Path, cache: Path, motion: Path | None, **extra) -> RetargetOptions:
    settings = dict(model=model, width=64, steps=3, batch_size=2, max_frames=5, align=False, cache_root=cache, motion_module=motion,
                    context_frames=3, context_overlap=1, audio=False)  # fmt: skip
    return RetargetOptions(**{**settings, **extra})


def frame_bytes(cache: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(cache.glob("frames/*/*.png"))]


def test_an_interrupted_windowed_run_resumes_to_the_same_bytes(tiny_model_dir, reference_png, json_folder, adapter_dir, tmp_path):  # noqa: F811
    whole = retarget(reference_png, json_folder, tmp_path / "whole.mp4", options(tiny_model_dir, tmp_path / "whole", adapter_dir))
    assert whole.generated == 5 and not list((tmp_path / "whole").glob(f"frames/*/{STATE_FILE}"))

    def stop(*_):
        raise KeyboardInterrupt

    # Stopped after the first denoising step of the whole video: its state is on disk, no frame is.
    with pytest.raises(KeyboardInterrupt):
        retarget(reference_png, json_folder, tmp_path / "a.mp4", options(tiny_model_dir, tmp_path / "a", adapter_dir), on_state_saved=stop)
    assert len(list((tmp_path / "a").glob(f"frames/*/{STATE_FILE}"))) == 1 and not list((tmp_path / "a").glob("frames/*/*.png"))
    resumed = retarget(reference_png, json_folder, tmp_path / "a.mp4", options(tiny_model_dir, tmp_path / "a", adapter_dir))
    # Stopped after the first decoded batch: the rest is decoded from the finished state.
    with pytest.raises(KeyboardInterrupt):
        retarget(reference_png, json_folder, tmp_path / "b.mp4", options(tiny_model_dir, tmp_path / "b", adapter_dir), on_batch_saved=stop)
    decoded = retarget(reference_png, json_folder, tmp_path / "b.mp4", options(tiny_model_dir, tmp_path / "b", adapter_dir))
    assert (resumed.generated, decoded.generated, decoded.cache_hits) == (5, 3, 2)
    assert frame_bytes(tmp_path / "whole") == frame_bytes(tmp_path / "a") == frame_bytes(tmp_path / "b")
    assert not list(tmp_path.glob(f"*/frames/*/{STATE_FILE}"))  # removed once every frame is cached
    # Without the module the frames differ, and so does the cache folder.
    plain = retarget(reference_png, json_folder, tmp_path / "plain.mp4", options(tiny_model_dir, tmp_path / "whole", None,
                                                                             context_frames=None, context_overlap=None))
    assert plain.generated == 5 and len(frame_bytes(tmp_path / "whole")) == 10


def test_runs_without_a_motion_module_keep_their_cache_keys():
    sampling = Sampling(0, 4, 20, 7.0, "image", "dpm", "cpu", "torch.float32", False, False)
    assert sampling.key() == {"seed": 0, "batch_size": 4, "steps": 20, "guidance": 7.0, "guidance_mode": "image", "scheduler": "dpm",
                              "device": "cpu", "dtype": "torch.float32", "vae_slicing": False, "vae_tiling": False}  # fmt: skip


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--motion-module", "SD15"], r"made for a UNet with channels \(320, 640, 1280, 1280\) per block; this model's UNet has \(32, 64\)"),
        (["--motion-module", "MISSING"], "motion module not found"),
        (["--context-frames", "8"], r"--context-frames only apply with a motion module"),
        (["--motion-module", "ADAPTER", "--context-frames", "40"], "more than the motion module's 32 frame positions"),
        (["--motion-module", "ADAPTER", "--motion-scale", "1.5"], r"--motion-scale must be in \[0, 1\]"),
    ],
)
def test_a_module_that_does_not_fit_is_one_clear_line(tiny_model_dir, reference_png, json_folder, adapter_dir, tmp_path, arguments, expected):  # noqa: F811
    sd15 = tmp_path / "v3_sd15_mm.ckpt"
    torch.save(original_layout(mid_block=False), sd15)
    replaced = [{"SD15": str(sd15), "MISSING": str(tmp_path / "nothing.ckpt"), "ADAPTER": str(adapter_dir)}.get(a, a) for a in arguments]
    result = run_cli(reference_png, json_folder, "-o", tmp_path / "out.mp4", "--model", tiny_model_dir, "--no-align",
                     "--cache-dir", tmp_path / "cache", *replaced)  # fmt: skip
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [lines[-1]] and re.search(expected, errors[0]), result.output


def test_motion_stage_trains_only_the_module_resumes_exactly_and_feeds_retarget(init_model, reference_png, json_folder, tmp_path):  # noqa: F811
    data = make_frame_folders(tmp_path / "clips", videos=2, frames=4)
    motion = dict(stage="motion", clip_frames=3, clip_stride=1, batch_size=1, sample_every=2, sample_steps=2)
    straight = train(config(data, init_model, tmp_path / "straight", max_steps=2, **motion))
    assert straight == tmp_path / "straight" / "motion_module"
    assert (tmp_path / "straight" / "samples" / "step-000002.png").is_file()  # a strip: reference and poses, generated, real
    train(config(data, init_model, tmp_path / "resumed", max_steps=1, **motion, checkpoint_every=1))
    resumed = train(config(data, init_model, tmp_path / "resumed", max_steps=2, **motion, resume=True))
    expected, actual = load_motion_adapter(straight).state_dict(), load_motion_adapter(resumed).state_dict()
    assert all(torch.allclose(expected[key], actual[key], atol=1e-6, rtol=0) for key in expected)
    assert read_loss_log(tmp_path / "straight") == read_loss_log(tmp_path / "resumed")
    trained = [key for key in expected if "proj_out" in key and expected[key].abs().max() > 0]
    assert trained  # it started from zero output projections and learnt something
    with pytest.raises(MagicPoseError, match="started with clip_frames=3, not 4"):
        train(config(data, init_model, tmp_path / "resumed", max_steps=3, **{**motion, "clip_frames": 4}, resume=True))
    summary = retarget(reference_png, json_folder, tmp_path / "out.mp4", options(init_model, tmp_path / "cache", straight))
    assert summary.frames == 5
