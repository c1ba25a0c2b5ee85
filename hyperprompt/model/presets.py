"""Backbone sizes: the paper's T5 checkpoints (for parameter accounting, no download) and tiny
random-init presets for tests, the demo and CPU recipes."""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel, T5Config, T5ForConditionalGeneration

from hyperprompt.model.causal_lm import (
    CAUSAL_LM,
    CAUSAL_LM_SIZES,
    TINY_CAUSAL_LMS,
    causal_lm_size_config,
    tiny_causal_lm,
)
from hyperprompt.model.io import auto_backbone

_V10 = dict(vocab_size=32128, feed_forward_proj="relu", tie_word_embeddings=True)
_V11 = dict(vocab_size=32128, feed_forward_proj="gated-gelu", tie_word_embeddings=False)

#: Shapes of the released checkpoints (from their config.json files), by hub name.
T5_SIZES: dict[str, dict[str, Any]] = {
    "t5-small": dict(d_model=512, d_kv=64, num_heads=8, d_ff=2048, num_layers=6, **_V10),
    "t5-base": dict(d_model=768, d_kv=64, num_heads=12, d_ff=3072, num_layers=12, **_V10),
    "t5-large": dict(d_model=1024, d_kv=64, num_heads=16, d_ff=4096, num_layers=24, **_V10),
    "t5-3b": dict(d_model=1024, d_kv=128, num_heads=32, d_ff=16384, num_layers=24, **_V10),
    "t5-11b": dict(d_model=1024, d_kv=128, num_heads=128, d_ff=65536, num_layers=24, **_V10),
    "t5-v1_1-small": dict(d_model=512, d_kv=64, num_heads=6, d_ff=1024, num_layers=8, **_V11),
    "t5-v1_1-base": dict(d_model=768, d_kv=64, num_heads=12, d_ff=2048, num_layers=12, **_V11),
    "t5-v1_1-large": dict(d_model=1024, d_kv=64, num_heads=16, d_ff=2816, num_layers=24, **_V11),
    "t5-v1_1-xl": dict(d_model=2048, d_kv=64, num_heads=32, d_ff=5120, num_layers=24, **_V11),
    "t5-v1_1-xxl": dict(d_model=4096, d_kv=64, num_heads=64, d_ff=10240, num_layers=24, **_V11),
}

#: Random-init presets that train on a CPU in seconds to minutes.
TINY_SIZES: dict[str, dict[str, Any]] = {
    "t5-tiny": dict(d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2, feed_forward_proj="relu"),
    "t5-mini": dict(d_model=128, d_kv=32, num_heads=4, d_ff=512, num_layers=4, feed_forward_proj="gated-gelu",
                    tie_word_embeddings=False),
}

TINY_CAUSAL_LM_TYPES = CAUSAL_LM.model_types

#: T5's token conventions: pad 0 (also the decoder start token), eos 1, unk 2.
SPECIAL_TOKENS = dict(pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def t5_config(name: str, vocab_size: int | None = None, **overrides: Any) -> T5Config:
    """The ``T5Config`` of a named size (``T5_SIZES`` or ``TINY_SIZES``) with optional overrides."""
    sizes = {**T5_SIZES, **TINY_SIZES}
    if name not in sizes:
        raise ValueError(f"unknown model size {name!r}; choose one of {', '.join(sizes)}.")
    kwargs: dict[str, Any] = {"dropout_rate": 0.1, **SPECIAL_TOKENS, **sizes[name], **overrides}
    if vocab_size is not None:
        kwargs["vocab_size"] = vocab_size
    kwargs.setdefault("num_decoder_layers", kwargs["num_layers"])
    return T5Config(**kwargs)


def count_backbone_parameters(config: Any) -> int:
    """Parameters of the backbone transformers builds from ``config`` -- ``T5ForConditionalGeneration`` for a
    T5 config, the family's ``*ForCausalLM`` for a decoder-only one, ``AutoModelForSeq2SeqLM`` for any other
    encoder-decoder (BART, mBART, ``EncoderDecoderModel``) -- counted on the meta device (no memory, no
    download); tied weights counted once."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    with torch.device("meta"):
        if config.model_type in TINY_CAUSAL_LM_TYPES:
            model = AutoModelForCausalLM.from_config(config)
        elif config.model_type in ("t5", "mt5"):
            model = T5ForConditionalGeneration(config)
        else:
            model = AutoModelForSeq2SeqLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def count_checkpoint_parameters(name: str) -> int:
    """Parameters of the released checkpoint ``name`` (a key of :data:`T5_SIZES` or of the causal LM sizes),
    from its shapes.

    T5 v1.1 checkpoints have an LM head apart from the input embedding (``tie_word_embeddings: false`` in
    their config.json); transformers 5 (checked: 5.24) forces ``T5Config.tie_word_embeddings = True`` and
    builds them with a tied head (keeping the flag only as ``scale_decoder_outputs``), which would count
    vocab x d_model too few (24.7M at t5-v1_1-base, whose checkpoint holds 247.6M)."""
    config = backbone_size_config(name)
    if name not in T5_SIZES:
        return count_backbone_parameters(config)
    untied_head = 0 if T5_SIZES[name].get("tie_word_embeddings", True) else config.vocab_size * config.d_model
    return count_backbone_parameters(config) + untied_head


def backbone_size_config(name: str) -> Any:
    """The config of a named released shape: a T5 size (:data:`T5_SIZES`) or a causal LM
    (:data:`~hyperprompt.model.causal_lm.CAUSAL_LM_SIZES`)."""
    return causal_lm_size_config(name) if name in CAUSAL_LM_SIZES else t5_config(name)


#: every random-init preset name: the tiny T5s and the tiny causal LMs (``llama-tiny``, ``qwen2-tiny``, ...)
TINY_PRESETS: tuple[str, ...] = (*TINY_SIZES, *TINY_CAUSAL_LMS)


def load_backbone(name_or_path: str, vocab_size: int | None = None, **kwargs: Any) -> PreTrainedModel:
    """A tiny preset built from its config (random init; ``vocab_size`` and, for the causal LMs, the
    special token ids from the tokenizer), or a hub name / local directory through ``AutoModelForSeq2SeqLM``
    or, for the decoder-only families, ``AutoModelForCausalLM`` (``trust_remote_code`` stays off)."""
    if name_or_path in TINY_SIZES:
        overrides = {k: v for k, v in kwargs.items() if k in T5Config().to_dict()}
        return T5ForConditionalGeneration(t5_config(name_or_path, vocab_size=vocab_size or 384, **overrides))
    if name_or_path in TINY_CAUSAL_LMS:
        return tiny_causal_lm(name_or_path, vocab_size=vocab_size or 384, **kwargs)
    return auto_backbone(name_or_path, **kwargs)
