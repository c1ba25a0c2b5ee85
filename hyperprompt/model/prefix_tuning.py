"""Prefix tuning (Li & Liang, 2021), multi-task: learned per-task, per-layer key/value prefixes.

The ablation that isolates what HyperPrompt's hypernetworks add: the same injection point (prepended
to the projected keys and values of every encoder and/or decoder self-attention, through
:func:`~hyperprompt.model.attention.prompted_attention` and a :class:`~hyperprompt.model.attention.PromptState`),
the same prompt lengths, but each (task, layer) prefix is stored directly::

    K' = [P^m_{tau,k} ; K]     V' = [P^m_{tau,v} ; V]      P^m_{tau,k}, P^m_{tau,v}: [h, l, d_kv]

Optionally (``reparameterize``) the prefixes come from Li & Liang's MLP reparameterisation, one MLP per
stack shared by tasks and layers: ``[P^1..P^M]_{tau,k|v} = MLP(P'_tau)`` with ``P'_tau`` [l, d_model]
and ``MLP: d_model -> H (tanh) -> M * 2 * h * d_kv``. Li & Liang use it to stabilise training and
keep only its output at inference; here it is trained and saved like any other added weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from hyperprompt.model.attention import PromptState
from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.config import MethodConfig, PromptedStacksMixin, check_positive
from hyperprompt.model.layout import BackboneShape
from hyperprompt.model.registry import register_method


@dataclass
class PrefixTuningConfig(MethodConfig, PromptedStacksMixin):
    """Per-task, per-layer key/value prefixes in self-attention, without hypernetworks.

    Attributes:
        encoder_prompt_length, decoder_prompt_length, apply_to: as :class:`HyperPromptConfig`
            (16, 6, ``both``), so that the comparison with HyperPrompt changes only how prompts are made.
        init_std: std of the stored prefixes at initialisation (1.0: the scale of HyperPrompt's generated
            prompts at initialisation). With ``reparameterize``, the std of P' instead.
        reparameterize: produce the prefixes with Li & Liang's MLP (off by default: the plain ablation).
        reparameterization_hidden_dim: H, hidden width of that MLP (Li & Liang: 512).
    """

    encoder_prompt_length: int = 16
    decoder_prompt_length: int = 6
    apply_to: str = "both"
    init_std: float = 1.0
    reparameterize: bool = False
    reparameterization_hidden_dim: int = 512

    method: ClassVar[str] = "prefix-tuning"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_prompted_stacks()
        check_positive(self, "reparameterization_hidden_dim")


class PrefixTuningModel(MultiTaskT5):
    """A T5 with a learned key/value prefix per (task, layer) in every (encoder and/or decoder) self-attention.

    Attributes:
        prefixes: ``{stack: [T, M, 2, h, l, d_kv]}`` (keys 0, values 1), without ``reparameterize``.
        prompts, reparameterization: ``{stack: [T, l, d_model]}`` and ``{stack: MLP}``, with it.
    """

    config: PrefixTuningConfig

    def build(self) -> None:
        cfg, layout = self.config, self.layout
        T, h, d_kv, d = cfg.num_tasks, layout.num_heads, layout.head_dim, layout.d_model
        self.num_layers = {stack: layout.num_layers[stack] for stack in cfg.prompt_lengths()}
        self.head_shape = (h, d_kv)
        if cfg.reparameterize:
            H = cfg.reparameterization_hidden_dim
            self.prompts = nn.ParameterDict({
                stack: nn.Parameter(torch.randn(T, length, d) * cfg.init_std)
                for stack, length in cfg.prompt_lengths().items()
            })
            self.reparameterization = nn.ModuleDict({
                stack: nn.Sequential(nn.Linear(d, H), nn.Tanh(), nn.Linear(H, M * 2 * h * d_kv))
                for stack, M in self.num_layers.items()
            })
        else:
            self.prefixes = nn.ParameterDict({
                stack: nn.Parameter(torch.randn(T, self.num_layers[stack], 2, h, length, d_kv) * cfg.init_std)
                for stack, length in cfg.prompt_lengths().items()
            })
        self.use_prompted_attention()

    def per_task_parameters(self) -> dict[str, nn.Parameter]:
        if self.config.reparameterize:
            return {f"prompts.{stack}": p for stack, p in self.prompts.items()}
        return {f"prefixes.{stack}": p for stack, p in self.prefixes.items()}

    def prefix_tables(self) -> dict[str, torch.Tensor]:
        """Every task's prefixes as prompt tables ``{stack: [M, T, 2, h, l, d_kv]}`` (row = task id)."""
        if not self.config.reparameterize:
            return {stack: p.transpose(0, 1) for stack, p in self.prefixes.items()}
        h, d_kv = self.head_shape
        tables = {}
        for stack, prompt in self.prompts.items():
            T, length, _ = prompt.shape
            out = self.reparameterization[stack](prompt)  # [T, l, M * 2 * h * d_kv]
            out = out.reshape(T, length, self.num_layers[stack], 2, h, d_kv)
            tables[stack] = out.permute(2, 0, 3, 4, 1, 5)  # [M, T, 2, h, l, d_kv]
        return tables

    def task_prefixes(self, task: int | str) -> dict[str, torch.Tensor]:
        """The prefixes of one task: ``{stack: [M, 2, h, l, d_kv]}`` (keys 0, values 1)."""
        task_id = self.config.task_id(task) if isinstance(task, str) else int(task)
        return {stack: table[:, task_id] for stack, table in self.prefix_tables().items()}

    def conditioning_inputs(self, task_ids: torch.Tensor, inputs: dict[str, Any]) -> dict[str, Any]:
        return {**inputs, "prompt_state": PromptState(self.prefix_tables()), "prompt_row_index": task_ids}


def prefix_tuning_added_parameters(config: PrefixTuningConfig, shape: BackboneShape) -> int:
    """Stored: ``T · Σ_s M_s · 2 · l_s · h·d_kv``. Reparameterised: ``Σ_s [T·l_s·d + (d+1)·H + (H+1)·M_s·2·h·d_kv]``."""
    layers = shape.num_layers
    T, d, y, H = config.num_tasks, shape.d_model, shape.attention_width, config.reparameterization_hidden_dim
    total = 0
    for stack, length in config.prompt_lengths().items():
        M = layers[stack]
        if config.reparameterize:
            total += T * length * d + (d + 1) * H + (H + 1) * M * 2 * y
        else:
            total += T * M * 2 * length * y
    return total


register_method("prefix-tuning", PrefixTuningConfig, PrefixTuningModel, prefix_tuning_added_parameters)
