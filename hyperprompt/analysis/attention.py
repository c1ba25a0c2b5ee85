"""Where self-attention looks: mass on the prompts per layer, entropy over the real tokens.

For every self-attention layer of the encoder and the decoder (cross-attention is not analysed), with
``w`` the layer's softmax weights ``[B, h, q, l + k]`` (the ``l`` prompt columns first):

- **prompt mass** of a query: ``sum(w[..., :l])`` averaged over the heads. A layer's mass is the mean
  over each example's valid queries, then over the examples (every example counts once). Methods that
  prepend nothing to the keys (``mtl``, adapters, prompt tuning's input prompt) have no mass: ``None``.
- **entropy over the real tokens** of a query: drop the prompt columns and the masked keys (padding,
  and the future in the decoder), renormalise ``p = w_real / sum(w_real)``, take
  ``H = -sum(p log p)`` in nats (``0 log 0 = 0``) per head, and average over the heads. One value per
  (layer, valid query); the distribution pools layers, queries and examples.

Valid queries are the non-padding ones: encoder positions whose key is not padding, decoder positions
that predict a gold target token (``labels != -100``). The decoder runs with teacher forcing on the
gold targets, so nothing depends on generation. A decoder-only LM has only the ``decoder`` stack: it reads
``[BOS] input EOS target EOS`` (:class:`~hyperprompt.data.CausalLMCollator`), and its valid queries are
the positions whose *next* token is a gold target token (the LM predicts token t + 1 at position t).

Each layer's weights are reduced inside the observer of :meth:`MultiTaskT5.observe_attention` and
dropped at once: memory holds one layer's ``[B, h, q, l + k]`` at a time, plus one float per valid
query and layer. Outside an analysis the model runs its normal (fused, weight-free) attention.

>>> from hyperprompt.data import encode_task, get_task
>>> split = encode_task(get_task("cb", data_dir="../shared/data"), "validation", tokenizer)  # doctest: +SKIP
>>> stats = analyze_splits(model, [split], pad_token_id=tokenizer.pad_token_id)["superglue/cb"]  # doctest: +SKIP
>>> stats.prompt_mass["encoder"]            # one number per encoder layer, bottom first  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hyperprompt.data import CausalLMCollator, EncodedSplit, Seq2SeqCollator
from hyperprompt.errors import InputError
from hyperprompt.model import MultiTaskT5
from hyperprompt.model.causal_lm import is_decoder_only
from hyperprompt.model.layout import STACKS

LABEL_PAD = -100


@dataclass
class AttentionStats:
    """The reduced attention of one model over a set of examples (e.g. one task's first 100).

    Attributes:
        num_examples: examples analysed.
        prompt_length: ``{stack: l}``, prompt columns per layer (0: the method prepends nothing).
        prompt_mass: ``{stack: [M] or None}``, mean attention mass on the prompts per layer (bottom
            layer first); None when the stack has no prompts.
        entropies: ``{stack: [M arrays]}``, per layer the float32 array ``[num valid queries]`` of
            head-averaged entropies over the real tokens (nats).
    """

    num_examples: int = 0
    prompt_length: dict[str, int] = field(default_factory=dict)
    prompt_mass: dict[str, list[float] | None] = field(default_factory=dict)
    entropies: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def entropy_values(self, stack: str) -> np.ndarray:
        """All per-query entropies of ``stack``, layers pooled: float32 ``[M * num valid queries]``."""
        arrays = self.entropies.get(stack, [])
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.float32)

    def entropy_mean_per_layer(self, stack: str) -> list[float]:
        return [float(values.mean()) if len(values) else float("nan") for values in self.entropies.get(stack, [])]


class _StackAccumulator:
    """Running sums for one stack, layer by layer."""

    def __init__(self) -> None:
        self.prompt_length: dict[int, int] = {}
        self.mass_sum: dict[int, float] = {}  # sum over examples of the example's mean mass
        self.examples: dict[int, int] = {}
        self.entropies: dict[int, list[np.ndarray]] = {}

    def add(self, layer: int, prompt_length: int, mass: torch.Tensor, entropy: torch.Tensor,
            valid: torch.Tensor) -> None:
        """mass, entropy: [B, q] per query; valid: [B, q] bool."""
        counts = valid.sum(-1)
        has_queries = counts > 0
        per_example = (mass * valid).sum(-1)[has_queries] / counts[has_queries]
        self.prompt_length[layer] = max(self.prompt_length.get(layer, 0), prompt_length)
        self.mass_sum[layer] = self.mass_sum.get(layer, 0.0) + float(per_example.double().sum())
        self.examples[layer] = self.examples.get(layer, 0) + int(has_queries.sum())
        self.entropies.setdefault(layer, []).append(entropy[valid].cpu().numpy().astype(np.float32))

    def layers(self) -> list[int]:
        layers = sorted(self.examples)
        if layers != list(range(len(layers))):
            raise RuntimeError(f"attention was observed for layers {layers}, expected 0..{len(layers) - 1}")
        return layers


class AttentionRecorder:
    """An observer for :meth:`MultiTaskT5.observe_attention` that reduces each self-attention layer's
    weights as they come (prompt mass and entropy per valid query) and keeps nothing else.

    Before each forward set :attr:`decoder_query_mask` ([B, T] bool, True where the decoder position
    predicts a gold token); None counts every decoder position.
    """

    def __init__(self, stacks: Sequence[str] = STACKS):
        self.stacks = tuple(stacks)
        self.decoder_query_mask: torch.Tensor | None = None
        self._accumulators = {stack: _StackAccumulator() for stack in self.stacks}
        self._examples = 0

    def count_examples(self, batch_size: int) -> None:
        self._examples += batch_size

    def __call__(self, *, module: torch.nn.Module, slot: tuple[str, int] | None, weights: torch.Tensor,
                 prompt_length: int, attention_mask: torch.Tensor | None, **_: Any) -> None:
        if slot is None or slot[0] not in self._accumulators:  # cross-attention, or a stack not asked for
            return
        stack, layer = slot
        with torch.no_grad():
            mass, entropy, valid = reduce_layer(weights, prompt_length, attention_mask,
                                                causal=stack == "decoder",
                                                query_mask=self.decoder_query_mask if stack == "decoder" else None)
        self._accumulators[stack].add(layer, prompt_length, mass, entropy, valid)

    def stats(self) -> AttentionStats:
        """What was recorded so far."""
        result = AttentionStats(num_examples=self._examples)
        for stack, acc in self._accumulators.items():
            layers = acc.layers()
            lengths = [acc.prompt_length[m] for m in layers]
            result.prompt_length[stack] = max(lengths, default=0)
            result.prompt_mass[stack] = (
                [acc.mass_sum[m] / max(acc.examples[m], 1) for m in layers] if any(lengths) else None
            )
            result.entropies[stack] = [np.concatenate(acc.entropies[m]) for m in layers]
        return result


def _boolean_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """True = attend, from a boolean mask or an additive float mask (0 = attend)."""
    if attention_mask.dtype == torch.bool:
        return attention_mask
    return attention_mask > torch.finfo(attention_mask.dtype).min / 2


def reduce_layer(
    weights: torch.Tensor,
    prompt_length: int,
    attention_mask: torch.Tensor | None,
    causal: bool = False,
    query_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One self-attention layer's weights reduced per query.

    Args:
        weights: [B, h, q, l + k] softmax weights, the l prompt columns first (q == k: self-attention
            without a cache).
        prompt_length: l.
        attention_mask: boolean [B | 1, 1, q, k], True on the real keys each query may see; None: all.
        causal: also hide keys after the query (the decoder; normally the mask already does).
        query_mask: [B, q] bool, the valid queries; None: those whose own position is a real key.

    Returns:
        (mass, entropy, valid), each [B, q]: head-averaged weight on the prompts, head-averaged entropy
        (nats) over the real tokens, and which queries are valid.
    """
    batch, _, queries, columns = weights.shape
    keys = columns - prompt_length
    if keys != queries:
        raise InputError(f"self-attention with {queries} queries but {keys} keys: analyse without a KV cache")
    device = weights.device
    real = torch.ones(batch, 1, queries, keys, dtype=torch.bool, device=device)
    if attention_mask is not None:
        real = real & _boolean_mask(attention_mask)
    if causal:
        real = real & torch.ones(queries, keys, dtype=torch.bool, device=device).tril()
    valid = real[:, 0].diagonal(dim1=-2, dim2=-1)  # query i is real iff key i is (same sequence)
    if query_mask is not None:
        valid = valid & query_mask.to(device=device, dtype=torch.bool)

    w = weights.float()
    mass = w[..., :prompt_length].sum(-1).mean(1)  # [B, q]
    p = w[..., prompt_length:] * real  # [B, h, q, k]; one copy of the layer's weights, normalised in place
    p /= p.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    entropy = 0.0 - torch.xlogy(p, p).sum(-1).mean(1)  # [B, q]; 0.0 - x: no -0.0 in the JSON
    return mass, entropy, valid


@torch.no_grad()
def analyze_attention(
    model: MultiTaskT5,
    batches: Iterable[Mapping[str, torch.Tensor]],
    stacks: Sequence[str] = STACKS,
) -> AttentionStats:
    """Run ``model`` with teacher forcing over ``batches`` and reduce its self-attention.

    Args:
        model: any :class:`MultiTaskT5` method (it runs in eval mode; its mode is restored after).
        batches: :class:`~hyperprompt.data.Seq2SeqCollator` batches: ``input_ids`` [B, S],
            ``attention_mask`` [B, S], ``labels`` [B, T] (-100 on padding), ``task_ids`` [B].
        stacks: which self-attention stacks to analyse.

    Returns:
        The pooled :class:`AttentionStats` of all examples in ``batches``.
    """
    recorder = AttentionRecorder([stack for stack in stacks if stack in model.layout.stacks])
    device = next(model.parameters()).device
    decoder_only = is_decoder_only(model.base)
    was_training = model.training
    model.eval()
    try:
        with model.observe_attention(recorder):
            for batch in batches:
                labels = batch["labels"].to(device)
                recorder.count_examples(labels.shape[0])
                inputs = dict(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                              task_ids=batch["task_ids"].to(device), use_cache=False)
                if decoder_only:  # one sequence; position t predicts token t + 1
                    recorder.decoder_query_mask = F.pad(labels[:, 1:] != LABEL_PAD, (0, 1), value=False)
                    model(**inputs)
                else:
                    recorder.decoder_query_mask = labels != LABEL_PAD
                    model(**inputs, labels=labels)  # teacher forcing: the backbone shifts the targets its way
    finally:
        model.train(was_training)
    return recorder.stats()


def split_batches(split: EncodedSplit, task_id: int, pad_token_id: int, max_examples: int | None = 100,
                  batch_size: int = 16, decoder_only: bool = False,
                  bos_token_id: int | None = None) -> Iterable[dict[str, torch.Tensor]]:
    """The first ``max_examples`` examples of ``split`` as padded batches, shortest first (less padding);
    for a ``decoder_only`` model input and target in one sequence (after ``bos_token_id`` if given)."""
    count = len(split) if max_examples is None else min(len(split), max_examples)
    order = sorted(range(count), key=lambda i: (len(split.input_ids[i]), len(split.labels[i])))
    collate = (CausalLMCollator(pad_token_id, bos_token_id, label_pad=LABEL_PAD) if decoder_only
               else Seq2SeqCollator(pad_token_id, label_pad=LABEL_PAD))
    for start in range(0, count, batch_size):
        yield collate([split.feature(i, task_id) for i in order[start:start + batch_size]])


def analyze_splits(
    model: MultiTaskT5,
    splits: Sequence[EncodedSplit],
    pad_token_id: int,
    max_examples: int | None = 100,
    batch_size: int = 16,
    stacks: Sequence[str] = STACKS,
    bos_token_id: int | None = None,
) -> dict[str, AttentionStats]:
    """Per task: the attention statistics of its first ``max_examples`` examples, run with its task id.

    Args:
        splits: encoded splits (:func:`hyperprompt.data.encode_task`) of tasks the model was trained on.
        pad_token_id: the tokenizer's pad id; bos_token_id: its BOS id (decoder-only models; None: none).

    Returns:
        ``{task name: AttentionStats}`` in the order of ``splits``.
    """
    results = {}
    for split in splits:
        task_id = model.config.task_id(split.task)
        if len(split) == 0:
            raise InputError(f"task {split.task} has no {split.split} examples to analyse")
        batches = split_batches(split, task_id, pad_token_id, max_examples, batch_size,
                                decoder_only=is_decoder_only(model.base), bos_token_id=bos_token_id)
        results[split.task] = analyze_attention(model, batches, stacks)
    return results
