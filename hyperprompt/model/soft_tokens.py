"""Soft input tokens: learned vectors placed before an input's token embeddings.

Shared by prompt tuning (a soft prompt per task, :mod:`hyperprompt.model.prompt_tuning`) and by HyperPrompt's
soft input tokens for added tasks (``HyperPromptConfig.input_prompt_tasks``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def sampled_vocab_prompts(embedding: torch.Tensor, count: int, length: int, vocab_init_size: int = 5000) -> torch.Tensor:
    """Lester et al.'s "sampled vocab" init: ``count`` prompts [count, l, d] of embedding rows (``embedding``:
    [V, d]) of token ids drawn uniformly from the ``vocab_init_size`` first ids."""
    high = min(vocab_init_size, embedding.shape[0])
    ids = torch.randint(0, high, (count, length), device=embedding.device)
    return embedding[ids]


def embedded_inputs(base: nn.Module, inputs: dict[str, Any], method: str) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """``inputs`` without ``input_ids``, their embeddings [B, S, d] (``inputs_embeds`` if given, else the
    backbone's embedding of ``input_ids``) and the attention mask [B, S] (all ones if none was given).
    ``method`` names the caller in the error raised when neither ids nor embeddings are there."""
    inputs = dict(inputs)
    input_ids = inputs.pop("input_ids", None)
    embeds = inputs.get("inputs_embeds")
    if embeds is None:
        if input_ids is None:
            raise ValueError(f"{method} needs the encoder input: pass input_ids (or inputs_embeds).")
        embeds = base.get_input_embeddings()(input_ids)
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    return inputs, embeds, mask


def prepend_soft_tokens(prompt: torch.Tensor, embeds: torch.Tensor, mask: torch.Tensor,
                        rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``[P ; embeds]`` [B, l + S, d] and its mask ``[1 ; mask]`` [B, l + S], from ``prompt`` P [B, l, d],
    ``embeds`` [B, S, d] and ``mask`` [B, S].

    ``rows`` (BoolTensor [B]): only these rows get their prompt; the others become ``[embeds ; 0]`` with the
    l added positions masked, so that their real tokens keep their positions (absolute position embeddings
    see no shift) and nothing attends to the padding.
    """
    length = prompt.shape[1]
    prompt_mask = torch.ones(mask.shape[0], length, dtype=mask.dtype, device=mask.device)
    prompted = torch.cat([prompt, embeds], dim=1), torch.cat([prompt_mask, mask], dim=1)
    if rows is None:
        return prompted
    plain = torch.cat([embeds, torch.zeros_like(prompt)], dim=1), torch.cat([mask, torch.zeros_like(prompt_mask)], dim=1)
    return (torch.where(rows[:, None, None], prompted[0], plain[0]),
            torch.where(rows[:, None], prompted[1], plain[1]))
