"""Evaluation: batched generation per task, postprocessing, official metrics, benchmark average.

Under several processes each rank generates a strided shard of every task's examples and the texts
are gathered, so every rank returns the same results (ranks get equal numbers of batches, which
``generate(synced_gpus=True)`` needs for sharded models).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from hyperprompt.data import EncodedSplit, Task, benchmark_score, task_score
from hyperprompt.data.tokenize import tokenize_texts
from hyperprompt.model import MultiTaskT5
from hyperprompt.training.builder import build_collator


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[np.ndarray]:
    """Token ids of ``texts`` cut to ``max_length - 1`` tokens plus EOS (as training's encoding)."""
    eos = tokenizer.eos_token_id
    return [np.append(np.asarray(ids, dtype=np.int64)[: max_length - 1], eos)
            for ids in tokenize_texts(tokenizer, list(texts))]


def decoded_targets(tokenizer: PreTrainedTokenizerBase, targets: Sequence[str]) -> dict[str, str]:
    """``{decoded text: target}`` for the targets whose tokens do not decode back to themselves, so that
    a generated text equal to a target's decoding counts as that target. WordPiece lowercases and splits
    at punctuation: ``not_entailment`` decodes as ``not _ entailment``, ``False`` as ``false``, ``3.8`` as
    ``3. 8``. SentencePiece (T5) round-trips the GLUE/SuperGLUE targets, so nothing changes there."""
    unique = sorted(set(targets))
    decoded = tokenizer.batch_decode([list(ids) for ids in tokenize_texts(tokenizer, unique)],
                                     skip_special_tokens=True)
    return {text.strip(): target for text, target in zip(decoded, unique, strict=True) if text.strip() != target}


@torch.no_grad()
def generate_texts(
    model: MultiTaskT5,
    tokenizer: PreTrainedTokenizerBase,
    input_ids: Sequence[Sequence[int]],
    task_ids: Sequence[int],
    *,
    batch_size: int = 64,
    max_new_tokens: int = 32,
    num_beams: int = 1,
    synced_gpus: bool = False,
    progress: tqdm | None = None,
) -> list[str]:
    """Generated text for each encoded input (greedy or beam search), in input order.

    Inputs are sorted by length and batched, which keeps padding small.
    """
    device = next(model.parameters()).device
    collate = build_collator(model, tokenizer, generation=True)
    order = sorted(range(len(input_ids)), key=lambda i: len(input_ids[i]))
    texts: list[str] = [""] * len(input_ids)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = collate([{"input_ids": input_ids[i], "task_id": task_ids[i]} for i in rows])
            kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": False}
            if synced_gpus:
                kwargs["synced_gpus"] = True
            output = model.generate(input_ids=batch["input_ids"].to(device),
                                    attention_mask=batch["attention_mask"].to(device),
                                    task_ids=batch["task_ids"].to(device), **kwargs)
            output = collate.new_tokens(output, batch)
            for row, text in zip(rows, tokenizer.batch_decode(output, skip_special_tokens=True), strict=True):
                texts[row] = text.strip()
            if progress is not None:
                progress.update(1)
    finally:
        model.train(was_training)
    return texts


def evaluate_tasks(
    model: MultiTaskT5,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Sequence[Task],
    splits: Sequence[EncodedSplit],
    *,
    batch_size: int = 64,
    max_new_tokens: int = 32,
    num_beams: int = 1,
    max_examples: int | None = None,
    accelerator: Any = None,
    show_progress: bool = True,
    return_predictions: bool = False,
) -> dict[str, Any]:
    """Generate on each task's encoded split and score it with the task's official metrics.

    Args:
        model: the (unwrapped) method model; task ids come from ``model.config.task_names``.
        tasks, splits: the tasks and their encoded evaluation splits, in the same order.
        max_examples: score only the first ``max_examples`` examples of each split.
        accelerator: shard the work over its processes (``None``: one process).

    Returns:
        ``{"tasks": {name: {"metrics": {...}, "score": s, "num_examples": n}}, "average": benchmark score}``
        (plus ``"predictions": {name: [text, ...]}`` with ``return_predictions``).
    """
    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1
    synced = accelerator is not None and accelerator.distributed_type.name in ("FSDP", "DEEPSPEED")
    shards = []
    for split in splits:
        n = len(split) if max_examples is None else min(len(split), max_examples)
        shard = list(range(rank, n, world))
        shard += shard[-1:] * (-(-n // world) - len(shard))  # equal lengths on every rank
        shards.append((n, shard))
    total = sum(-(-len(shard) // batch_size) for _, shard in shards)
    bar = tqdm(total=total, desc="eval", leave=False, dynamic_ncols=True,
               disable=not (show_progress and rank == 0 and sys.stderr.isatty()))
    results: dict[str, Any] = {"tasks": {}}
    predictions: dict[str, list[str]] = {}
    for task, split, (n, shard) in zip(tasks, splits, shards, strict=True):
        task_id = model.config.task_id(task.name)
        texts = generate_texts(model, tokenizer, [split.input_ids[i] for i in shard], [task_id] * len(shard),
                               batch_size=batch_size, max_new_tokens=max_new_tokens, num_beams=num_beams,
                               synced_gpus=synced, progress=bar)
        pairs = list(zip(shard, texts, strict=True))
        if world > 1:
            from accelerate.utils import gather_object

            pairs = gather_object(pairs)
        by_index = dict(pairs)
        texts = [by_index[i] for i in range(n)]
        targets = [ex["targets"] for ex in split.examples] + list(task.label_names or ())
        forms = decoded_targets(tokenizer, targets)
        texts = [forms.get(text, text) for text in texts]
        metrics = task.compute_metrics(texts, split.examples[:n])
        results["tasks"][task.name] = {"metrics": metrics, "score": task_score(metrics), "num_examples": n}
        predictions[task.name] = texts
    bar.close()
    results["average"] = benchmark_score({name: r["score"] for name, r in results["tasks"].items()})
    if return_predictions:
        results["predictions"] = predictions
    return results


def format_results(results: dict[str, Any]) -> str:
    """One line: ``average 71.20 | superglue/cb 80.10 | ...``."""
    parts = [f"average {results['average']:.2f}"]
    parts += [f"{name} {r['score']:.2f}" for name, r in results["tasks"].items()]
    return " | ".join(parts)


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.2f}" for key, value in metrics.items())


def evaluate_checkpoint(
    path: str | Path,
    *,
    data_dir: str | Path | None = None,
    tasks: Sequence[str] | None = None,
    split: str | None = None,
    max_examples: int | None | str = "recipe",
    batch_size: int | None = None,
    num_beams: int | None = None,
    device: str | None = None,
    return_predictions: bool = False,
) -> dict[str, Any]:
    """Evaluate a saved model (``final/``, ``best/<task>/``, a step checkpoint or a run directory).

    Every setting defaults to the recipe the model was trained with, so the result equals the
    metrics recorded during training for the same checkpoint.

    Args:
        tasks: names (or aliases) of a subset of the model's tasks.
        max_examples: examples per task; ``"recipe"``: the recipe's ``eval.max_examples_per_task``;
            ``None``: the whole split.
    """
    from hyperprompt.data import encode_task
    from hyperprompt.training.checkpoint import load_run_checkpoint

    run = load_run_checkpoint(path, device=device or "cpu")
    model, tokenizer, config, directory = run
    selected = run.tasks(list(tasks) if tasks else None, data_dir=data_dir)
    split = split or config.eval.split
    encoded = [encode_task(t, split, tokenizer, config.max_input_length, config.max_target_length)
               for t in selected]
    results = evaluate_tasks(
        model, tokenizer, selected, encoded, batch_size=batch_size or config.eval.batch_size,
        max_new_tokens=config.generation_length,
        num_beams=num_beams or config.eval.num_beams,
        max_examples=config.eval.max_examples_per_task if max_examples == "recipe" else max_examples,
        return_predictions=return_predictions)
    return {"checkpoint": str(directory), "split": split, **results}
