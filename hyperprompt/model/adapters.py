"""Adapters (Houlsby et al., 2019), multi-task: per-task bottleneck adapters after T5's sublayers.

In every block of the encoder and the decoder, an adapter rewrites the output of the self-attention
sublayer and of the feed-forward sublayer, before T5's dropout and residual add (the placement of
the HyperFormer code base, which the HyperPrompt paper's adapter numbers come from)::

    A_tau(x) = x + LN_tau(U_tau act(D_tau x + b_D) + b_U)   D: d_model -> r,  U: r -> d_model
    h = h + Dropout(A_tau(SelfAttention(LN(h))))          h = h + Dropout(A_tau(FF(LN(h))))

``LN_tau`` is a layer norm on the adapter's output (the HyperFormer code's adapter controller:
``add_layer_norm_after_adapter``, on by default; weight 1, bias 0 at the start), one per task like the
adapter itself; ``layer_norm: false`` leaves it out. With ``freeze_backbone`` the backbone's own layer norms
are still trained (Houlsby et al.; the HyperFormer code's ``unfreeze_layer_norms``), shared by the tasks;
``train_layer_norms: false`` freezes them too.
Decoder cross-attention gets no adapter (Houlsby's two adapters per layer; HyperFormer does the same).
``U`` and ``D`` start small (std 1e-2).

Routing: the self-attention module receives the forward kwargs, T5's feed-forward sublayer does not.
A forward hook on each self-attention reads ``adapter_state`` / ``adapter_row_index`` (the kwargs
returned by ``conditioning_inputs``), adapts the attention output and hands them on to the same block's
feed-forward module, whose hook adapts its output and drops them. ``adapter_row_index`` is a tensor
kwarg, so ``generate`` repeats it for beams like ``prompt_row_index``. :class:`AdapterState` and the hooks are
shared with HyperFormer++ (``hyperformer.py``), which generates the same adapters with a hypernetwork.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.config import BottleneckMixin, MethodConfig
from hyperprompt.model.layout import BackboneLayout, BackboneShape, layer_norm_parameters
from hyperprompt.model.registry import register_method

#: where adapters sit in a block, in table order
ADAPTER_POSITIONS = ("attention", "feed_forward")


@dataclass
class AdapterConfig(MethodConfig, BottleneckMixin):
    """Per-task Houlsby adapters after the self-attention and feed-forward sublayers.

    Attributes:
        bottleneck_dim: r, the adapter bottleneck. ``None`` means d_model // 32 (HyperFormer's reduction
            factor 32: 24 at T5-Base), at least 1.
        activation: the bottleneck non-linearity, any name in ``transformers.activations.ACT2FN``
            (HyperFormer's T5 configs use ``gelu_new``).
        init_std: std of the adapter weights at initialisation (biases start at 0); small (Houlsby: 1e-2).
        layer_norm: a per-task layer norm on each adapter's output (the HyperFormer code's default).
        train_layer_norms: under ``freeze_backbone``, keep the backbone's layer norms trainable (Houlsby).
    """

    bottleneck_dim: int | None = None
    activation: str = "gelu_new"
    init_std: float = 1e-2
    layer_norm: bool = True
    train_layer_norms: bool = True

    method: ClassVar[str] = "adapter"
    saved_defaults: ClassVar[dict[str, Any]] = {"layer_norm": False, "train_layer_norms": False}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_adapter_fields(self)

    @property
    def label(self) -> str:
        """The method, and "no output layer norm" when its adapters have none (Houlsby's near-identity adapter)."""
        return self.method if self.layer_norm else f"{self.method} (no output layer norm)"


def check_adapter_fields(config: Any) -> None:
    """Validate the fields adapter methods share (``bottleneck_dim``, ``activation``)."""
    config.check_bottleneck()
    if config.activation not in ACT2FN:
        raise ValueError(f"activation={config.activation!r} is not known; choose one of {', '.join(sorted(ACT2FN))}.")


class AdapterState:
    """The per-forward adapters that travel to the hooks as the ``adapter_state`` kwarg.

    Attributes:
        tables: ``{stack: {name: tensor [R, M, P, ...]}}`` for R table rows, M layers, P = 2 positions:
            ``down_weight`` [.., r, d], ``down_bias`` [.., r], ``up_weight`` [.., d, r], ``up_bias`` [.., d],
            and optionally ``norm_weight``, ``norm_bias`` [.., d] (a layer norm on the adapter's
            output, before the residual: HyperFormer++'s conditional layer norm).
        activation: the bottleneck non-linearity.
    """

    def __init__(self, tables: dict[str, dict[str, torch.Tensor]], activation: str):
        self.tables = tables
        self.activation = ACT2FN[activation]

    def apply(self, slot: tuple[str, int, int], x: torch.Tensor, row_index: torch.Tensor | None) -> torch.Tensor:
        """The adapter of ``slot = (stack, layer, position)`` on x [B, n, d], row b using table row
        ``row_index[b]``. Returns [B, n, d]."""
        table = self.tables.get(slot[0])
        if table is None:
            return x
        _, layer, position = slot
        weights = {}
        for name, tensor in table.items():
            tensor = tensor[:, layer, position]
            if row_index is not None:
                tensor = tensor.index_select(0, row_index)
            elif tensor.shape[0] == 1:
                tensor = tensor.expand(x.shape[0], *tensor.shape[1:])
            else:
                raise ValueError("adapter_row_index is required when the adapter table has several rows.")
            weights[name] = tensor.to(x.dtype)
        hidden = torch.baddbmm(weights["down_bias"][:, None], x, weights["down_weight"].transpose(1, 2))
        out = torch.baddbmm(weights["up_bias"][:, None], self.activation(hidden), weights["up_weight"].transpose(1, 2))
        if "norm_weight" in weights:
            out = F.layer_norm(out, out.shape[-1:]) * weights["norm_weight"][:, None] + weights["norm_bias"][:, None]
        return x + out


def _adapt_attention_output(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
    """Forward hook of a block's self-attention (which receives the forward kwargs): adapt its output
    and hand the adapter inputs to the block's feed-forward module, which receives no kwargs (and to the
    attention output module, where that is another module: BERT)."""
    state = kwargs.get("adapter_state")
    inputs = None if state is None else (state, kwargs.get("adapter_row_index"))
    for receiver in module._adapter_feed_forward:
        receiver._adapter_inputs = inputs
    if inputs is None or getattr(module, "_adapter_output_elsewhere", False):
        return None
    attention_output, *rest = output  # T5Attention returns (output, position_bias, weights)
    return (state.apply(module._adapter_slot, attention_output, inputs[1]), *rest)


def _adapt_feed_forward_output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
    inputs, module._adapter_inputs = module._adapter_inputs, None
    if inputs is None:
        return None
    state, rows = inputs
    return state.apply(module._adapter_slot, output, rows)


def install_adapter_hooks(layout: BackboneLayout) -> None:
    """Hook every layer of the backbone with ``layout`` so that an ``adapter_state`` kwarg adapts its
    self-attention and feed-forward outputs (idempotent; without the kwarg the hooks do nothing).

    The hooks sit on modules called *inside* a block's forward (``T5Block.forward``), so gradient
    checkpointing (which re-runs ``forward``, not the block's own hooks) recomputes the adapters too."""
    outputs = layout.attention_output or {}
    for stack in layout.stacks:
        for layer, (attention, feed_forward) in enumerate(zip(layout.self_attention[stack],
                                                              layout.feed_forward[stack], strict=True)):
            if getattr(attention, "_adapter_slot", None) is not None:
                continue
            attention._adapter_slot = (stack, layer, ADAPTER_POSITIONS.index("attention"))
            feed_forward._adapter_slot = (stack, layer, ADAPTER_POSITIONS.index("feed_forward"))
            attention._adapter_feed_forward = (feed_forward,)  # a tuple: not registered as a submodule
            feed_forward._adapter_inputs = None
            attention.register_forward_hook(_adapt_attention_output, with_kwargs=True)
            feed_forward.register_forward_hook(_adapt_feed_forward_output)
            output = outputs[stack][layer] if stack in outputs else attention
            if output is not attention:  # the sublayer's output comes from a later module (BERT)
                attention._adapter_output_elsewhere = True
                attention._adapter_feed_forward = (feed_forward, output)
                output._adapter_slot = attention._adapter_slot
                output._adapter_inputs = None
                output.register_forward_hook(_adapt_feed_forward_output)


class AdapterModel(MultiTaskT5):
    """A T5 with a Houlsby adapter per task after every self-attention and feed-forward sublayer.

    Parameters per stack (M layers, P = 2 positions, T tasks): ``down_weight`` [T, M, P, r, d],
    ``down_bias`` [T, M, P, r], ``up_weight`` [T, M, P, d, r], ``up_bias`` [T, M, P, d]. Row tau is
    task tau's; each example gathers its task's adapters (no per-task loop).
    """

    config: AdapterConfig

    def build(self) -> None:
        layout = self.layout
        T, d, r = self.config.num_tasks, layout.d_model, self.config.resolved_bottleneck(layout.d_model)
        P = len(ADAPTER_POSITIONS)
        self.adapters = nn.ModuleDict()
        for stack, M in layout.num_layers.items():
            self.adapters[stack] = nn.ParameterDict({
                "down_weight": nn.Parameter(torch.empty(T, M, P, r, d)),
                "down_bias": nn.Parameter(torch.zeros(T, M, P, r)),
                "up_weight": nn.Parameter(torch.empty(T, M, P, d, r)),
                "up_bias": nn.Parameter(torch.zeros(T, M, P, d)),
            })
            if self.config.layer_norm:
                self.adapters[stack]["norm_weight"] = nn.Parameter(torch.ones(T, M, P, d))
                self.adapters[stack]["norm_bias"] = nn.Parameter(torch.zeros(T, M, P, d))
        for params in self.adapters.values():
            nn.init.normal_(params["down_weight"], std=self.config.init_std)
            nn.init.normal_(params["up_weight"], std=self.config.init_std)
        install_adapter_hooks(layout)

    def per_task_parameters(self) -> dict[str, nn.Parameter]:
        return {f"adapters.{stack}.{name}": p for stack, params in self.adapters.items() for name, p in params.items()}

    def backbone_parameters_to_train(self) -> list[nn.Parameter]:
        return layer_norm_parameters(self.base) if self.config.train_layer_norms else []

    def conditioning_inputs(self, task_ids: torch.Tensor, inputs: dict[str, Any]) -> dict[str, Any]:
        tables = {stack: dict(params.items()) for stack, params in self.adapters.items()}
        return {**inputs, "adapter_state": AdapterState(tables, self.config.activation), "adapter_row_index": task_ids}


def adapter_added_parameters(config: AdapterConfig, shape: BackboneShape) -> int:
    """``T · (M_enc + M_dec) · 2 · (2·r·d + r + d (+ 2d))``: two adapters per layer, per task (with their layer
    norms). The backbone's layer norms trained under ``freeze_backbone`` are the backbone's, not added."""
    d = shape.d_model
    r = config.resolved_bottleneck(d)
    layers = shape.num_encoder_layers + shape.num_decoder_layers
    norm = 2 * d if config.layer_norm else 0
    return config.num_tasks * layers * len(ADAPTER_POSITIONS) * (2 * r * d + r + d + norm)


register_method("adapter", AdapterConfig, AdapterModel, adapter_added_parameters)
