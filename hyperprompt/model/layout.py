"""Where a backbone family keeps what the methods touch: the one place that knows a model's modules.

Methods never reach into a backbone's module tree; they ask its :class:`BackboneLayout` for the stacks,
each layer's self-attention module (prompts reach its attention function through the forward kwargs;
adapters rewrite its output) and feed-forward module (adapters rewrite its output), and the sizes
(``d_model``, ``num_heads``, ``head_dim``, layers per stack). Parameter formulas read the same sizes
from a config alone (:class:`BackboneShape`), so they need no weights.

A family is one :class:`BackboneFamily` entry in :data:`FAMILIES`: the Hugging Face classes and config
``model_type`` values it covers, and two functions (config -> shape, model -> layout). T5, mT5 and UMT5
share the ``t5`` entry; the decoder-only causal LMs (Llama, Mistral, Qwen2/3, Gemma2/3, Phi-3, OLMo2) share
``causal-lm`` (:mod:`hyperprompt.model.causal_lm`, added with :func:`register_family`), whose one stack is
``decoder``. ``num_heads`` is the number of *key/value* heads, the heads prompts have: under grouped-query
attention fewer than the query heads. T5's relative position bias needs nothing here: the attention
function receives it as ``position_bias`` and gives the prompt columns zero bias (``attention.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn
from transformers import PreTrainedModel

#: the stack names that layouts, configs (``apply_to``) and prompt tables use, in this order
STACKS = ("encoder", "decoder")


@dataclass(frozen=True)
class BackboneShape:
    """The backbone sizes that parameter counts depend on, read from a config alone."""

    d_model: int
    num_heads: int
    d_kv: int
    d_ff: int
    num_encoder_layers: int
    num_decoder_layers: int

    @classmethod
    def from_config(cls, config: Any) -> BackboneShape:
        """The shape of a backbone with Hugging Face ``config`` (a ``T5Config``, ``MT5Config``, ...)."""
        return family_of_config(config).shape(config)

    @property
    def attention_width(self) -> int:
        """h * d_kv: the width of keys and values (not always d_model: t5-3b, t5-11b)."""
        return self.num_heads * self.d_kv

    @property
    def num_layers(self) -> dict[str, int]:
        """``{stack: M}`` for the stacks the backbone has (a decoder-only one has no encoder)."""
        layers = {"encoder": self.num_encoder_layers, "decoder": self.num_decoder_layers}
        return {stack: count for stack, count in layers.items() if count}

    @property
    def stacks(self) -> tuple[str, ...]:
        """The backbone's stacks, in :data:`STACKS` order."""
        return tuple(self.num_layers)


@dataclass(frozen=True, eq=False)
class BackboneLayout:
    """What the methods may touch in one loaded backbone.

    Attributes:
        family: the :data:`FAMILIES` key (``"t5"``).
        stacks: the stacks, in order (a subset of :data:`STACKS`).
        self_attention: ``{stack: [module of layer 0, 1, ...]}``: the self-attention modules. Each receives
            the backbone's forward kwargs (and passes them to the attention function); its output is a
            tuple whose first item is the attention output [B, n, d_model].
        feed_forward: ``{stack: [module per layer]}``: the feed-forward modules, output [B, n, d_model].
        d_model: the residual width; num_heads: h, the key/value heads (fewer than the query heads under
            grouped-query attention); head_dim: d_kv, the width of one head's keys/values.
        cross_attention: the decoder's cross-attention modules, one per decoder layer (empty for a backbone
            without cross-attention); they receive the forward kwargs like the self-attention modules.
        attention_output: ``{stack: [module per layer]}`` whose output [B, n, d_model] is the self-attention
            sublayer's output before dropout and the residual add, where adapters go; None: the
            self-attention modules themselves (T5, BART). BERT's self-attention module stops before its
            output projection, so there it is ``attention.output.dense``.
    """

    family: str
    stacks: tuple[str, ...]
    self_attention: dict[str, list[nn.Module]]
    feed_forward: dict[str, list[nn.Module]]
    d_model: int
    num_heads: int
    head_dim: int
    cross_attention: list[nn.Module] = field(default_factory=list)
    attention_output: dict[str, list[nn.Module]] | None = None

    @property
    def num_layers(self) -> dict[str, int]:
        """``{stack: M}`` for this backbone's stacks."""
        return {stack: len(modules) for stack, modules in self.self_attention.items()}

    @property
    def attention_width(self) -> int:
        """h * head_dim: the width of keys, values and key/value prompts."""
        return self.num_heads * self.head_dim


