"""From encoded splits to batches of tensors: mixed training batches and in-order evaluation batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from hyperprompt.data.collator import Seq2SeqCollator
from hyperprompt.data.mixture import MixtureSampler
from hyperprompt.data.tokenize import EncodedSplit


class MixtureBatches:
    """Training batches of a mixture: sampler -> encoded examples -> collator.

    ``splits[t]`` is the encoded training split of the mixture's task ``t`` (task id = position).
    Iterating yields collated batches forever; the state to save for an exact resume is the
    sampler's (:meth:`state_dict`).
    """

    def __init__(self, splits: Sequence[EncodedSplit], sampler: MixtureSampler, collator: Seq2SeqCollator):
        if len(splits) != len(sampler.sizes):
            raise ValueError(f"{len(splits)} encoded splits for a sampler over {len(sampler.sizes)} tasks")
        for task_id, (split, size) in enumerate(zip(splits, sampler.sizes, strict=True)):
            if len(split) != size:
                raise ValueError(
                    f"task {task_id} ({split.task}) has {len(split)} examples, the sampler expects {size}"
                )
        self.splits, self.sampler, self.collator = list(splits), sampler, collator

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.sampler:
            yield self.collator([self.splits[task_id].feature(index, task_id) for task_id, index in batch])

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


def eval_batches(
    split: EncodedSplit, task_id: int, batch_size: int, collator: Seq2SeqCollator
) -> Iterator[tuple[dict[str, torch.Tensor], list[dict[str, Any]]]]:
    """Batches of one task's split in order, each with its gold examples (for ``compute_metrics``)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, len(split), batch_size):
        indices = range(start, min(start + batch_size, len(split)))
        yield collator([split.feature(i, task_id) for i in indices]), [split.examples[i] for i in indices]
