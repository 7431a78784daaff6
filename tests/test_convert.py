"""`magicpose convert` and the checkpoint loaders, on the original-layout tiny checkpoint."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
from diffusers import ControlNetModel
from safetensors.torch import save_file
from typer.testing import CliRunner

from magicpose_cli.cli import app
from magicpose_cli.errors import MagicPoseError
from magicpose_cli.model_store import RecommendedSettings
from magicpose_cli.models import MagicPosePipeline
from magicpose_cli.models.checkpoint_files import EMPTY_PROMPT_TOKEN_IDS, load_original_state_dict
from magicpose_cli.models.conversion import convert_checkpoint

from conftest import FIXTURE_DIR

CHECKPOINT = FIXTURE_DIR / "model_state-tiny.th"
CONFIG = FIXTURE_DIR / "model_config.yaml"


@pytest.fixture(scope="module")
def original_state() -> dict[str, torch.Tensor]:
    return load_original_state_dict(CHECKPOINT)


def weights_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    a_state, b_state = a.state_dict(), b.state_dict()
    return a_state.keys() == b_state.keys() and all(torch.equal(a_state[k], b_state[k]) for k in a_state)


def test_cli_converts_with_config_to_a_loadable_folder(tmp_path, converted_tiny_dir):
    arguments = ["convert", str(CHECKPOINT), "--config", str(CONFIG), "-o", str(tmp_path / "m"), "--dtype", "fp32"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    ours, reference = MagicPosePipeline.from_pretrained(tmp_path / "m"), MagicPosePipeline.from_pretrained(converted_tiny_dir)
    for name in ("unet", "reference_unet", "controlnet", "vae"):
        assert weights_equal(getattr(ours, name), getattr(reference, name)), name
    assert ours.empty_prompt is None  # the tiny checkpoint carries no CLIP
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers of the atomic write


def test_without_config_the_sd15_sizes_are_assumed_and_a_mismatch_is_explained(tmp_path):
    result = CliRunner().invoke(app, ["convert", str(CHECKPOINT), "-o", str(tmp_path / "m")])
    assert result.exit_code == 1
    assert "does not fit the configured sizes" in result.output and "--config" in result.output
    assert not (tmp_path / "m").exists()


def test_existing_output_is_not_overwritten_without_flag(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, ["convert", str(CHECKPOINT), "--config", str(CONFIG), "-o", str(tmp_path / "m")])
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert (tmp_path / "m" / "keep.txt").read_text() == "mine"
    result = CliRunner().invoke(app, ["convert", str(CHECKPOINT), "--config", str(CONFIG), "-o", str(tmp_path / "m"), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "m" / "keep.txt").exists() and (tmp_path / "m" / "model_index.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging or retired folder left beside it


class _ExecutesCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_execute_code_is_refused(tmp_path):
    marker = tmp_path / "code_ran"
    checkpoint = tmp_path / "evil.th"
    torch.save({"state_dict": _ExecutesCode(marker)}, checkpoint)
    with pytest.raises(MagicPoseError, match="refusing to load"):
        load_original_state_dict(checkpoint)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["broken.th", "broken.safetensors"])
def test_corrupt_or_missing_checkpoint_is_a_clear_error(tmp_path, name):
    path = tmp_path / name
    for seed in range(32):  # random bytes fail inside the unpickler in many different ways
        path.write_bytes(random.Random(seed).randbytes(256))
        with pytest.raises(MagicPoseError, match="not a readable"):
            load_original_state_dict(path)
    with pytest.raises(MagicPoseError, match="not found"):
        load_original_state_dict(tmp_path / "absent.th")


def test_sd15_checkpoint_becomes_an_initialisation_with_the_appearance_model_copied(tmp_path, original_state):
    sd_keys = ("model.diffusion_model.", "first_stage_model.")
    sd_checkpoint = tmp_path / "sd.safetensors"
    save_file({k: v.contiguous() for k, v in original_state.items() if k.startswith(sd_keys) or k == "betas"}, sd_checkpoint)
    pose_checkpoint = tmp_path / "control_openpose.pth"
    torch.save(
        {"control_model." + k.removeprefix("pose_control_model."): v for k, v in original_state.items() if k.startswith("pose_control_model.")},
        pose_checkpoint,
    )

    controlnet_dir = convert_checkpoint(pose_checkpoint, tmp_path / "controlnet", CONFIG)
    init_dir = convert_checkpoint(sd_checkpoint, tmp_path / "init", CONFIG, controlnet_path=pose_checkpoint)
    full_dir = convert_checkpoint(CHECKPOINT, tmp_path / "full", CONFIG)

    init, full = MagicPosePipeline.from_pretrained(init_dir), MagicPosePipeline.from_pretrained(full_dir)
    assert weights_equal(init.unet, full.unet) and weights_equal(init.vae, full.vae)
    unet_state = init.unet.state_dict()
    assert all(torch.equal(value, unet_state[key]) for key, value in init.reference_unet.state_dict().items())
    assert weights_equal(init.controlnet, full.controlnet)
    assert weights_equal(ControlNetModel.from_pretrained(controlnet_dir), full.controlnet)


def test_clip_text_encoder_is_kept_and_gives_the_stored_empty_prompt(tmp_path, tiny_checkpoint_with_clip):
    checkpoint, clip = tiny_checkpoint_with_clip
    pipe = MagicPosePipeline.from_pretrained(convert_checkpoint(checkpoint, tmp_path / "m", CONFIG))
    with torch.no_grad():
        expected = clip(torch.tensor([EMPTY_PROMPT_TOKEN_IDS])).last_hidden_state
    assert EMPTY_PROMPT_TOKEN_IDS[:3] == [49406, 49407, 49407] and len(EMPTY_PROMPT_TOKEN_IDS) == 77
    assert pipe.text_encoder is not None
    assert torch.allclose(pipe.empty_prompt(), expected, atol=1e-6)
    pipe.set_progress_bar_config(disable=True)
    default = pipe(torch.zeros(1, 3, 128, 128), torch.zeros(1, 3, 128, 128), num_inference_steps=1, output_type="latent",
                   latents=torch.ones(1, 4, 16, 16)).images  # fmt: skip
    explicit = pipe(torch.zeros(1, 3, 128, 128), torch.zeros(1, 3, 128, 128), num_inference_steps=1, output_type="latent",
                    latents=torch.ones(1, 4, 16, 16), prompt_embeds=expected).images  # fmt: skip
    assert torch.allclose(default, explicit, atol=1e-5)


def folder_dtypes(folder: Path) -> set[str]:
    from safetensors import safe_open

    dtypes = set()
    for weights in folder.glob("*/*.safetensors"):
        with safe_open(str(weights), framework="pt") as handle:
            dtypes |= {handle.get_slice(key).get_dtype() for key in handle.keys()}
    return dtypes


def test_cli_writes_float16_for_inference_by_default_with_the_original_sampling_settings(tmp_path, converted_tiny_dir):
    result = CliRunner().invoke(app, ["convert", str(CHECKPOINT), "--config", str(CONFIG), "-o", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert folder_dtypes(tmp_path / "m") == {"F16"} and folder_dtypes(converted_tiny_dir) == {"F32"}
    half, full = MagicPosePipeline.from_pretrained(tmp_path / "m"), MagicPosePipeline.from_pretrained(converted_tiny_dir)
    for name in ("unet", "reference_unet", "controlnet", "vae"):
        full_state = getattr(full, name).state_dict()
        assert all(torch.equal(v, full_state[k].half().float()) for k, v in getattr(half, name).state_dict().items()), name
    # a --config model has unknown sizes: the original inference's sampler settings only
    assert RecommendedSettings.read(tmp_path / "m") == RecommendedSettings(steps=50, guidance=7.0, scheduler="ddim")


def test_training_starts_stay_float32(tmp_path, original_state):
    sd_checkpoint = tmp_path / "sd.safetensors"
    save_file({k: v.contiguous() for k, v in original_state.items() if k.startswith(("model.diffusion_model.", "first_stage_model."))},
              sd_checkpoint)  # fmt: skip
    result = CliRunner().invoke(app, ["convert", str(sd_checkpoint), "--config", str(CONFIG), "-o", str(tmp_path / "init")])
    assert result.exit_code == 0, result.output
    assert folder_dtypes(tmp_path / "init") == {"F32"}
    assert not (tmp_path / "init" / "recommended_settings.json").exists()


@pytest.fixture
def workspace(tmp_path) -> Path:
    (tmp_path / "existing_file").write_text("mine")
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "corrupt.th").write_bytes(os.urandom(512))
    return tmp_path


BAD_CONVERSIONS = {
    "output is an existing file": (["{ckpt}", "-o", "{ws}/existing_file", "--config", "{config}"], "is a file"),
    "output is a file even with --overwrite": (["{ckpt}", "-o", "{ws}/existing_file", "--overwrite"], "is a file"),
    "checkpoint missing": (["{ws}/absent.th", "-o", "{ws}/out"], "checkpoint not found"),
    "checkpoint is a folder": (["{ws}/a_folder", "-o", "{ws}/out"], "is a folder"),
    "checkpoint corrupt": (["{ws}/corrupt.th", "-o", "{ws}/out"], "not a readable checkpoint"),
    "config missing": (["{ckpt}", "-o", "{ws}/out", "--config", "{ws}/absent.yaml"], "cannot read config"),
    "config not a model yaml": (["{ckpt}", "-o", "{ws}/out", "--config", "{ws}/existing_file"], "not an original-format"),
    "controlnet with a MagicPose checkpoint": (["{ckpt}", "-o", "{ws}/out", "--config", "{config}", "--controlnet", "{ckpt}"],
                                               "--controlnet goes with a Stable Diffusion"),  # fmt: skip
    "sizes that do not fit": (["{ckpt}", "-o", "{ws}/out"], "does not fit the configured sizes"),
    "nested output under a file": (["{ckpt}", "-o", "{ws}/existing_file/out", "--config", "{config}"], "is a file"),
}


@pytest.mark.parametrize("case", BAD_CONVERSIONS)
def test_bad_arguments_give_one_line_a_nonzero_exit_and_leave_nothing(workspace, case):
    arguments, message = BAD_CONVERSIONS[case]
    arguments = [a.format(ckpt=CHECKPOINT, ws=workspace, config=CONFIG) for a in arguments]
    before = sorted(p.relative_to(workspace) for p in workspace.rglob("*"))
    result = CliRunner().invoke(app, ["convert", *arguments])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1 and message in result.output
    assert sorted(p.relative_to(workspace) for p in workspace.rglob("*")) == before
    assert (workspace / "existing_file").read_text() == "mine"
