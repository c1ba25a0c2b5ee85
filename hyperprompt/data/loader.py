"""From encoded splits to batches of tensors: mixed training batches and in-order evaluation batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from hyperprompt.data.collator import Seq2SeqCollator
from hyperprompt.data.mixture import MixtureSampler
from hyperprompt.data.tokenize import EncodedSplit
from hyperprompt.errors import InputError


class MixtureBatches:
    """Training batches of a mixture: sampler -> encoded examples -> collator.

    ``splits[t]`` is the encoded training split of the mixture's task ``t`` (task id = position).
    Iterating yields collated batches forever; :meth:`steps` yields each batch as ``accumulation``
    collated micro-batches (gradient accumulation: the examples of a step do not depend on it). The
    state to save for an exact resume is the sampler's (:meth:`state_dict`).
    """

    def __init__(self, splits: Sequence[EncodedSplit], sampler: MixtureSampler, collator: Seq2SeqCollator,
                 accumulation: int = 1):
        if len(splits) != len(sampler.sizes):
            raise InputError(f"{len(splits)} encoded splits for a sampler over {len(sampler.sizes)} tasks")
        for task_id, (split, size) in enumerate(zip(splits, sampler.sizes, strict=True)):
            if len(split) != size:
                raise InputError(
                    f"task {task_id} ({split.task}) has {len(split)} examples, the sampler expects {size}"
                )
        if accumulation < 1 or sampler.batch_size % accumulation:
            raise InputError(f"batch size {sampler.batch_size} is not divisible into {accumulation} micro-batches")
        self.splits, self.sampler, self.collator, self.accumulation = list(splits), sampler, collator, accumulation

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for micro_batches in self.steps():
            yield from micro_batches

    def steps(self) -> Iterator[list[dict[str, torch.Tensor]]]:
        """Per optimizer step, this process's examples as ``accumulation`` collated micro-batches."""
        for batch in self.sampler:
            size = len(batch) // self.accumulation
            yield [self.collator([self.splits[task_id].feature(index, task_id)
                                  for task_id, index in batch[k * size:(k + 1) * size]])
                   for k in range(self.accumulation)]

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


def eval_batches(
    split: EncodedSplit, task_id: int, batch_size: int, collator: Seq2SeqCollator
) -> Iterator[tuple[dict[str, torch.Tensor], list[dict[str, Any]]]]:
    """Batches of one task's split in order, each with its gold examples (for ``compute_metrics``)."""
    if batch_size <= 0:
        raise InputError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, len(split), batch_size):
        indices = range(start, min(start + batch_size, len(split)))
        yield collator([split.feature(i, task_id) for i in indices]), [split.examples[i] for i in indices]
