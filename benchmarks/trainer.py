"""Training throughput of `hyperprompt train` against Hugging Face `Seq2SeqTrainer`, in one run.

    python benchmarks/trainer.py [--size t5-mini] [--steps 60] [--warmup 10] [--batch-size 32] [--repeats 2]

Both train the same randomly initialised T5 (plain multi-task T5: method ``mtl``) on the same
examples in the same order -- batches of SuperGLUE CB + COPA + RTE drawn by our proportional mixture
sampler from the official files, tokenised once with the same tokenizer -- with AdamW (constant LR,
gradient clipping at 1.0), the same batch size and the same number of steps, one process on the CPU.
Throughput is examples/s over the steps after ``--warmup`` (evaluation and checkpoints excluded).
The two are run back to back ``--repeats`` times (interleaved) and the medians compared.

Prints one JSON object; ``ratio`` = ours / Seq2SeqTrainer (the target is >= 1.0).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hyperprompt.data import Mixture, encode_task
from hyperprompt.model.presets import load_backbone
from hyperprompt.training import build_tasks, load_config, train
from hyperprompt.training.builder import load_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("HYPERPROMPT_SHARED_DATA", REPO_ROOT / ".." / "shared" / "data")) / "superglue"
TASKS = ["superglue/cb", "superglue/copa", "superglue/rte"]


def recipe(args: argparse.Namespace, cache_dir: Path, tokenizer: str) -> dict:
    return {
        "model": args.size, "tokenizer": tokenizer, "tokenizer_vocab_size": 2000, "method": "mtl",
        "tasks": TASKS, "data_dir": str(args.data_dir), "max_input_length": args.input_length,
        "max_target_length": args.target_length, "batch_size": args.batch_size,
        "optimizer": {"name": "adamw", "lr": 1e-3}, "max_grad_norm": 1.0, "max_steps": args.steps,
        "save_every": args.steps, "log_every": args.warmup, "eval": {"max_examples_per_task": 4},
        "seed": 0, "num_threads": args.threads, "cache_dir": str(cache_dir),
    }


def ours(args: argparse.Namespace, work: Path, run: int, tokenizer: str) -> float:
    """examples/s of `hyperprompt train` after the warm-up steps."""
    out = work / f"ours-{run}"
    with contextlib.redirect_stdout(io.StringIO()):
        train(load_config(base=recipe(args, work / "cache", tokenizer)), out)
    windows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()][1:]
    seconds = sum(args.warmup * args.batch_size / w["examples_per_s"] for w in windows)
    return len(windows) * args.warmup * args.batch_size / seconds


def hf_trainer(args: argparse.Namespace, work: Path, run: int, tokenizer_dir: Path) -> float:
    """examples/s of transformers' Seq2SeqTrainer after the warm-up steps, same examples and order."""
    from torch.utils.data import SequentialSampler
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

    tokenizer = load_tokenizer(tokenizer_dir)
    config = load_config(base=recipe(args, work / "cache", str(tokenizer_dir)))
    tasks = build_tasks(config)
    splits = [encode_task(t, "train", tokenizer, args.input_length, args.target_length, cache_dir=work / "cache")
              for t in tasks]
    sampler = Mixture(tasks, sizes=[len(s) for s in splits]).sampler(args.batch_size, seed=0)
    examples = [{"input_ids": splits[t].input_ids[i].tolist(), "labels": splits[t].labels[i].tolist()}
                for _, batch in zip(range(args.steps), sampler, strict=False) for t, i in batch]

    class InOrder(Seq2SeqTrainer):
        def _get_train_sampler(self, *unused, **kwargs):
            return SequentialSampler(self.train_dataset)

    class StepTimes(TrainerCallback):
        times: list[float] = []

        def on_step_end(self, *unused, **kwargs):
            self.times.append(time.perf_counter())

    torch.manual_seed(0)
    model = load_backbone(args.size, vocab_size=len(tokenizer))
    training_args = Seq2SeqTrainingArguments(
        output_dir=str(work / f"hf-{run}"), per_device_train_batch_size=args.batch_size, max_steps=args.steps,
        learning_rate=1e-3, lr_scheduler_type="constant", optim="adamw_torch", weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=args.warmup, save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, dataloader_pin_memory=False, use_cpu=True, seed=0, remove_unused_columns=False)
    timer = StepTimes()
    timer.times = []
    trainer = InOrder(model=model, args=training_args, train_dataset=examples, callbacks=[timer],
                      data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100))
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints its log dicts
            trainer.train()
    finally:
        torch.set_num_threads(threads)
    times = timer.times
    return (len(times) - args.warmup) * args.batch_size / (times[-1] - times[args.warmup - 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="t5-mini", help="a tiny preset (t5-tiny, t5-mini)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="the SuperGLUE files")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the timing (also the log interval)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-length", type=int, default=64)
    parser.add_argument("--target-length", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both")
    args = parser.parse_args()
    if args.steps % args.warmup or args.steps < 2 * args.warmup:
        parser.error("--steps must be a multiple of --warmup and at least twice it")

    started = time.time()
    speeds: dict[str, list[float]] = {"hyperprompt_train": [], "seq2seq_trainer": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for run in range(args.repeats):
            tokenizer = "trained" if run == 0 else str(work / "ours-0" / "tokenizer")
            speeds["hyperprompt_train"].append(ours(args, work, run, tokenizer))
            speeds["seq2seq_trainer"].append(hf_trainer(args, work, run, work / "ours-0" / "tokenizer"))
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    print(json.dumps({
        "benchmark": "trainer",
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "examples_per_s": {name: {"runs": values, "median": medians[name]} for name, values in speeds.items()},
        "ratio": medians["hyperprompt_train"] / medians["seq2seq_trainer"],
        "torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
        "seconds": time.time() - started,
    }, indent=2))


if __name__ == "__main__":
    main()
