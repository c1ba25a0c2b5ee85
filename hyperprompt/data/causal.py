"""Decoder-only examples: input and target in one sequence, the loss on the target tokens only.

An encoded example (:class:`~hyperprompt.data.EncodedSplit`: input ids and target ids, each ending with
EOS) becomes::

    input_ids = [BOS] input EOS target EOS          (BOS only if the tokenizer has one)
    labels    = -100 ... -100    target EOS          (the input's positions are ignored by the loss)

so the input's EOS marks where the target starts. The causal LM shifts labels itself (position t
predicts token t + 1). For generation the example is ``[BOS] input EOS``, left-padded, and the model
continues after it; :meth:`CausalLMCollator.new_tokens` cuts the continuation off the generated sequences.

:func:`make_collator` picks this collator or :class:`~hyperprompt.data.Seq2SeqCollator` once, from
whether the model is decoder-only; both have ``new_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from hyperprompt.data.collator import Seq2SeqCollator, check_features
from hyperprompt.errors import InputError

PADDING_SIDES = ("right", "left")


class CausalLMCollator:
    """Packs features (``input_ids``, optional ``labels`` and ``task_id``) into one padded sequence each:
    ``input_ids [B, S]``, ``attention_mask [B, S]``, ``labels [B, S]`` (with targets: -100 on the input,
    the BOS and padding) and ``task_ids [B]``.

    Args:
        pad_token_id: the id padded positions get (masked out; the tokenizer's pad id, else its EOS id).
        bos_token_id: put before every input if not None.
        padding_side: ``right`` (training) or ``left`` (generation: every row ends where it continues).
            Prompts carry no position and rotary attention sees relative positions only, so a row's
            logits do not depend on the side up to float rounding.
        label_pad: the label of ignored positions.
        pad_to_multiple_of: round the padded length up to a multiple of this.
    """

    def __init__(self, pad_token_id: int, bos_token_id: int | None = None, padding_side: str = "right",
                 label_pad: int = -100, pad_to_multiple_of: int | None = None):
        if padding_side not in PADDING_SIDES:
            raise InputError(f"padding_side={padding_side!r}; choose one of {', '.join(PADDING_SIDES)}")
        if pad_to_multiple_of is not None and pad_to_multiple_of <= 0:
            raise InputError(f"pad_to_multiple_of must be positive, got {pad_to_multiple_of}")
        self.pad_token_id = pad_token_id
        self.bos = [] if bos_token_id is None else [int(bos_token_id)]
        self.padding_side = padding_side
        self.label_pad = label_pad
        self.pad_to_multiple_of = pad_to_multiple_of

    def _pad(self, sequences: Sequence[Sequence[int]], value: int) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.array([len(s) for s in sequences])
        width = int(lengths.max())
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        padded = np.full((len(sequences), width), value, dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        for row, sequence in enumerate(sequences):
            columns = slice(0, len(sequence)) if self.padding_side == "right" else slice(width - len(sequence), width)
            padded[row, columns] = sequence
            mask[row, columns] = 1
        return padded, mask

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        check_features(features)
        with_targets = "labels" in features[0]
        prefixes = [self.bos + [int(t) for t in f["input_ids"]] for f in features]
        targets = [[int(t) for t in f["labels"]] if with_targets else [] for f in features]
        input_ids, mask = self._pad([p + t for p, t in zip(prefixes, targets, strict=True)], self.pad_token_id)
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        if with_targets:
            labels, _ = self._pad([[self.label_pad] * len(p) + t for p, t in zip(prefixes, targets, strict=True)],
                                  self.label_pad)
            batch["labels"] = torch.from_numpy(labels)
        if "task_id" in features[0]:
            batch["task_ids"] = torch.tensor([int(f["task_id"]) for f in features], dtype=torch.long)
        return batch

    def new_tokens(self, sequences: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The generated continuation: ``generate`` returns ``[input ; new tokens]``."""
        return sequences[:, batch["input_ids"].shape[1]:]


def make_collator(tokenizer: Any, decoder_only: bool, generation: bool = False,
                  padding_side: str = "right") -> Seq2SeqCollator | CausalLMCollator:
    """The collator for a model: :class:`CausalLMCollator` for a decoder-only LM (left-padded for
    ``generation``, else ``padding_side``), :class:`Seq2SeqCollator` otherwise."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if not decoder_only:
        return Seq2SeqCollator(pad)
    return CausalLMCollator(pad, tokenizer.bos_token_id, padding_side="left" if generation else padding_side)
