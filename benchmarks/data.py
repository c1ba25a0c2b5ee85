"""Input-pipeline throughput vs. the training throughput of a t5-small-shaped model, on this machine.

    python benchmarks/data.py [--data-dir ../shared/data] [--batches 300] [--train-steps 3]

Prints one JSON object. For the SuperGLUE training files present (CB, COPA, MultiRC, RTE, WiC, WSC)
and two offline tokenizers (ByT5's byte tokenizer and one trained here with ``train_tokenizer``):

- ``tokenize_uncached``: examples/s of ``encode_task`` on an empty cache (tokenise + write the cache);
- ``tokenize_cached``: examples/s of ``encode_task`` when the cache is warm (load + hash the texts);
- ``batches``: examples/s of proportional-mixture batches (sampler -> examples -> ``Seq2SeqCollator``),
  batch 32, inputs cut to 128 tokens, targets to 16;

and ``train_step``: examples/s of forward + backward + AdamW step of a randomly initialised
``T5ForConditionalGeneration`` shaped like t5-small (d_model 512, 6 + 6 layers, 8 heads, d_ff 2048,
vocab 32128) on the same batch shape. ``ratio`` = batches / train_step (the target is >= 10);
``ratio_uncached`` = tokenize_uncached / train_step, the first epoch without a cache.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from hyperprompt.data import Mixture, MixtureBatches, Seq2SeqCollator, encode_task, get_task, train_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("HYPERPROMPT_SHARED_DATA", REPO_ROOT / ".." / "shared" / "data"))
TASKS = (
    "superglue/cb",
    "superglue/copa",
    "superglue/multirc",
    "superglue/rte",
    "superglue/wic",
    "superglue/wsc",
)
BATCH, INPUT_LENGTH, TARGET_LENGTH = 32, 128, 16


def pipeline_throughput(tasks, tokenizer, n_batches: int) -> tuple[dict[str, float], dict]:
    n_examples = sum(task.num_examples("train") for task in tasks)
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        encoded = [encode_task(t, "train", tokenizer, INPUT_LENGTH, TARGET_LENGTH, cache_dir) for t in tasks]
        uncached = time.perf_counter() - start
        start = time.perf_counter()
        encoded = [encode_task(t, "train", tokenizer, INPUT_LENGTH, TARGET_LENGTH, cache_dir) for t in tasks]
        cached = time.perf_counter() - start
        assert all(e.from_cache for e in encoded)
    mixture = Mixture(tasks)
    batches = iter(
        MixtureBatches(encoded, mixture.sampler(BATCH, seed=0), Seq2SeqCollator(tokenizer.pad_token_id))
    )
    first = next(batches)
    start = time.perf_counter()
    for _ in itertools.islice(batches, n_batches):
        pass
    collated = time.perf_counter() - start
    return {
        "tokenize_uncached": n_examples / uncached,
        "tokenize_cached": n_examples / cached,
        "batches": n_batches * BATCH / collated,
        "truncated_inputs": sum(e.num_truncated_inputs for e in encoded),
        "examples": n_examples,
    }, first


def train_throughput(batch: dict, steps: int) -> float:
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=32128,
        d_model=512,
        d_kv=64,
        d_ff=2048,
        num_layers=6,
        num_decoder_layers=6,
        num_heads=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    model = T5ForConditionalGeneration(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}

    def step(inputs: dict) -> None:
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step({k: v[:2] for k, v in inputs.items()})  # warm-up (allocations, optimizer state) on 2 examples
    start = time.perf_counter()
    for _ in range(steps):
        step(inputs)
    return steps * batch["input_ids"].shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batches", type=int, default=300, help="collated batches timed per tokenizer")
    parser.add_argument("--train-steps", type=int, default=1, help="timed t5-small training steps")
    args = parser.parse_args()

    from transformers import ByT5Tokenizer

    tasks = [get_task(name, data_dir=args.data_dir) for name in TASKS]
    for task in tasks:
        task.load("train")  # reading the files is not part of the tokenisation timings

    start = time.perf_counter()
    sample = [
        text for task in tasks for ex in task.load("train")[:1000] for text in (ex["inputs"], ex["targets"])
    ]
    trained = train_tokenizer(sample, vocab_size=2000)
    tokenizer_training_s = time.perf_counter() - start

    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "shape": {"batch": BATCH, "input_length": INPUT_LENGTH, "target_length": TARGET_LENGTH},
        "tasks": list(TASKS),
        "units": "examples/s",
        "trained_tokenizer_training_s": round(tokenizer_training_s, 2),
    }
    byt5_batch = None
    for name, tokenizer in (("byt5", ByT5Tokenizer()), ("trained_unigram_2k", trained)):
        scores, first_batch = pipeline_throughput(tasks, tokenizer, args.batches)
        results[name] = {k: round(v, 1) if isinstance(v, float) else v for k, v in scores.items()}
        byt5_batch = byt5_batch or first_batch
    # Full-length inputs, so that the training step costs what a real batch of this shape costs.
    assert byt5_batch is not None and byt5_batch["input_ids"].shape[1] == INPUT_LENGTH
    results["train_step_t5_small"] = round(train_throughput(byt5_batch, args.train_steps), 2)
    train = results["train_step_t5_small"]
    results["ratio"] = {
        name: round(results[name]["batches"] / train, 1) for name in ("byt5", "trained_unigram_2k")
    }
    # Worst case: the first epoch, when every example is tokenised on the fly.
    results["ratio_uncached"] = {
        name: round(results[name]["tokenize_uncached"] / train, 1) for name in ("byt5", "trained_unigram_2k")
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
