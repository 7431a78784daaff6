"""The app's engine without a browser: the settings table, loaded models kept between runs, the
progress retarget reports to a caller, and `magicpose ui` without Gradio."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest
from test_motion import tiny_adapter
from test_retarget import json_folder  # noqa: F401  (a fixture)
from typer.testing import CliRunner

from magicpose_cli.cli import app
from magicpose_cli.cli.ui import is_loopback
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models.loading import LoadedPipelines
from magicpose_cli.retarget import RetargetOptions, retarget
from magicpose_cli.retarget.presets import Preset
from magicpose_cli.ui.jobs import ProgressRelay, shown_as_task
from magicpose_cli.ui.settings import SETTINGS, options_from


def test_every_setting_is_a_retarget_option_and_empty_controls_leave_the_defaults():
    names = [setting.name for setting in SETTINGS]
    assert set(names) <= {field.name for field in dataclasses.fields(RetargetOptions)} and len(set(names)) == len(names)
    assert {"model", "steps", "guidance", "seed", "size", "grid", "face", "hands", "motion_module", "no_motion", "preset"} <= set(names)
    options = options_from({"model": "  ", "steps": "3", "guidance": " 6.5 ", "seed": 7, "size": "", "face": False}, cache_root="c")
    assert (options.model, options.steps, options.guidance, options.seed, options.size, options.face) == (None, 3, 6.5, 7, None, False)
    assert options.hands is True and options.cache_root == "c"  # not given: RetargetOptions' default
    assert options_from({"model": "~/weights"}).model == Path("~/weights").expanduser()
    hub_module = options_from({"motion_module": " guoyww/animatediff-motion-adapter-v1-5-2 ", "no_motion": False})
    assert (hub_module.motion_module, hub_module.no_motion) == ("guoyww/animatediff-motion-adapter-v1-5-2", False)  # as --motion-module gets it
    assert options_from({"motion_module": ""}).motion_module is None and options_from({"no_motion": True}).no_motion
    assert options_from({"preset": "fast"}).preset is Preset.fast and options_from({"preset": ""}).preset is None
    plugged = options_from({"base_model": " me/anime-sd15 ", "loras": "style.safetensors:0.6, ink.safetensors", "prompt": " a red dress "})
    assert (plugged.base_model, plugged.loras, plugged.prompt) == ("me/anime-sd15", ("style.safetensors:0.6", "ink.safetensors"), "a red dress")
    assert (options_from({"loras": " "}).loras, options_from({"prompt": ""}).prompt) == ((), "")
    with pytest.raises(MagicPoseError, match="Preset must be one of quality, balanced, fast, got 'turbo'"):
        options_from({"preset": "turbo"})
    with pytest.raises(MagicPoseError, match="Steps must be a whole number, got '2.5'"):
        options_from({"steps": "2.5"})
    with pytest.raises(MagicPoseError, match="Guidance must be a number, got 'lots'"):
        options_from({"guidance": "lots"})


def test_a_kept_pipeline_gives_the_frames_of_a_fresh_load_and_a_changed_folder_or_motion_module_is_loaded_again(
    tiny_model_dir, reference_png, json_folder, tmp_path
):
    def run(name: str, pipelines=None, **extra) -> bytes:
        options = RetargetOptions(
            model=tiny_model_dir, width=64, steps=2, batch_size=2, max_frames=2, align=False, cache_root=tmp_path / name, **extra,
        )  # fmt: skip
        retarget(reference_png, json_folder, tmp_path / f"{name}.mp4", options, pipelines=pipelines)
        return b"".join(path.read_bytes() for path in sorted((tmp_path / name / "frames").glob("*/*.png")))

    pipelines = LoadedPipelines()
    fresh = run("fresh")
    assert run("kept-1", pipelines, seed=5) != fresh  # another seed: other frames, same pipeline
    assert run("kept-2", pipelines) == fresh and pipelines.loads == 1
    config = tiny_model_dir / "scheduler" / "scheduler_config.json"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 1_000_000))
    assert run("kept-3", pipelines) == fresh and pipelines.loads == 2  # the folder changed: loaded again
    tiny_adapter(seed=1).save_pretrained(tmp_path / "adapter")
    moving = run("motion-1", pipelines, motion_module=tmp_path / "adapter")
    assert moving != fresh and pipelines.loads == 3
    weights = next((tmp_path / "adapter").glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    assert run("motion-2", pipelines, motion_module=tmp_path / "adapter") == moving and pipelines.loads == 4  # the module changed


def test_a_caller_gets_retargets_progress_through_its_own_progress_object(tiny_model_dir, reference_png, json_folder, tmp_path):
    lines = []
    relay = ProgressRelay(lambda fraction, line: lines.append((fraction, line)))
    pipelines = LoadedPipelines(loading=lambda folder: shown_as_task(relay, "loading the model"))
    options = RetargetOptions(model=tiny_model_dir, width=64, steps=3, batch_size=2, max_frames=4, align=False, cache_root=tmp_path / "c")
    retarget(reference_png, json_folder, tmp_path / "out.mp4", options, progress=relay, pipelines=pipelines)
    texts = [text for _, text in lines]
    assert (None, "loading the model") in lines
    assert "denoising frames 0/4, step 2/3" in texts and "denoising frames 2/4, step 1/3" in texts and "encoding 4/4" in texts
    fractions = [fraction for fraction, text in lines if text.startswith("denoising")]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # the bar only moves forward


def test_ui_without_gradio_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    result = CliRunner().invoke(app, ["ui"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == ["error: magicpose ui needs Gradio, which is not installed: pip install 'magicpose-cli[ui]'"]


def test_only_loopback_addresses_count_as_this_machine():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")
