"""MagicPose plugged into another SD 1.5: base models, VAEs, LoRAs and prompts (docs/plug-in.md).

The MagicPose model is the original implementation's tiny checkpoint converted (tests/fixtures/original_tiny);
the "community model" files are written here in the layouts people download: single files with the
original SD key names, kohya LoRAs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.frame_cache import run_key
from magicpose_cli.models.checkpoint_files import load_original_state_dict
from magicpose_cli.models.loading import load_pipeline
from magicpose_cli.models.plugin_options import LoraWeights, Plugins
from magicpose_cli.models.prompts import prompt_arguments
from magicpose_cli.plugin_store import parse_lora
from magicpose_cli.retarget.generation import plugin_key

FIXTURE = Path(__file__).parent / "fixtures" / "original_tiny" / "model_state-tiny.th"
CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
SD_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")
BLOCK = "down_blocks.1.attentions.0.transformer_blocks.0."
LORA_LAYERS = {"attn1.to_q": 64, "attn2.to_k": 32, "attn1.to_out.0": 64}  # their input widths (the text context is 32 wide); outputs 64


class CodeExecutingPickle:
    def __reduce__(self):
        return (print, ("a checkpoint ran code",))


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_checkpoint_with_clip) -> dict[str, Path]:
    """A community-style SD 1.5 single file holding the model's own SD weights (and a tiny CLIP), one
    with changed UNet weights, wrong files of every kind, and kohya LoRAs."""
    root = tmp_path_factory.mktemp("plugins")
    state = {key: value.contiguous() for key, value in load_original_state_dict(tiny_checkpoint_with_clip[0]).items() if key.startswith(SD_PREFIXES)}
    paths = {name: root / f"{name}.safetensors" for name in ("own", "changed", "sdxl", "sd2", "inpainting", "lora", "lora_unknown")}
    save_file(state, paths["own"])
    changed = dict(state)
    conv_in = "model.diffusion_model.input_blocks.0.0.weight"
    changed[conv_in] = state[conv_in] * 1.5
    save_file(changed, paths["changed"])
    save_file({**state, "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": torch.zeros(4)}, paths["sdxl"])
    v2_key = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
    save_file({**state, v2_key: torch.zeros(64, 1024)}, paths["sd2"])
    save_file({**state, conv_in: torch.zeros(state[conv_in].shape[0], 9, 3, 3)}, paths["inpainting"])
    save_file(kohya_lora(seed=1), paths["lora"])
    save_file({**kohya_lora(seed=2), **kohya_lora(seed=2, name="lora_unet_down_blocks_9_attentions_0_proj_in")}, paths["lora_unknown"])
    paths["lora_text"] = root / "lora_text.safetensors"
    text_layers = [f"lora_te_text_model_encoder_layers_0_self_attn_{name}" for name in ("q_proj", "out_proj")]
    text_lora = {key: (value[:, :32] if "down" in key else value if "alpha" in key else value[:32]).contiguous()
                 for name in text_layers for key, value in kohya_lora(seed=4, name=name).items()}  # the tiny CLIP is 32 wide
    save_file({**kohya_lora(seed=3), **text_lora}, paths["lora_text"])
    paths["corrupt"] = root / "corrupt.safetensors"
    paths["corrupt"].write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    paths["pickle"] = root / "evil.ckpt"
    torch.save({"state_dict": CodeExecutingPickle()}, paths["pickle"])
    paths["own_ckpt"] = root / "own.ckpt"
    torch.save(state, paths["own_ckpt"])
    return paths


def kohya_lora(seed: int, rank: int = 2, alpha: float = 1.0, name: str | None = None) -> dict[str, torch.Tensor]:
    """An sd-scripts LoRA on a self-attention's query and output and a cross-attention's key (``name``: one other layer)."""
    generator = torch.Generator().manual_seed(seed)
    layers = {name: 64} if name else {kohya_name(BLOCK + layer): width for layer, width in LORA_LAYERS.items()}
    state = {}
    for layer, width in layers.items():
        state[f"{layer}.lora_down.weight"] = torch.randn(rank, width, generator=generator) * 0.5
        state[f"{layer}.lora_up.weight"] = torch.randn(64, rank, generator=generator) * 0.5
        state[f"{layer}.alpha"] = torch.tensor(alpha)
    return state


def kohya_name(module: str) -> str:
    """sd-scripts names a layer by its diffusers module path with "_" for "."."""
    return "lora_unet_" + module.replace(".", "_")


def frames(pipe, prompt: str = "", negative_prompt: str = "", **kwargs) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1
    poses = torch.rand(1, 3, 64, 64, generator=generator)
    return pipe(reference, poses, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="latent",
                **prompt_arguments(pipe, prompt, negative_prompt), **kwargs).images  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_checkpoint_with_clip) -> Path:
    """The original's tiny checkpoint with its CLIP, converted: a MagicPose model folder with a text encoder."""
    from magicpose_cli.models.conversion import convert_checkpoint

    config = FIXTURE.parent / "model_config.yaml"
    return convert_checkpoint(tiny_checkpoint_with_clip[0], tmp_path_factory.mktemp("model") / "tiny", config)


