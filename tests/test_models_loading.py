"""Loading a model folder for inference: device and dtype choices, scheduler, the text encoder only when needed."""

from __future__ import annotations

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler
from transformers import CLIPTextConfig, CLIPTextModel

from magicpose_cli.errors import MagicPoseError
from magicpose_cli.models import MagicPosePipeline, tiny_components
from magicpose_cli.models.plugin_options import Plugins
from magicpose_cli.models.loading import Device, Precision, Scheduler, load_pipeline, resolve_device, resolve_dtype

CPU = torch.device("cpu")


def test_dtypes_on_the_cpu():
    assert resolve_dtype(Precision.auto, CPU) is torch.float32
    assert resolve_dtype("bf16", CPU) is torch.bfloat16
    assert resolve_dtype("fp16", torch.device("cuda")) is torch.float16
    assert resolve_dtype("auto", torch.device("cuda")) is torch.float16
    with pytest.raises(MagicPoseError, match="fp16 needs a GPU"):
        resolve_dtype(Precision.fp16, CPU)


def test_devices():
    assert resolve_device(Device.cpu) == CPU
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(MagicPoseError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.fixture(scope="module")
def folder_with_text_encoder(tmp_path_factory):
    config = CLIPTextConfig(vocab_size=64, hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2)
    pipe = MagicPosePipeline(**tiny_components(seed=0), text_encoder=CLIPTextModel(config))
    folder = tmp_path_factory.mktemp("with_text") / "model"
    pipe.save_pretrained(folder)
    return folder


def test_the_text_encoder_is_loaded_only_when_a_prompt_needs_it(folder_with_text_encoder):
    plain = load_pipeline(folder_with_text_encoder, CPU, torch.bfloat16, Scheduler.dpm)
    assert plain.text_encoder is None and plain.empty_prompt is not None
    assert plain.unet.dtype == torch.bfloat16 and isinstance(plain.scheduler, DPMSolverMultistepScheduler)
    with_text = load_pipeline(folder_with_text_encoder, CPU, torch.float32, plugins=Plugins(text=True))
    assert isinstance(with_text.text_encoder, CLIPTextModel)
