"""Text prompts, as the original's ``--text_prompt``: one CLIP embedding that the appearance model,
the pose ControlNet and the main UNet all attend to (both guidance branches in the ``image`` mode;
the negative prompt is the ``text`` mode's unconditional branch).

The empty prompt needs no tokenizer: it is the model folder's stored embedding, so a run without
a prompt computes what it always did.
"""

from __future__ import annotations

import torch

from magicpose_cli.errors import MagicPoseError


def prompt_arguments(pipe, prompt: str, negative_prompt: str) -> dict:
    """``generate_batches``'s text arguments: none for two empty prompts (the stored empty embedding),
    else both prompts encoded by the pipeline's text encoder (the empty one included, so that both
    branches come from the same encoder)."""
    if not prompt and not negative_prompt:
        return {}
    return {"prompt_embeds": encode_text(pipe, prompt), "negative_prompt_embeds": encode_text(pipe, negative_prompt)}


@torch.no_grad()
def encode_text(pipe, text: str) -> torch.Tensor:
    """CLIP's last hidden state for ``text``, padded to the text encoder's length (77), truncated beyond it."""
    if pipe.text_encoder is None or pipe.tokenizer is None:
        raise MagicPoseError("a prompt needs a CLIP text encoder: this model folder has none; use a model converted with its CLIP, or --base-model with an SD 1.5 checkpoint")
    width = pipe.text_encoder.config.hidden_size
    if width != pipe.unet.config.cross_attention_dim:
        raise MagicPoseError(f"the text encoder gives {width}-wide embeddings but this model's UNet attends to {pipe.unet.config.cross_attention_dim}: it is not this model's text encoder")
    length = min(pipe.tokenizer.model_max_length, pipe.text_encoder.config.max_position_embeddings)
    tokens = pipe.tokenizer(text, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    device = next(pipe.text_encoder.parameters()).device
    return pipe.text_encoder(tokens.input_ids.to(device))[0]
