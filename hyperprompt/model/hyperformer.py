"""HyperFormer++ (Karimi Mahabadi et al., ACL 2021): one hypernetwork generates every layer's adapters.

Adapters sit where :mod:`hyperprompt.model.adapters` puts them (after each self-attention and
feed-forward sublayer, encoder and decoder). Their weights are generated as in the authors' released
HyperFormer++ configuration (rabeehk/hyperformer: ``AdapterLayersOneHyperNetController`` with
``efficient_unique_hyper_net``, and ``train_task_embeddings`` left at its default, false)::

    k_tau = e_tau                                         the learned task embedding itself (t_in = t_e)
    I = LayerNorm(h_m([k_tau ; z_layer ; z_position]))    mixer: 3 t_e -> e -> t (ReLU MLP)
    D = W_D I + c_D  -> [r, d] weight and [r] bias        U = W_U I + c_U  -> [d, r] weight and [d] bias
    gamma, beta = W_g I + c_g, W_b I + c_b  -> [d] each   (conditional layer norm on the adapter output)
    A(x) = x + gamma * LN(U act(D x)) + beta

``scale_generators: true`` (not the authors') generates ``W I / t + c`` instead of ``W I + c``, with ``W`` t times
larger at init: the same adapters at init, a t times smaller step through ``W`` (see the config).

With ``task_projector: true`` (the paper's description and the authors' ``train_task_embeddings: true``)
``k_tau = h_p(e_tau)``, a ReLU MLP t_in -> e -> t, and the layer / position embeddings have t entries.

Task embeddings ``e_tau`` (and the task projector) are shared by both stacks; each stack (encoder,
decoder) has its own layer embeddings, position embeddings (attention / feed-forward), mixer and
generators -- one hypernetwork per stack, as in the authors' code, whose T5Stack owns one.
Linear layers start as N(0, 1e-2) with zero biases (the authors' ``linear_layer``), embeddings as N(0, 1).

Adapters depend on (task, layer, position) only: training generates them for the distinct tasks of the
batch; without grad the all-task adapters are cached until a weight changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from hyperprompt.model.adapters import (
    ADAPTER_POSITIONS,
    AdapterState,
    check_adapter_fields,
    install_adapter_hooks,
)
from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.config import BottleneckMixin, MethodConfig, check_positive
from hyperprompt.model.layout import BackboneShape, layer_norm_parameters
from hyperprompt.model.registry import register_method


@dataclass
class HyperFormerConfig(MethodConfig, BottleneckMixin):
    """HyperFormer++: adapters generated from [task embedding; layer embedding; position embedding].

    Attributes:
        bottleneck_dim: r of the generated adapters; ``None`` means d_model // 32 (the authors' reduction
            factor 32), at least 1.
        activation: adapter non-linearity (``ACT2FN`` name; the authors' configs: ``gelu_new``).
        task_embedding_dim: size of the learned task embeddings e_tau (authors: 64); without the task
            projector also of the layer and position embeddings.
        projected_task_embedding_dim: t, size of the mixed embedding I that the generators read, and with
            the task projector of k_tau and the layer and position embeddings (authors: 64).
        task_projector: pass e_tau through a ReLU MLP before the mixer (``k_tau = h_p(e_tau)``). Off by
            default, as in the authors' released configuration (``train_task_embeddings: false``);
            models saved before this option existed had it on and load that way.
        train_layer_norms: under ``freeze_backbone``, keep the backbone's layer norms trainable (the
            authors' ``unfreeze_layer_norms``).
        task_hidden_dim: e, hidden width of the task projector and of the mixer (authors: 128).
        conditional_layer_norm: generate a layer norm (gamma, beta) applied to each adapter's output
            (authors' HyperFormer++ config: on).
        init_std: std of the hypernetworks' linear weights at initialisation (authors: 1e-2).
        scale_generators: give the generators of D, U and (gamma, beta) a 1/t multiplier on ``W I`` (and a t
            times larger init, so the generated adapters start the same): a reparameterisation (same function,
            same outputs at init) under which an Adam step moves a generated weight about as much as a stored
            adapter weight (lr) instead of up to ~t times more, as HyperPrompt-Global's ``scale_generators``
            does. Off by default (the authors' code); on a frozen pretrained BERT at lr 1e-3 the plain
            generators drive the encoder away from the backbone within ~25 steps (docs/results.md).
    """

    bottleneck_dim: int | None = None
    activation: str = "gelu_new"
    task_embedding_dim: int = 64
    projected_task_embedding_dim: int = 64
    task_hidden_dim: int = 128
    conditional_layer_norm: bool = True
    init_std: float = 1e-2
    task_projector: bool = False
    train_layer_norms: bool = True
    scale_generators: bool = False

    method: ClassVar[str] = "hyperformer++"
    saved_defaults: ClassVar[dict[str, Any]] = {"task_projector": True, "train_layer_norms": False,
                                                "scale_generators": False}

    @property
    def label(self) -> str:
        """The method and the settings that differ from the authors' (no conditional layer norm, 1/t generators)."""
        changes = [name for name, on in (("no conditional layer norm", not self.conditional_layer_norm),
                                         ("1/t generators", self.scale_generators)) if on]
        return f"{self.method} ({' + '.join(changes)})" if changes else self.method

    @property
    def task_key_dim(self) -> int:
        """The size of k_tau and of the layer / position embeddings beside it in the mixer's input."""
        return self.projected_task_embedding_dim if self.task_projector else self.task_embedding_dim

    def __post_init__(self) -> None:
        super().__post_init__()
        check_adapter_fields(self)
        check_positive(self, "task_embedding_dim", "projected_task_embedding_dim", "task_hidden_dim")


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class AdapterHypernetwork(nn.Module):
    """One stack's hypernetwork: (projected task embeddings, layer, position) -> that adapter's weights.

    Args:
        config: the method config; d_model, num_layers: the stack's width and depth.
    """

    def __init__(self, config: HyperFormerConfig, d_model: int, num_layers: int):
        super().__init__()
        t, e, k = config.projected_task_embedding_dim, config.task_hidden_dim, config.task_key_dim
        self.d_model, self.bottleneck = d_model, config.resolved_bottleneck(d_model)
        d, r = self.d_model, self.bottleneck
        self.layer_embedding = nn.Parameter(torch.empty(num_layers, k))  # z_layer
        self.position_embedding = nn.Parameter(torch.empty(len(ADAPTER_POSITIONS), k))  # z_position
        self.mixer = _mlp(3 * k, e, t)
        self.mixer_norm = nn.LayerNorm(t, eps=1e-6)
        self.down_generator = nn.Linear(t, r * d + r)  # D weight [r, d] and bias [r]
        self.up_generator = nn.Linear(t, d * r + d)  # U weight [d, r] and bias [d]
        self.norm_generator = nn.Linear(t, 2 * d) if config.conditional_layer_norm else None  # gamma, beta
        self.generator_multiplier = 1.0 / t if config.scale_generators else 1.0  # on W I (not on the biases)

    def generate(self, generator: nn.Linear, mixed: torch.Tensor) -> torch.Tensor:
        """``multiplier * W I + c`` of one generator: [R, M, P, t] -> [R, M, P, out] (the authors' ``W I + c``,
        computed as they do, without the scaling)."""
        if self.generator_multiplier == 1.0:
            return generator(mixed)
        return self.generator_multiplier * nn.functional.linear(mixed, generator.weight) + generator.bias

    def forward(self, task_embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        """Adapters for the R task keys k_tau [R, k] at every layer and position.

        Returns:
            ``{"down_weight": [R, M, P, r, d], "down_bias": [R, M, P, r], "up_weight": [R, M, P, d, r],
            "up_bias": [R, M, P, d]}`` plus ``norm_weight``, ``norm_bias`` [R, M, P, d] with the conditional
            layer norm (the :class:`AdapterState` table layout).
        """
        R, M, P = task_embedding.shape[0], self.layer_embedding.shape[0], self.position_embedding.shape[0]
        d, r = self.d_model, self.bottleneck
        k = task_embedding.shape[1]
        joint = torch.cat([
            task_embedding[:, None, None, :].expand(R, M, P, k),
            self.layer_embedding[None, :, None, :].expand(R, M, P, k),
            self.position_embedding[None, None, :, :].expand(R, M, P, k),
        ], dim=-1)
        mixed = self.mixer_norm(self.mixer(joint))  # I: [R, M, P, t]
        down = self.generate(self.down_generator, mixed)
        up = self.generate(self.up_generator, mixed)
        table = {
            "down_weight": down[..., :r * d].reshape(R, M, P, r, d),
            "down_bias": down[..., r * d:],
            "up_weight": up[..., :d * r].reshape(R, M, P, d, r),
            "up_bias": up[..., d * r:],
        }
        if self.norm_generator is not None:
            table["norm_weight"], table["norm_bias"] = self.generate(self.norm_generator, mixed).split(d, dim=-1)
        return table


class HyperFormerModel(MultiTaskT5):
    """A T5 whose per-task adapters (after every self-attention and feed-forward sublayer) are generated
    by HyperFormer++'s hypernetwork from task, layer and position embeddings."""

    config: HyperFormerConfig

    def build(self) -> None:
        cfg, layout = self.config, self.layout
        self.task_embedding = nn.Parameter(torch.empty(cfg.num_tasks, cfg.task_embedding_dim))  # e_tau
        self.task_projector = (_mlp(cfg.task_embedding_dim, cfg.task_hidden_dim, cfg.projected_task_embedding_dim)
                               if cfg.task_projector else None)
        self.hypernetworks = nn.ModuleDict({
            stack: AdapterHypernetwork(cfg, layout.d_model, M) for stack, M in layout.num_layers.items()
        })
        self.reset_parameters()
        install_adapter_hooks(layout)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The authors' initialisation: linear weights N(0, init_std), biases 0, embeddings N(0, 1); with
        ``scale_generators`` the generators' weights N(0, t init_std), so that ``W I / t`` starts as without."""
        nn.init.normal_(self.task_embedding)
        for module in [m for m in (self.task_projector, *self.hypernetworks.values()) if m is not None]:
            for sub in module.modules():
                if isinstance(sub, nn.Linear):
                    nn.init.normal_(sub.weight, std=self.config.init_std)
                    nn.init.zeros_(sub.bias)
        for hypernetwork in self.hypernetworks.values():
            nn.init.normal_(hypernetwork.layer_embedding)
            nn.init.normal_(hypernetwork.position_embedding)
            for generator in (hypernetwork.down_generator, hypernetwork.up_generator, hypernetwork.norm_generator):
                if generator is not None:
                    generator.weight.div_(hypernetwork.generator_multiplier)

    def per_task_parameters(self) -> dict[str, nn.Parameter]:
        return {"task_embedding": self.task_embedding}

    def backbone_parameters_to_train(self) -> list[nn.Parameter]:
        return layer_norm_parameters(self.base) if self.config.train_layer_norms else []

    def generate_adapters(self, tasks: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """Adapters of ``tasks`` (LongTensor [R]): ``{stack: {name: [R, M, P, ...]}}``."""
        keys = self.task_embedding[tasks]  # e_tau: [R, t_in]
        if self.task_projector is not None:
            keys = self.task_projector(keys)  # k_tau = h_p(e_tau): [R, t]
        return {stack: hypernetwork(keys) for stack, hypernetwork in self.hypernetworks.items()}

    def adapter_tables(self, task_ids: torch.Tensor) -> tuple[dict[str, dict[str, torch.Tensor]], torch.Tensor]:
        """Adapter tables and each example's row [B] in them (distinct tasks with grad; cached all tasks
        without: :meth:`MultiTaskT5.task_tables`)."""
        return self.task_tables(task_ids, self.generate_adapters)

    def conditioning_inputs(self, task_ids: torch.Tensor, inputs: dict[str, Any]) -> dict[str, Any]:
        tables, rows = self.adapter_tables(task_ids)
        return {**inputs, "adapter_state": AdapterState(tables, self.config.activation), "adapter_row_index": rows}


def hyperformer_added_parameters(config: HyperFormerConfig, shape: BackboneShape) -> int:
    """``T·t_in (+ projector) + Σ_stacks [(M + 2)·k + mixer(3k -> e -> t) + LN + (t+1)(2rd + r + d)
    (+ (t+1)·2d)]`` with k = t with the task projector, else t_in."""
    d, T = shape.d_model, config.num_tasks
    r = config.resolved_bottleneck(d)
    t_in, t, e, k = (config.task_embedding_dim, config.projected_task_embedding_dim, config.task_hidden_dim,
                     config.task_key_dim)
    projector = (t_in * e + e) + (e * t + t) if config.task_projector else 0
    mixer = (3 * k * e + e) + (e * t + t) + 2 * t
    generators = (t + 1) * (r * d + r) + (t + 1) * (d * r + d)
    if config.conditional_layer_norm:
        generators += (t + 1) * 2 * d
    per_stack = [(m + len(ADAPTER_POSITIONS)) * k + mixer + generators for m in shape.num_layers.values()]
    return T * t_in + projector + sum(per_stack)


register_method("hyperformer++", HyperFormerConfig, HyperFormerModel, hyperformer_added_parameters)