@dataclass(frozen=True)
class BackboneFamily:
    """A family of backbones: which Hugging Face classes and config types it covers, and how to read
    their sizes (``shape``) and modules (``layout``)."""

    name: str
    model_classes: tuple[str, ...]
    model_types: tuple[str, ...]
    shape: Callable[[Any], BackboneShape]
    layout: Callable[[nn.Module], BackboneLayout]
    #: ``EncoderDecoderModel`` hands its decoder only the forward kwargs named ``decoder_<name>``: the
    #: conditioning kwargs are then passed under both names (empty: one name reaches both stacks)
    decoder_kwargs_prefix: str = ""


def t5_shape(config: Any) -> BackboneShape:
    """Sizes from a ``T5Config`` (or mT5 / UMT5)."""
    return BackboneShape(
        d_model=config.d_model,
        num_heads=config.num_heads,
        d_kv=config.d_kv,
        d_ff=config.d_ff,
        num_encoder_layers=config.num_layers,
        num_decoder_layers=config.num_decoder_layers,
    )


def t5_layout(base: nn.Module) -> BackboneLayout:
    """T5's blocks: ``block.layer[0].SelfAttention``, then (decoder) cross-attention, then
    ``block.layer[-1].DenseReluDense``."""
    shape = t5_shape(base.config)
    blocks = {stack: getattr(base, stack).block for stack in STACKS}
    return BackboneLayout(
        family="t5",
        stacks=STACKS,
        self_attention={stack: [block.layer[0].SelfAttention for block in blocks[stack]] for stack in STACKS},
        feed_forward={stack: [block.layer[-1].DenseReluDense for block in blocks[stack]] for stack in STACKS},
        d_model=shape.d_model,
        num_heads=shape.num_heads,
        head_dim=shape.d_kv,
        cross_attention=[block.layer[1].EncDecAttention for block in blocks["decoder"]],
    )


#: the supported backbone families, by name
FAMILIES: dict[str, BackboneFamily] = {
    "t5": BackboneFamily(
        name="t5",
        model_classes=("T5ForConditionalGeneration", "MT5ForConditionalGeneration", "UMT5ForConditionalGeneration"),
        model_types=("t5", "mt5", "umt5"),
        shape=t5_shape,
        layout=t5_layout,
    ),
}


def register_family(family: BackboneFamily) -> BackboneFamily:
    """Add ``family`` to :data:`FAMILIES` (idempotent for the same entry)."""
    if FAMILIES.get(family.name, family) != family:
        raise ValueError(f"backbone family {family.name!r} is already registered.")
    FAMILIES[family.name] = family
    return family


def family_of_model(base: Any) -> BackboneFamily:
    """The family of ``base`` (by its class or a base class); a ValueError names the supported classes."""
    names = {cls.__name__ for cls in type(base).__mro__}
    if isinstance(base, PreTrainedModel):
        for family in FAMILIES.values():
            if names & set(family.model_classes):
                return family
    supported = [name for family in FAMILIES.values() for name in family.model_classes]
    raise ValueError(
        f"unsupported model class {type(base).__name__}; HyperPrompt wraps one of {', '.join(supported)} "
        "(load it with AutoModelForSeq2SeqLM / AutoModelForCausalLM or build it from its config)."
    )


def family_of_config(config: Any) -> BackboneFamily:
    """The family of a Hugging Face config, by its ``model_type``."""
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    supported = [name for family in FAMILIES.values() for name in family.model_types]
    raise ValueError(f"unsupported model type {model_type!r}; supported: {', '.join(supported)}.")


def _register_encoder_decoder_families() -> None:
    """BART / mBART and BERT2BERT (``layout_encdec.py``), added to :data:`FAMILIES` on import."""
    from hyperprompt.model.layout_encdec import ENCODER_DECODER_FAMILIES

    FAMILIES.update(ENCODER_DECODER_FAMILIES)


def backbone_layout(base: nn.Module) -> BackboneLayout:
    """The layout of ``base``; a ValueError if no family covers its class."""
    return family_of_model(base).layout(base)


def layer_norm_parameters(base: nn.Module) -> list[nn.Parameter]:
    """The parameters of a backbone's normalisation layers (``nn.LayerNorm`` and the RMS norms of T5,
    Llama, ...: any module whose class name ends in ``LayerNorm`` or ``RMSNorm``), in module order."""
    return [parameter for module in base.modules()
            if isinstance(module, nn.LayerNorm) or type(module).__name__.endswith(("LayerNorm", "RMSNorm"))
            for parameter in module.parameters(recurse=False)]


_register_encoder_decoder_families()
