"""A small T5-compatible tokenizer trained on task text, for work without downloads.

Special tokens match T5: ``<pad>`` = 0, ``</s>`` (EOS) = 1, ``<unk>`` = 2; encoding appends ``</s>``.
The model is a SentencePiece-style Unigram over ``▁``-marked words (as T5's), NFKC-normalised.
(``transformers.ByT5Tokenizer()`` is the other tokenizer that works offline.)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from hyperprompt.errors import InputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 as in T5


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 2000, save_dir: str | Path | None = None
) -> PreTrainedTokenizerFast:
    """Train a Unigram tokenizer on ``texts``.

    Args:
        texts: training text (e.g. the ``inputs`` and ``targets`` of the tasks' examples).
        vocab_size: the largest vocabulary size (small corpora give fewer pieces).
        save_dir: if given, ``save_pretrained`` there; reload with ``AutoTokenizer.from_pretrained``.

    Returns:
        a fast tokenizer with ``pad_token_id == 0``, ``eos_token_id == 1``, ``unk_token_id == 2``
        whose ``__call__`` appends ``</s>``.
    """
    from transformers import PreTrainedTokenizerFast  # slow import, only needed here

    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise InputError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + 1}")
    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token="<unk>", show_progress=False
    )
    backend.train_from_iterator(texts, trainer)
    if [backend.token_to_id(t) for t in SPECIAL_TOKENS] != [0, 1, 2]:
        raise RuntimeError("special tokens did not get ids 0, 1, 2")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    if save_dir is not None:
        tokenizer.save_pretrained(str(save_dir))
    return tokenizer
