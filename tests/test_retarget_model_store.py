"""Finding the model (flag, environment, config file, converted checkpoint) and the frame cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from magicpose_cli.errors import MagicPoseError, MissingWeightsError
from magicpose_cli.files import default_cache_root
from magicpose_cli.frame_cache import FrameCache, run_key
from magicpose_cli.hashing import hash_folder
from magicpose_cli.model_store import RecommendedSettings, check_model_folder, locate_model, prepare_model_path

FIXTURE_CHECKPOINT = Path(__file__).parent / "fixtures" / "original_tiny" / "model_state-tiny.th"
FIXTURE_CONFIG = FIXTURE_CHECKPOINT.with_name("model_config.yaml")


@pytest.fixture(scope="module")
def tiny_model_folder(tmp_path_factory) -> Path:
    from magicpose_cli.models import MagicPosePipeline, tiny_components

    folder = tmp_path_factory.mktemp("model") / "tiny"
    MagicPosePipeline(**tiny_components(seed=0)).save_pretrained(folder)
    return folder


@pytest.fixture
def no_configured_model(monkeypatch, tmp_path):
    """An environment where neither MAGICPOSE_MODEL nor a config file names a model."""
    monkeypatch.delenv("MAGICPOSE_MODEL", raising=False)
    monkeypatch.setenv("MAGICPOSE_CONFIG", str(tmp_path / "absent.toml"))


def test_a_saved_tiny_model_folder_is_complete(tiny_model_folder, tmp_path, no_configured_model):
    location = locate_model(tiny_model_folder, tmp_path)
    assert location.folder == tiny_model_folder and location.source == "--model" and location.notice is None


def test_an_incomplete_folder_names_what_is_missing(tiny_model_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_folder, broken)
    (broken / "controlnet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(MagicPoseError, match="incomplete: missing controlnet/ weights"):
        check_model_folder(broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(MagicPoseError, match="vae/"):
        check_model_folder(broken)
    with pytest.raises(MagicPoseError, match="no model_index.json"):
        check_model_folder(tmp_path)


def test_environment_then_config_file(tiny_model_folder, tmp_path, monkeypatch, no_configured_model):
    config = tmp_path / "config.toml"
    config.write_text(f'model = "{tiny_model_folder}"\n')
    monkeypatch.setenv("MAGICPOSE_CONFIG", str(config))
    assert locate_model(None, tmp_path).source == f"config file {config}"
    monkeypatch.setenv("MAGICPOSE_MODEL", str(tmp_path / "nowhere"))
    with pytest.raises(MagicPoseError, match="model not found: .*nowhere.* \\(from MAGICPOSE_MODEL\\)"):
        locate_model(None, tmp_path)


def test_without_a_configured_model_the_bundled_demo_model_is_used_and_announced(tmp_path, no_configured_model):
    location = locate_model(None, tmp_path)
    assert location.source == "demo model" and "demo model" in location.notice
    assert "synthetic cartoon people" in location.notice and "--model Boese0601/MagicDance" in location.notice
    assert (location.folder / "model_index.json").is_file()
    # the settings it was trained and evaluated with (MODEL_CARD.md), for the options a user leaves unset
    assert location.recommended == RecommendedSettings(width=64, height=64, steps=20, guidance=7.0, scheduler="dpm")


def test_recommended_settings_are_optional_and_a_broken_file_is_one_clear_error(tiny_model_folder, tmp_path):
    assert locate_model(tiny_model_folder, tmp_path).recommended == RecommendedSettings()
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    (folder / "recommended_settings.json").write_text("{not json")
    with pytest.raises(MagicPoseError, match="cannot read .*recommended_settings.json"):
        locate_model(folder, tmp_path).recommended


def test_conversion_cache_is_keyed_by_content_converter_version_and_dtype(tmp_path, monkeypatch):
    checkpoint = tmp_path / "model_state-tiny.th"
    shutil.copy(FIXTURE_CHECKPOINT, checkpoint)
    shutil.copy(FIXTURE_CONFIG, tmp_path / "model_config.yaml")
    folders = set()
    for version, dtype in [(2, "fp16"), (2, "fp32"), (3, "fp16")]:
        monkeypatch.setattr("magicpose_cli.models.conversion.CONVERTER_VERSION", version)
        with pytest.raises(MagicPoseError, match="missing a text conditioning"):  # no CLIP in the tiny checkpoint
            prepare_model_path(checkpoint, tmp_path / "cache", dtype=dtype)
        folders = set((tmp_path / "cache" / "models").iterdir())
    assert len(folders) == 3
    assert {json.loads((f / "converted_from.json").read_text())["converter"] for f in folders} == {2, 3}


def test_no_model_anywhere_says_what_to_download(tmp_path, no_configured_model, monkeypatch):
    monkeypatch.setattr("magicpose_cli.model_store.DEMO_MODEL_DIR", tmp_path / "not_installed")
    with pytest.raises(MissingWeightsError, match="--model Boese0601/MagicDance"):
        locate_model(None, tmp_path)


def test_an_original_checkpoint_is_converted_once_into_the_cache(tmp_path, no_configured_model):
    checkpoint = tmp_path / "model_state-tiny.th"
    shutil.copy(FIXTURE_CHECKPOINT, checkpoint)
    shutil.copy(FIXTURE_CONFIG, tmp_path / "model_config.yaml")
    # The tiny original checkpoint has no CLIP text encoder, so the converted folder is usable only
    # once one is added; the conversion itself must still happen once and be kept.
    with pytest.raises(MagicPoseError, match="missing a text conditioning"):
        locate_model(checkpoint, tmp_path / "cache")
    (converted,) = (tmp_path / "cache" / "models").iterdir()
    assert json.loads((converted / "converted_from.json").read_text())["checkpoint"] == str(checkpoint)
    stamp = (converted / "model_index.json").stat().st_mtime_ns
    with pytest.raises(MagicPoseError, match="missing a text conditioning"):
        locate_model(checkpoint, tmp_path / "cache")
    assert (converted / "model_index.json").stat().st_mtime_ns == stamp


def test_frame_cache_round_trips_losslessly(tmp_path):
    cache = FrameCache(tmp_path, run_key(seed=1), {"what": "test"})
    frame = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    assert not cache.has(3)
    cache.save(3, frame)
    assert cache.has(3) and np.array_equal(cache.load(3), frame)
    assert json.loads((cache.folder / "run.json").read_text()) == {"what": "test"}
    cache.clear()
    assert not cache.has(3)


def test_cache_keys_change_with_every_part(tmp_path, monkeypatch):
    assert run_key(seed=1, steps=2) == run_key(steps=2, seed=1) != run_key(seed=2, steps=2)
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"1")
    before = hash_folder(folder, tmp_path / "cache")
    assert hash_folder(folder, tmp_path / "cache") == before
    (folder / "a.bin").write_bytes(b"22")
    assert hash_folder(folder, tmp_path / "cache") != before
    monkeypatch.setenv("MAGICPOSE_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_root() == tmp_path / "elsewhere"
