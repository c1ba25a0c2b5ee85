"""Prefix tuning (Li & Liang, 2021), multi-task: learned per-task key/value prefixes in every attention.

Li & Liang's encoder-decoder setting (their BART summarisation code): prefixes for the encoder's
self-attention, the decoder's self-attention **and** the decoder's cross-attention, each kind produced by its
own MLP reparameterisation from a small prefix table, with prefix dropout::

    [P^1 .. P^M]_{tau,k|v} = MLP_s(P'_{s,tau})     P'_{s,tau}: [l_s, d_model]    MLP_s: d_model -> H (tanh) -> M·2·h·d_kv
    K' = [P^m_{tau,k} ; K]     V' = [P^m_{tau,v} ; V]      in every layer m of each kind s

for s in (encoder, decoder, cross); row tau of each P' is task tau's, the MLPs are shared by the tasks
(Li & Liang train one model per task, with one MLP each; shared MLPs are what a multi-task model with a
per-task P' means). The prefixes go through the same injection point as HyperPrompt's
(:func:`~hyperprompt.model.attention.prompted_attention`): prepended to the projected keys and values,
zero position bias, never masked, never in the KV cache. Cross-attention prefixes sit in front of the
encoder's keys and values seen by each decoder layer.

``prefix-tuning-self`` keeps the earlier ablation: self-attention only, prefixes stored directly
(no MLP), N(0, 1) -- HyperPrompt without its hypernetworks, the same prompt lengths and injection point.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hyperprompt.model.attention import PromptState
from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.config import MethodConfig, PromptedStacksMixin, check_positive
from hyperprompt.model.layout import BackboneShape
from hyperprompt.model.registry import register_method

#: the kinds of attention a prefix can be put in front of, in table order
PREFIX_KINDS = ("encoder", "decoder", "cross")


@dataclass
class PrefixTuningConfig(MethodConfig, PromptedStacksMixin):
    """Per-task key/value prefixes in every attention layer.

    Attributes:
        encoder_prompt_length, decoder_prompt_length, apply_to: the self-attention prefixes, as
            :class:`HyperPromptConfig` (16, 6, ``both``), so that the comparison with HyperPrompt changes only
            how prompts are made.
        cross_attention: prefixes in the decoder's cross-attention too (Li & Liang's encoder-decoder setting).
        cross_prompt_length: their length (16, the encoder's: they extend the encoder's keys).
        reparameterize: produce the prefixes with an MLP per kind (Li & Liang; on by default).
        reparameterization_hidden_dim: H, that MLP's hidden width (Li & Liang: 512).
        prefix_dropout: dropout on the produced prefixes while training (Li & Liang's ``prefix_dropout``;
            their default 0).
        init_std: std of P' (or of the stored prefixes without ``reparameterize``) at initialisation (1.0:
            ``nn.Embedding``'s, as Li & Liang's prefix tables).
    """

    encoder_prompt_length: int = 16
    decoder_prompt_length: int = 6
    apply_to: str = "both"
    cross_attention: bool = True
    cross_prompt_length: int = 16
    reparameterize: bool = True
    reparameterization_hidden_dim: int = 512
    prefix_dropout: float = 0.0
    init_std: float = 1.0

    method: ClassVar[str] = "prefix-tuning"
    #: a method_config.json written before cross-attention prefixes and prefix dropout existed
    saved_defaults: ClassVar[dict[str, Any]] = {"cross_attention": False, "cross_prompt_length": 16, "prefix_dropout": 0.0}

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_prompted_stacks()
        check_positive(self, "reparameterization_hidden_dim", "cross_prompt_length")
        if not 0.0 <= self.prefix_dropout < 1.0:
            raise ValueError(f"prefix_dropout must be in [0, 1), got {self.prefix_dropout!r}.")

    @property
    def label(self) -> str:
        """The method, and "prefixes stored directly" when ``prefix-tuning`` has no MLP (Li & Liang's has one)."""
        direct = not self.reparameterize and self.method == "prefix-tuning"
        return f"{self.method} (prefixes stored directly)" if direct else self.method

    def for_stacks(self, stacks: tuple[str, ...]) -> PrefixTuningConfig:
        """On a backbone without an encoder (a decoder-only LM) there is no cross-attention to prefix."""
        config = super().for_stacks(stacks)
        if "encoder" not in stacks and config.cross_attention:
            config = dataclasses.replace(config, cross_attention=False)
        return config

    def prefix_lengths(self) -> dict[str, int]:
        """``{kind: l}`` for the kinds of attention that get prefixes, in :data:`PREFIX_KINDS` order."""
        lengths = dict(self.prompt_lengths())
        if self.cross_attention:
            lengths["cross"] = self.cross_prompt_length
        return lengths


@dataclass
class PrefixAblationConfig(PrefixTuningConfig):
    """``prefix-tuning-self``: self-attention prefixes stored directly, no MLP, no cross-attention."""

    cross_attention: bool = False
    reparameterize: bool = False

    method: ClassVar[str] = "prefix-tuning-self"
    saved_defaults: ClassVar[dict[str, Any]] = {}


class PrefixTuningModel(MultiTaskT5):
    """A backbone with learned key/value prefixes per (task, layer) in its attention layers.

    Attributes:
        prompts, reparameterization: ``{kind: [T, l, d_model]}`` (P') and ``{kind: MLP}``, with ``reparameterize``.
        prefixes: ``{kind: [T, M, 2, h, l, d_kv]}`` (keys 0, values 1), without it.
    """

    config: PrefixTuningConfig

    def build(self) -> None:
        cfg, layout = self.config, self.layout
        T, h, d_kv, d = cfg.num_tasks, layout.num_heads, layout.head_dim, layout.d_model
        lengths = cfg.prefix_lengths()
        if "cross" in lengths and not layout.cross_attention:
            raise ValueError(f"cross_attention: this {layout.family} backbone has no cross-attention; set "
                             "cross_attention: false")
        self.num_layers = {kind: len(layout.cross_attention) if kind == "cross" else layout.num_layers[kind]
                           for kind in lengths}
        self.head_shape = (h, d_kv)
        if cfg.reparameterize:
            H = cfg.reparameterization_hidden_dim
            self.prompts = nn.ParameterDict({
                kind: nn.Parameter(torch.randn(T, length, d) * cfg.init_std) for kind, length in lengths.items()
            })
            self.reparameterization = nn.ModuleDict({
                kind: nn.Sequential(nn.Linear(d, H), nn.Tanh(), nn.Linear(H, M * 2 * h * d_kv))
                for kind, M in self.num_layers.items()
            })
        else:
            self.prefixes = nn.ParameterDict({
                kind: nn.Parameter(torch.randn(T, self.num_layers[kind], 2, h, length, d_kv) * cfg.init_std)
                for kind, length in lengths.items()
            })
        self.use_prompted_attention()

    def per_task_parameters(self) -> dict[str, nn.Parameter]:
        if self.config.reparameterize:
            return {f"prompts.{kind}": p for kind, p in self.prompts.items()}
        return {f"prefixes.{kind}": p for kind, p in self.prefixes.items()}

    def prefix_tables(self) -> dict[str, torch.Tensor]:
        """Every task's prefixes as prompt tables ``{kind: [M, T, 2, h, l, d_kv]}`` (row = task id), with
        prefix dropout while training."""
        if not self.config.reparameterize:
            tables = {kind: p.transpose(0, 1) for kind, p in self.prefixes.items()}
        else:
            h, d_kv = self.head_shape
            tables = {}
            groups = self.config.task_id_groups()  # each add-task's tasks with the shapes they had: old rows keep their bits
            for kind, prompt in self.prompts.items():
                T, length, _ = prompt.shape
                out = torch.cat([self.reparameterization[kind](prompt[start:stop])
                                 for start, stop in groups])  # [T, l, M * 2 * h * d_kv]
                out = out.reshape(T, length, self.num_layers[kind], 2, h, d_kv)
                tables[kind] = out.permute(2, 0, 3, 4, 1, 5)  # [M, T, 2, h, l, d_kv]
        if self.config.prefix_dropout and self.training:
            tables = {kind: F.dropout(table, self.config.prefix_dropout) for kind, table in tables.items()}
        return tables

    def task_prefixes(self, task: int | str) -> dict[str, torch.Tensor]:
        """The prefixes of one task: ``{kind: [M, 2, h, l, d_kv]}`` (keys 0, values 1)."""
        task_id = self.config.task_id(task) if isinstance(task, str) else int(task)
        return {kind: table[:, task_id] for kind, table in self.prefix_tables().items()}

    def conditioning_inputs(self, task_ids: torch.Tensor, inputs: dict[str, Any]) -> dict[str, Any]:
        return {**inputs, "prompt_state": PromptState(self.prefix_tables()), "prompt_row_index": task_ids}


def prefix_tuning_added_parameters(config: PrefixTuningConfig, shape: BackboneShape) -> int:
    """Reparameterised: ``Σ_s [T·l_s·d + (d+1)·H + (H+1)·M_s·2·h·d_kv]``; stored: ``T · Σ_s M_s·2·l_s·h·d_kv``,
    over the kinds s (encoder / decoder self-attention, cross-attention: M = decoder layers)."""
    layers = {**shape.num_layers, "cross": shape.num_decoder_layers}
    T, d, y, H = config.num_tasks, shape.d_model, shape.attention_width, config.reparameterization_hidden_dim
    total = 0
    for kind, length in config.prefix_lengths().items():
        M = layers[kind]
        if config.reparameterize:
            total += T * length * d + (d + 1) * H + (H + 1) * M * 2 * y
        else:
            total += T * M * 2 * length * y
    return total


register_method("prefix-tuning", PrefixTuningConfig, PrefixTuningModel, prefix_tuning_added_parameters)
register_method("prefix-tuning-self", PrefixAblationConfig, PrefixTuningModel, prefix_tuning_added_parameters)
