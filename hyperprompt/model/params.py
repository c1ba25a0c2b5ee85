"""Closed-form parameter accounting: how many parameters each method adds to a T5 backbone.

The formulas are checked against counted module parameters in the tests, so ``hyperprompt params``
can report the paper's sizes (up to T5-11B) from shapes alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import T5Config

from hyperprompt.model.config import HyperPromptConfig, MethodConfig


@dataclass(frozen=True)
class BackboneShape:
    """The backbone widths that parameter counts depend on."""

    d_model: int
    num_heads: int
    d_kv: int
    d_ff: int
    num_encoder_layers: int
    num_decoder_layers: int

    @classmethod
    def from_config(cls, config: T5Config) -> BackboneShape:
        return cls(
            d_model=config.d_model,
            num_heads=config.num_heads,
            d_kv=config.d_kv,
            d_ff=config.d_ff,
            num_encoder_layers=config.num_layers,
            num_decoder_layers=config.num_decoder_layers,
        )

    @property
    def attention_width(self) -> int:
        """h * d_kv: the width of keys and values (not always d_model: t5-3b, t5-11b)."""
        return self.num_heads * self.d_kv


def hyperprompt_added_parameters(config: HyperPromptConfig, shape: BackboneShape) -> int:
    """Parameters HyperPrompt adds: ``T·Σl·d`` global prompts plus the hypernetworks.

    share: ``Σ_s M_s · 2(b·d + y·b)``; sep: T times that; global:
    ``(T + ΣM)·t' + h_t + 2·t·b·d + 2·t·y·b`` (W^D, W^U for keys and values), with y = h·d_kv.
    """
    T, d, y = config.num_tasks, shape.d_model, shape.attention_width
    b = config.resolved_bottleneck(d)
    stacks = []
    if config.uses_encoder():
        stacks.append((shape.num_encoder_layers, config.encoder_prompt_length))
    if config.uses_decoder():
        stacks.append((shape.num_decoder_layers, config.decoder_prompt_length))
    prompts = T * sum(length for _, length in stacks) * d
    layers = sum(m for m, _ in stacks)
    local = 2 * (b * d + y * b)
    if config.variant == "share":
        return prompts + layers * local
    if config.variant == "sep":
        return prompts + T * layers * local
    t_in, t, e = config.task_embedding_dim, config.layer_task_embedding_dim, config.task_hidden_dim
    embeddings = (T + layers) * t_in
    task_mlp = (2 * t_in * e + e) + (e * t + t)
    generators = 2 * t * b * d + 2 * t * y * b
    return prompts + embeddings + task_mlp + generators


#: method name -> formula(config, shape). Baselines register theirs here.
ADDED_PARAMETER_FORMULAS: dict[str, Callable[[Any, BackboneShape], int]] = {
    "mtl": lambda config, shape: 0,
    **{f"hyperprompt-{v}": hyperprompt_added_parameters for v in ("share", "sep", "global")},
}


def added_parameters(config: MethodConfig, shape: BackboneShape) -> int:
    """Added parameters of the method ``config.method`` on a backbone of ``shape``."""
    formula = ADDED_PARAMETER_FORMULAS.get(config.method)
    if formula is None:
        raise ValueError(f"no parameter formula for {config.method!r}; known: {', '.join(sorted(ADDED_PARAMETER_FORMULAS))}.")
    return formula(config, shape)
