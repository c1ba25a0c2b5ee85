"""Padding a list of tokenised examples into a batch of tensors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from hyperprompt.errors import InputError


class Seq2SeqCollator:
    """Right-pads examples into ``input_ids [B, S]``, ``attention_mask [B, S]``, ``labels [B, T]``
    (padded with ``label_pad``, ignored by the loss) and ``task_ids [B]``.

    Each feature is a mapping with ``input_ids`` (a sequence of ints), and optionally ``labels``
    and ``task_id``; a key must be in every feature or in none. ``S`` and ``T`` are the longest
    sequences in the batch, rounded up to ``pad_to_multiple_of`` if given.

    Args:
        pad_token_id: the tokenizer's pad id (0 for T5).
        label_pad: the label of padded target positions (-100: ignored by the cross-entropy).
        pad_to_multiple_of: round padded lengths up to a multiple of this (e.g. 8 for tensor cores).
    """

    def __init__(self, pad_token_id: int, label_pad: int = -100, pad_to_multiple_of: int | None = None):
        if pad_to_multiple_of is not None and pad_to_multiple_of <= 0:
            raise InputError(f"pad_to_multiple_of must be positive, got {pad_to_multiple_of}")
        self.pad_token_id = pad_token_id
        self.label_pad = label_pad
        self.pad_to_multiple_of = pad_to_multiple_of

    def _pad(self, sequences: Sequence[Sequence[int]], value: int) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.array([len(s) for s in sequences])
        width = int(lengths.max()) if len(lengths) else 0
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        padded = np.full((len(sequences), width), value, dtype=np.int64)
        for row, sequence in enumerate(sequences):
            padded[row, : len(sequence)] = sequence
        mask = np.arange(width)[None, :] < lengths[:, None]
        return padded, mask

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        check_features(features)
        input_ids, mask = self._pad([f["input_ids"] for f in features], self.pad_token_id)
        batch = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)),
        }
        if "labels" in features[0]:
            labels, _ = self._pad([f["labels"] for f in features], self.label_pad)
            batch["labels"] = torch.from_numpy(labels)
        if "task_id" in features[0]:
            batch["task_ids"] = torch.tensor([int(f["task_id"]) for f in features], dtype=torch.long)
        return batch

    def new_tokens(self, sequences: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The generated text's tokens: an encoder-decoder's output is all decoder tokens."""
        return sequences


def check_features(features: Sequence[Mapping[str, Any]]) -> None:
    """A batch's features must be non-empty and agree on which of ``input_ids`` (required), ``labels`` and
    ``task_id`` they have; an InputError says what is wrong."""
    if not features:
        raise InputError("cannot collate an empty batch")
    for key in ("input_ids", "labels", "task_id"):
        present = sum(key in f for f in features)
        if 0 < present < len(features) or (key == "input_ids" and present == 0):
            raise InputError(f"{key!r} is in {present} of {len(features)} features; it must be in all")
