"""Prompt tuning (Lester et al., 2021), multi-task: a learned prompt per task before the input embeddings.

    inputs_embeds = [P_tau ; embed(input_ids)]       P_tau: [l, d_model]
    attention_mask = [1 ... 1 ; attention_mask]

The prompt goes through the whole encoder like ordinary tokens (T5's relative positions count it);
the decoder sees it through cross-attention. Unlike HyperPrompt it enters the input only, not every
self-attention. ``generate`` passes ``inputs_embeds`` and the extended mask to the backbone.

On a decoder-only LM (peft's semantics) the soft tokens come before the input in the one sequence: they
take positions 0..l-1, ``labels`` get l ignored (-100) entries in front, and the logits have l more
positions in front. ``generate`` returns ``[input_ids ; new tokens]`` as for the plain LM; it always
uses the KV cache (transformers feeds ``inputs_embeds`` only in the first step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.causal_lm import is_decoder_only
from hyperprompt.model.config import MethodConfig, check_choice, check_positive
from hyperprompt.model.layout import BackboneShape
from hyperprompt.model.registry import register_method
from hyperprompt.model.soft_tokens import embedded_inputs, prepend_soft_tokens, sampled_vocab_prompts

PROMPT_INITS = ("vocab", "uniform")


@dataclass
class PromptTuningConfig(MethodConfig):
    """A learned soft prompt per task, prepended to the encoder's input embeddings.

    Attributes:
        prompt_length: l, prompt tokens per task (Lester et al.: 100 for their best results; 20 is close
            at large scales). Each one lengthens every encoder input.
        init: ``vocab`` -- copy embedding rows of token ids drawn uniformly from the ``vocab_init_size``
            first (most frequent, in SentencePiece order) ids, Lester's "sampled vocab"; or ``uniform`` in
            [-uniform_init_range, uniform_init_range], Lester's "random uniform".
        vocab_init_size: how many of the first vocabulary ids ``vocab`` init samples from (Lester: 5000).
        uniform_init_range: half-width of the ``uniform`` init (Lester: 0.5).
    """

    prompt_length: int = 100
    init: str = "vocab"
    vocab_init_size: int = 5000
    uniform_init_range: float = 0.5

    method: ClassVar[str] = "prompt-tuning"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("init", self.init, PROMPT_INITS)
        check_positive(self, "prompt_length", "vocab_init_size")


class PromptTuningModel(MultiTaskT5):
    """A T5 with a soft prompt per task before the encoder input.

    Attributes:
        prompts: [T, l, d_model], row tau is task tau's prompt.
    """

    config: PromptTuningConfig

    def build(self) -> None:
        cfg = self.config
        embedding = self.base.get_input_embeddings().weight
        self.prompts = nn.Parameter(torch.empty(cfg.num_tasks, cfg.prompt_length, embedding.shape[1],
                                                device=embedding.device, dtype=embedding.dtype))
        with torch.no_grad():
            if cfg.init == "vocab":
                self.prompts.copy_(sampled_vocab_prompts(embedding, cfg.num_tasks, cfg.prompt_length, cfg.vocab_init_size))
            else:
                nn.init.uniform_(self.prompts, -cfg.uniform_init_range, cfg.uniform_init_range)

    def per_task_parameters(self) -> dict[str, nn.Parameter]:
        return {"prompts": self.prompts}

    def conditioning_inputs(self, task_ids: torch.Tensor, inputs: dict[str, Any]) -> dict[str, Any]:
        """Replace ``input_ids`` [B, S] by ``inputs_embeds`` [B, l + S, d] and extend ``attention_mask``
        to [B, l + S]. Given ``encoder_outputs``, the encoder already ran (conditioned, with the extended
        mask): the inputs pass unchanged."""
        if inputs.get("encoder_outputs") is not None:
            return inputs
        inputs, embeds, mask = embedded_inputs(self.base, inputs, "prompt tuning")
        prompt = self.prompts.index_select(0, task_ids).to(embeds.dtype)  # [B, l, d]
        batch = embeds.shape[0]
        inputs["inputs_embeds"], inputs["attention_mask"] = prepend_soft_tokens(prompt, embeds, mask)
        if is_decoder_only(self.base):  # the soft tokens are part of the one sequence
            length = prompt.shape[1]
            if inputs.get("labels") is not None:
                inputs["labels"] = F.pad(inputs["labels"], (length, 0), value=-100)
            if inputs.get("position_ids") is not None:
                positions = torch.arange(length, device=embeds.device).expand(batch, length)
                inputs["position_ids"] = torch.cat([positions, inputs["position_ids"] + length], dim=1)
            order = _left_padding_first(mask, length)
            for key in ("inputs_embeds", "attention_mask", "labels", "position_ids"):
                if inputs.get(key) is not None:
                    index = order if inputs[key].dim() == 2 else order[..., None].expand_as(inputs[key])
                    inputs[key] = inputs[key].gather(1, index)
        return inputs

    def generated_sequences(self, sequences: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        """A decoder-only LM generated from ``inputs_embeds`` returns the new tokens only: put the input first."""
        if is_decoder_only(self.base) and inputs.get("input_ids") is not None:
            input_ids = inputs["input_ids"].repeat_interleave(sequences.shape[0] // inputs["input_ids"].shape[0], 0)
            return torch.cat([input_ids, sequences], dim=1)
        return sequences


def _left_padding_first(mask: torch.Tensor, length: int) -> torch.Tensor:
    """Column order [B, l + S] that puts a row's left padding before its l soft tokens: [pad ; P ; input]
    rather than [P ; pad ; input]. Sliding windows count sequence columns, so padding between the soft
    tokens and the input would push them out of the window earlier than without padding."""
    columns = torch.arange(length + mask.shape[1], device=mask.device)[None]
    pads = (mask.cumsum(1) == 0).sum(1, keepdim=True)  # leading zeros per row
    return torch.where(columns < pads, columns + length, torch.where(columns < pads + length, columns - pads, columns))


def prompt_tuning_added_parameters(config: PromptTuningConfig, shape: BackboneShape) -> int:
    """``T · l · d_model``."""
    return config.num_tasks * config.prompt_length * shape.d_model


register_method("prompt-tuning", PromptTuningConfig, PromptTuningModel, prompt_tuning_added_parameters)