@pytest.fixture(scope="module")
def plain_frames(one_torch_thread, model_dir) -> torch.Tensor:
    return frames(load_pipeline(model_dir, CPU, torch.float32))


def test_a_single_file_of_the_models_own_sd_weights_gives_the_same_frames(model_dir, files, plain_frames):
    """The same weights, every one, from a .safetensors and from a .ckpt (the frames to float32 noise:
    the CPU's kernels sum in an order that can depend on where the tensors lie in memory)."""
    plain = load_pipeline(model_dir, CPU, torch.float32)
    for name in ("own_ckpt", "own"):
        pipe = load_pipeline(model_dir, CPU, torch.float32, plugins=Plugins(base_model=files[name], base_vae=files[name]))
        for network in ("unet", "vae"):
            mine, own = getattr(pipe, network).state_dict(), getattr(plain, network).state_dict()
            assert mine.keys() == own.keys() and all(torch.equal(mine[key], own[key]) for key in own)
    assert torch.allclose(frames(pipe), plain_frames, atol=1e-3, rtol=0)


def test_changed_base_weights_change_the_frames(model_dir, files, plain_frames):
    pipe = load_pipeline(model_dir, CPU, torch.float32, plugins=Plugins(base_model=files["changed"]))
    assert (frames(pipe) - plain_frames).abs().max() > 1e-3


def merged_by_hand(pipe, lora: dict[str, torch.Tensor], scale: float) -> None:
    """W + scale x alpha/rank x up @ down, into the UNet's own Linear layers."""
    modules = dict(pipe.unet.named_modules())
    for layer in LORA_LAYERS:
        name = kohya_name(BLOCK + layer)
        down, up, alpha = lora[f"{name}.lora_down.weight"], lora[f"{name}.lora_up.weight"], float(lora[f"{name}.alpha"])
        modules[BLOCK + layer].weight.data += scale * alpha / down.shape[0] * up @ down


@pytest.mark.parametrize("scale", [1.0])
def test_a_kohya_lora_equals_its_weights_merged_by_hand_and_keeps_reference_attention(model_dir, files, plain_frames, scale):
    from peft.tuners.lora import LoraLayer

    from magicpose_cli.models.reference_attention import AttendToReference

    pipe = load_pipeline(model_dir, CPU, torch.float32, plugins=Plugins(loras=(LoraWeights(files["lora"], scale),)))
    with_lora = frames(pipe)
    attention = pipe.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1
    assert isinstance(attention.to_q, LoraLayer) and isinstance(attention.processor, AttendToReference)
    assert not any(isinstance(module, LoraLayer) for module in pipe.reference_unet.modules())  # the appearance model is left alone
    merged = load_pipeline(model_dir, CPU, torch.float32)
    merged_by_hand(merged, load_original_state_dict(files["lora"]), scale)
    assert torch.allclose(with_lora, frames(merged), atol=1e-3, rtol=0)
    assert (with_lora - plain_frames).abs().max() > 1e-2


def test_a_lora_at_scale_zero_is_exactly_no_lora(model_dir, files, plain_frames):
    pipe = load_pipeline(model_dir, CPU, torch.float32, plugins=Plugins(loras=(LoraWeights(files["lora"], 0.0),)))
    assert torch.equal(frames(pipe), plain_frames)


WRONG_BASES = {
    "sdxl": "is an SDXL checkpoint, not Stable Diffusion 1.5",
    "sd2": "is a Stable Diffusion 2.x checkpoint",
    "inpainting": "is an SD 1.5 inpainting checkpoint (its UNet takes 9 input channels",
    "lora": "is a LoRA, not a whole model: pass it as --lora",
    "corrupt": "is not a readable safetensors file",
    "pickle": "refusing to load",
}


