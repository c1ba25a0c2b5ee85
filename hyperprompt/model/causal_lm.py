"""The decoder-only backbone family: causal LMs whose blocks are laid out like Llama's.

Llama, Mistral, Qwen2, Qwen3, Gemma2, Gemma3 (text), Phi-3 and OLMo2 in transformers 5 all keep their
blocks at ``base.model.layers[i]``, each with a ``self_attn`` module (which receives the forward kwargs and
calls the attention function after rotary embedding and after the KV-cache update) and an ``mlp``. One
:class:`~hyperprompt.model.layout.BackboneFamily` entry covers them all; the per-family differences are
small and live where they act:

- grouped-query attention (every family but Gemma2's 2B / Phi-3 mini may use it): ``num_heads`` of the
  layout and shape is ``num_key_value_heads``, so prompts have the width of the keys and values,
  ``num_key_value_heads * head_dim``; the attention function shares each prompt head by its query group.
- sliding windows (Mistral, Qwen2/3 with ``use_sliding_window``, Gemma2/3, Phi-3): they are part of the
  mask, which never covers prompt columns (``attention.py``).
- logit soft-capping (Gemma2): the attention function receives ``softcap`` and caps prompt scores too.
- fused projections (Phi-3's ``qkv_proj``), q/k norms (Qwen3, Gemma3, OLMo2) and post-norms (Gemma2/3,
  OLMo2) happen inside the modules; adapters rewrite ``self_attn``'s and ``mlp``'s outputs, so under
  OLMo2's and Gemma's post-norms they sit before the norm.

The one stack is called ``decoder``: ``decoder_prompt_length`` sets the prompt length and ``apply_to: both``
means that stack.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from hyperprompt.model.layout import BackboneFamily, BackboneLayout, BackboneShape, register_family

#: the causal-LM classes this family covers, with their config ``model_type``
CAUSAL_LM_CLASSES: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Gemma2ForCausalLM": "gemma2",
    "Gemma3ForCausalLM": "gemma3_text",
    "Phi3ForCausalLM": "phi3",
    "Olmo2ForCausalLM": "olmo2",
}


def head_dim(config: Any) -> int:
    """d_kv: the config's ``head_dim`` when set (Gemma, Qwen3, some Mistrals), else hidden / heads."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def causal_lm_shape(config: Any) -> BackboneShape:
    """Sizes from a Llama-like config: one ``decoder`` stack of ``num_hidden_layers`` layers whose keys and
    values have ``num_key_value_heads`` heads."""
    return BackboneShape(
        d_model=config.hidden_size,
        num_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
        d_kv=head_dim(config),
        d_ff=config.intermediate_size,
        num_encoder_layers=0,
        num_decoder_layers=config.num_hidden_layers,
    )


def causal_lm_layout(base: nn.Module) -> BackboneLayout:
    """``base.model.layers[i].self_attn`` and ``.mlp`` of a ``*ForCausalLM``."""
    shape = causal_lm_shape(base.config)
    layers = base.model.layers
    return BackboneLayout(
        family="causal-lm",
        stacks=("decoder",),
        self_attention={"decoder": [layer.self_attn for layer in layers]},
        feed_forward={"decoder": [layer.mlp for layer in layers]},
        d_model=shape.d_model,
        num_heads=shape.num_heads,
        head_dim=shape.d_kv,
    )


CAUSAL_LM = register_family(BackboneFamily(
    name="causal-lm",
    model_classes=tuple(CAUSAL_LM_CLASSES),
    model_types=tuple(CAUSAL_LM_CLASSES.values()),
    shape=causal_lm_shape,
    layout=causal_lm_layout,
))


def is_decoder_only(base: nn.Module) -> bool:
    """Whether ``base`` is a decoder-only causal LM (its inputs and targets share one sequence)."""
    return not getattr(base.config, "is_encoder_decoder", False)


# --- tiny random-init presets (tests, the demo, CPU recipes) ----------------------------------------

_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=8, max_position_embeddings=512, tie_word_embeddings=False)

#: ``{preset: (model_type, config fields)}``: 2 layers, 4 query and 2 key/value heads (GQA) of width 8;
#: the sliding windows are short (4) so that sequences of a test cross them.
TINY_CAUSAL_LMS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama-tiny": ("llama", _TINY),
    "mistral-tiny": ("mistral", {**_TINY, "sliding_window": 4}),
    "qwen2-tiny": ("qwen2", {**_TINY, "use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}),
    "qwen3-tiny": ("qwen3", {**_TINY, "use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}),
    "gemma2-tiny": ("gemma2", {**_TINY, "query_pre_attn_scalar": 8, "sliding_window": 4,
                               "attn_logit_softcapping": 2.0, "final_logit_softcapping": 30.0}),
    "gemma3-tiny": ("gemma3_text", {**_TINY, "query_pre_attn_scalar": 8, "sliding_window": 4,
                                    "layer_types": ["sliding_attention", "full_attention"]}),
    "phi3-tiny": ("phi3", {**_TINY, "sliding_window": 4}),
    "olmo2-tiny": ("olmo2", _TINY),
}


def tiny_causal_lm_config(name: str, vocab_size: int = 384, pad_token_id: int = 0, eos_token_id: int = 1,
                          bos_token_id: int | None = None, **overrides: Any) -> Any:
    """The config of a tiny preset (:data:`TINY_CAUSAL_LMS`); the special tokens default to ByT5's
    (pad 0, eos 1, no BOS) and should come from the tokenizer in use."""
    from transformers import AutoConfig

    if name not in TINY_CAUSAL_LMS:
        raise ValueError(f"unknown tiny causal LM {name!r}; choose one of {', '.join(TINY_CAUSAL_LMS)}.")
    model_type, fields = TINY_CAUSAL_LMS[name]
    return AutoConfig.for_model(model_type, vocab_size=vocab_size, pad_token_id=pad_token_id,
                                eos_token_id=eos_token_id, bos_token_id=bos_token_id, **{**fields, **overrides})


def tiny_causal_lm(name: str, **config: Any) -> nn.Module:
    """A random-init tiny causal LM of preset ``name`` (see :func:`tiny_causal_lm_config`)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(tiny_causal_lm_config(name, **config))


# --- released shapes (parameter accounting without a download; the benchmark's model) ---------------

#: ``{name: (model_type, config fields)}`` of released checkpoints, from their config.json files.
CAUSAL_LM_SIZES: dict[str, tuple[str, dict[str, Any]]] = {
    "qwen2.5-0.5b": ("qwen2", dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                   num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                                   tie_word_embeddings=True)),
    "llama-3.2-1b": ("llama", dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                   num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                                   tie_word_embeddings=True)),
    "gemma-2-2b": ("gemma2", dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                                  num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                                  query_pre_attn_scalar=256, vocab_size=256000, tie_word_embeddings=True)),
    "mistral-7b": ("mistral", dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                   num_attention_heads=32, num_key_value_heads=8, vocab_size=32000,
                                   tie_word_embeddings=False)),
}


def causal_lm_size_config(name: str, **overrides: Any) -> Any:
    """The config of a released shape in :data:`CAUSAL_LM_SIZES`."""
    from transformers import AutoConfig

    if name not in CAUSAL_LM_SIZES:
        raise ValueError(f"unknown causal LM size {name!r}; choose one of {', '.join(CAUSAL_LM_SIZES)}.")
    model_type, fields = CAUSAL_LM_SIZES[name]
    return AutoConfig.for_model(model_type, **{**fields, **overrides})
