"""Encoder-decoders beyond T5: BART / mBART and BERT2BERT (``EncoderDecoderModel`` of BERT stacks).

Each family is one :class:`~hyperprompt.model.layout.BackboneFamily` entry (merged into ``FAMILIES``).
In transformers 5 both call their attention through ``ALL_ATTENTION_FUNCTIONS``, so prompts reach
:func:`~hyperprompt.model.attention.prompted_attention` exactly as for T5; only the self-attention
modules are tagged with slots, so cross-attention runs unchanged. Both use absolute position
embeddings added to the inputs: attention sees no position bias, and prompts need none.

==============  =========================================  ==========================  =======================
family          self-attention (prompts)                   attention output (adapters) feed-forward (adapters)
==============  =========================================  ==========================  =======================
bart / mbart    ``layers[i].self_attn`` (incl. out_proj)   the same module             ``layers[i].fc2``
bert2bert       ``layer[i].attention.self`` (no output     ``attention.output.dense``  ``layer[i].output.dense``
                projection)
==============  =========================================  ==========================  =======================

Adapters rewrite those outputs before the block's dropout, residual add and (post-LN BART / BERT)
layer norm: Houlsby's placement. ``EncoderDecoderModel`` passes its decoder only ``decoder_``-prefixed
kwargs, hence ``decoder_kwargs_prefix``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from hyperprompt.model.layout import STACKS, BackboneFamily, BackboneLayout, BackboneShape

#: model types an ``EncoderDecoderModel`` stack may have (BERT-architecture checkpoints: BERT, MiniLM, ...)
BERT_MODEL_TYPES = ("bert",)


def _same(name: str, encoder_value: int, decoder_value: int, family: str) -> int:
    if encoder_value != decoder_value:
        raise ValueError(f"{family}: the encoder has {name}={encoder_value} but the decoder {decoder_value}; "
                         "HyperPrompt's prompt tables need the same value in both stacks.")
    return encoder_value


def bart_shape(config: Any) -> BackboneShape:
    """Sizes from a ``BartConfig`` / ``MBartConfig``."""
    heads = _same("attention heads", config.encoder_attention_heads, config.decoder_attention_heads, "bart")
    return BackboneShape(
        d_model=config.d_model,
        num_heads=heads,
        d_kv=config.d_model // heads,
        d_ff=config.encoder_ffn_dim,
        num_encoder_layers=config.encoder_layers,
        num_decoder_layers=config.decoder_layers,
    )


def bart_layout(base: nn.Module) -> BackboneLayout:
    """BART's layers: ``self_attn`` (projections, attention, ``out_proj``), then (decoder) ``encoder_attn``,
    then ``fc1 -> act -> fc2``."""
    shape = bart_shape(base.config)
    layers = {stack: getattr(base.model, stack).layers for stack in STACKS}
    return BackboneLayout(
        family="bart",
        stacks=STACKS,
        self_attention={stack: [layer.self_attn for layer in layers[stack]] for stack in STACKS},
        feed_forward={stack: [layer.fc2 for layer in layers[stack]] for stack in STACKS},
        d_model=shape.d_model,
        num_heads=shape.num_heads,
        head_dim=shape.d_kv,
        cross_attention=[layer.encoder_attn for layer in layers["decoder"]],
    )


def _check_bert_stacks(config: Any) -> tuple[Any, Any]:
    encoder, decoder = config.encoder, config.decoder
    for stack, sub in (("encoder", encoder), ("decoder", decoder)):
        if sub.model_type not in BERT_MODEL_TYPES:
            raise ValueError(f"EncoderDecoderModel with a {sub.model_type!r} {stack}: HyperPrompt wraps "
                             f"EncoderDecoderModel only with {', '.join(BERT_MODEL_TYPES)} stacks (BERT2BERT).")
    return encoder, decoder


def bert2bert_shape(config: Any) -> BackboneShape:
    """Sizes from an ``EncoderDecoderConfig`` of two ``BertConfig`` stacks."""
    encoder, decoder = _check_bert_stacks(config)
    d_model = _same("hidden_size", encoder.hidden_size, decoder.hidden_size, "bert2bert")
    heads = _same("num_attention_heads", encoder.num_attention_heads, decoder.num_attention_heads, "bert2bert")
    return BackboneShape(
        d_model=d_model,
        num_heads=heads,
        d_kv=d_model // heads,
        d_ff=encoder.intermediate_size,
        num_encoder_layers=encoder.num_hidden_layers,
        num_decoder_layers=decoder.num_hidden_layers,
    )


def bert2bert_layout(base: nn.Module) -> BackboneLayout:
    """BERT layers (``BertModel`` encoder, ``BertLMHeadModel`` decoder): ``attention.self`` (projections and
    attention), ``attention.output`` (dense, dropout, LayerNorm with the residual), then (decoder)
    ``crossattention``, then ``intermediate`` and ``output`` (dense, dropout, LayerNorm with the residual)."""
    shape = bert2bert_shape(base.config)
    layers = {"encoder": base.encoder.base_model.encoder.layer, "decoder": base.decoder.base_model.encoder.layer}
    return BackboneLayout(
        family="bert2bert",
        stacks=STACKS,
        self_attention={stack: [layer.attention.self for layer in layers[stack]] for stack in STACKS},
        feed_forward={stack: [layer.output.dense for layer in layers[stack]] for stack in STACKS},
        d_model=shape.d_model,
        num_heads=shape.num_heads,
        head_dim=shape.d_kv,
        attention_output={stack: [layer.attention.output.dense for layer in layers[stack]] for stack in STACKS},
        cross_attention=[layer.crossattention.self for layer in layers["decoder"]],
    )


ENCODER_DECODER_FAMILIES: dict[str, BackboneFamily] = {
    "bart": BackboneFamily(
        name="bart",
        model_classes=("BartForConditionalGeneration", "MBartForConditionalGeneration"),
        model_types=("bart", "mbart"),
        shape=bart_shape,
        layout=bart_layout,
    ),
    "bert2bert": BackboneFamily(
        name="bert2bert",
        model_classes=("EncoderDecoderModel",),
        model_types=("encoder-decoder",),
        shape=bert2bert_shape,
        layout=bert2bert_layout,
        decoder_kwargs_prefix="decoder_",
    ),
}