@pytest.mark.parametrize("name", sorted(WRONG_BASES))
def test_a_wrong_base_model_is_one_line(model_dir, files, name):
    with pytest.raises(MagicPoseError, match=WRONG_BASES[name].replace("(", r"\(")) as refused:
        load_pipeline(model_dir, CPU, torch.float32, plugins=Plugins(base_model=files[name]))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [("own", "is not a LoRA"), ("lora_unknown", "names 1 layers this model's UNet does not have"), ("corrupt", "not a readable"), ("pickle", "refusing to load")],
)
def test_a_wrong_lora_is_one_line(model_dir, files, name, message):
    with pytest.raises(MagicPoseError, match=message) as refused:
        load_pipeline(model_dir, CPU, torch.float32, plugins=Plugins(loras=(LoraWeights(files[name]),)))
    assert "\n" not in str(refused.value)


def test_lora_options_read_their_scale(files):
    assert parse_lora(f"{files['lora']}:0.5") == LoraWeights(files["lora"], 0.5)
    assert parse_lora(str(files["lora"])) == LoraWeights(files["lora"], 1.0)
    with pytest.raises(MagicPoseError, match="lora not found"):
        parse_lora("no_such_lora.safetensors:0.5")


def test_the_cache_key_changes_with_every_plugged_file_scale_and_prompt(files, tmp_path):
    def key(plugins=Plugins(), **prompts) -> str:
        return run_key(model="m", settings=prompts, **plugin_key(plugins, tmp_path))

    keys = {
        "none": key(),
        "base": key(Plugins(base_model=files["own"])),
        "changed base": key(Plugins(base_model=files["changed"])),
        "vae": key(Plugins(base_vae=files["own"])),
        "lora": key(Plugins(loras=(LoraWeights(files["lora"]),))),
        "lora 0.5": key(Plugins(loras=(LoraWeights(files["lora"], 0.5),))),
        "other lora": key(Plugins(loras=(LoraWeights(files["lora_unknown"]),))),
    }
    assert len(set(keys.values())) == len(keys)
    assert key(Plugins(loras=(LoraWeights(files["lora"], 0.0),))) == keys["none"] == run_key(model="m", settings={})
    assert plugin_key(Plugins(), tmp_path) == {}


def test_a_rewritten_base_file_never_reuses_its_old_key(files, tmp_path):
    path = tmp_path / "base.safetensors"
    path.write_bytes(files["own"].read_bytes())
    before = plugin_key(Plugins(base_model=path), tmp_path)
    path.write_bytes(files["changed"].read_bytes())
    assert plugin_key(Plugins(base_model=path), tmp_path) != before


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A tiny CLIP BPE tokenizer: letters, no merges (ids below the tiny CLIP's vocabulary)."""
    folder = tmp_path_factory.mktemp("tokenizer")
    letters = [chr(code) for code in range(ord("a"), ord("z") + 1)]
    vocab = {token: index for index, token in enumerate([*letters, *(letter + "</w>" for letter in letters), "<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def test_a_prompt_reaches_the_appearance_model_controlnet_and_unet(model_dir, files, tokenizer_dir, plain_frames):
    plugins = Plugins(base_model=files["own"], text=True, tokenizer=tokenizer_dir)
    pipe = load_pipeline(model_dir, CPU, torch.float32, plugins=plugins)
    seen = {}

    def record(name: str):
        def hook(_module, args, kwargs) -> None:
            seen.setdefault(name, args[2] if len(args) > 2 else kwargs["encoder_hidden_states"])

        return hook

    for name in ("unet", "reference_unet", "controlnet"):
        getattr(pipe, name).register_forward_pre_hook(record(name), with_kwargs=True)
    prompted = frames(pipe, "a red dress")
    embeds = prompt_arguments(pipe, "a red dress", "")["prompt_embeds"]
    assert all(torch.equal(seen[name][:1], embeds) for name in seen) and len(seen) == 3
    assert (prompted - plain_frames).abs().max() > 1e-3
    assert torch.equal(frames(pipe, "a red dress", guidance_mode="image"), prompted)
    assert not torch.equal(frames(pipe, "a red dress", "blurry", guidance_mode="text"), prompted)
    assert prompt_arguments(pipe, "", "") == {}  # no prompt: the stored empty embedding, today's frames
    with_text_lora = load_pipeline(model_dir, CPU, torch.float32, plugins=Plugins(files["own"], None, (LoraWeights(files["lora_text"]),), True, tokenizer_dir))
    assert not torch.equal(prompt_arguments(with_text_lora, "a red dress", "")["prompt_embeds"], embeds)  # the LoRA reached the text encoder


def test_a_prompt_without_a_text_encoder_is_one_line(converted_tiny_dir, tokenizer_dir):
    pipe = load_pipeline(converted_tiny_dir, CPU, torch.float32, plugins=Plugins(text=True, tokenizer=tokenizer_dir))
    with pytest.raises(MagicPoseError, match="a prompt needs a CLIP text encoder"):
        prompt_arguments(pipe, "a red dress", "")


def test_retarget_with_a_base_model_a_lora_and_a_prompt_keys_each_run_apart(model_dir, files, tokenizer_dir, reference_png, tmp_path):
    """The command line end to end: a plugged run, and each changed plug-in a run of its own (no frames reused)."""
    from test_retarget import run_cli, waving_poses

    cache = tmp_path / "cache"
    shutil.copytree(tokenizer_dir, cache / "models" / "clip-tokenizer")  # where an offline user puts SD 1.5's tokenizer
    poses = tmp_path / "poses"
    poses.mkdir()
    waving_poses(1)[0].save(poses / "00000.json")
    common = [reference_png, poses, "--model", model_dir, "--no-align", "--width", 64, "--steps", 2, "--cache-dir", cache, "--scheduler", "lcm"]
    runs = {
        "plugged": ["--base-model", files["own"], "--lora", f"{files['lora']}:0.5", "--prompt", "a red dress"],
        "other scale": ["--base-model", files["own"], "--lora", f"{files['lora']}:0.8", "--prompt", "a red dress"],
        "text guidance": ["--base-model", files["own"], "--prompt", "a red dress", "--negative-prompt", "blurry", "--guidance-mode", "text"],
    }
    for name, options in runs.items():
        result = run_cli(*common, "-o", tmp_path / f"{name}.mp4", *options)
        assert result.exit_code == 0, result.output
    assert len(list((cache / "frames").iterdir())) == len(runs)
    again = run_cli(*common, "-o", tmp_path / "again.mp4", *runs["plugged"])
    assert again.exit_code == 0 and len(list((cache / "frames").iterdir())) == len(runs), again.output


def test_offline_a_hub_lora_comes_from_the_cache_and_a_missing_tokenizer_is_one_line(files, model_dir, tmp_path):
    from test_hub_model import add_to_hub_cache, offline_run

    hf_home = tmp_path / "hf_home"
    add_to_hub_cache(hf_home, "someone/style-lora", {"pytorch_lora_weights.safetensors": files["lora"]})
    code = (
        "import sys; from pathlib import Path; from magicpose_cli.plugin_store import locate_plugins\n"
        "plugins, _ = locate_plugins(None, None, ['someone/style-lora:0.7'], False, Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "print(plugins.loras[0].scale, plugins.loras[0].path.read_bytes() == Path(sys.argv[3]).read_bytes())\n"
        "locate_plugins(None, None, [], True, Path(sys.argv[1]), Path(sys.argv[2]))\n"
    )
    run = offline_run(hf_home, code, str(model_dir), str(tmp_path / "cache"), str(files["lora"]))
    assert run.stdout.split() == ["0.7", "True"], run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert "a prompt needs SD 1.5's CLIP tokenizer" in last and "vocab.json, merges.txt" in last and str(tmp_path / "cache" / "models" / "clip-tokenizer") in last


def test_the_base_model_can_be_configured_once(files, model_dir, tmp_path, monkeypatch):
    from magicpose_cli.plugin_store import locate_plugins

    monkeypatch.setenv("MAGICPOSE_CONFIG", str(tmp_path / "config.toml"))
    (tmp_path / "config.toml").write_text(f'base_model = "{files["changed"]}"\n')
    assert locate_plugins(None, None, (), False, model_dir, tmp_path)[0].base_model == files["changed"]
    monkeypatch.setenv("MAGICPOSE_BASE_MODEL", str(files["own"]))
    plugins, notice = locate_plugins(None, None, (), False, model_dir, tmp_path)
    assert plugins.base_model == files["own"] and "MAGICPOSE_BASE_MODEL" in notice
    assert locate_plugins(files["changed"], None, (), False, model_dir, tmp_path)[0].base_model == files["changed"]


def test_kept_pipelines_load_again_only_when_a_plugged_file_or_scale_changes(model_dir, files):
    from magicpose_cli.models.loading import LoadedPipelines

    pipelines = LoadedPipelines()
    plugged = Plugins(base_model=files["own"], loras=(LoraWeights(files["lora"], 0.5),))
    first = pipelines.get(model_dir, CPU, torch.float32, plugins=plugged)
    assert pipelines.get(model_dir, CPU, torch.float32, plugins=plugged) is first and pipelines.loads == 1
    pipelines.get(model_dir, CPU, torch.float32, plugins=Plugins(base_model=files["own"], loras=(LoraWeights(files["lora"], 0.8),)))
    assert pipelines.loads == 2
