"""The training loop: one function, :func:`train`, on Hugging Face accelerate.

The same code runs on one CPU, one GPU, several GPUs or CPU processes (``accelerate launch`` /
torchrun: DDP, FSDP2 or DeepSpeed ZeRO 1/2, see ``distributed.py``; bf16 / fp16).
Each optimizer step takes ``batch_size`` examples (the *global* batch) from the mixture sampler,
split into ``gradient_accumulation_steps`` micro-batches per process. The loss is the mean token
cross-entropy over the whole global batch -- each micro-batch's summed loss is divided by the global
number of target tokens -- so N processes compute what one process with the global batch computes.

Run directory (see docs/training.md)::

    OUT/config.yaml  OUT/tokenizer/  OUT/checkpoints/step-N/  OUT/best/<task>/  OUT/best/overall/
    OUT/final/  OUT/metrics.jsonl  OUT/train_log.jsonl  OUT/results.json  OUT/tensorboard/
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import math
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging

from hyperprompt.data import EncodedSplit, Mixture, Seq2SeqCollator, benchmark_score, encode_task
from hyperprompt.training.builder import (
    build_model,
    build_tasks,
    build_tokenizer,
    count_parameters,
    load_tokenizer,
)
from hyperprompt.training.checkpoint import (
    CHECKPOINTS,
    checkpoint_dirs,
    child_path,
    link_copy,
    load_latest_checkpoint,
    save_checkpoint,
    save_model_dir,
    set_rng_state,
)
from hyperprompt.training.config import TrainConfig
from hyperprompt.training.distributed import (
    FullWeights,
    after_prepare,
    backward_options,
    build_accelerator,
    load_optimizer_state,
    optimizer_state,
    save_engine_state,
    shard_t5_blocks,
)
from hyperprompt.training.evaluate import evaluate_tasks, format_metrics, format_results
from hyperprompt.training.optim import build_optimizer, learning_rate

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped before applying that step (under DeepSpeed, whose
    engine steps inside ``backward``, it was applied in memory only: nothing is saved after it)."""

    def __init__(self, step: int, loss: float, checkpoint: Path | None):
        self.step, self.loss, self.checkpoint = step, loss, checkpoint
        where = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written yet"
        super().__init__(f"non-finite loss ({loss}) at step {step}: training stopped, {where}. "
                         "Lower optimizer.lr, set max_grad_norm, or use precision: bf16 instead of fp16.")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C / SIGTERM: a checkpoint was saved and training stopped cleanly."""

    def __init__(self, step: int, checkpoint: Path | None):
        self.step, self.checkpoint = step, checkpoint
        super().__init__(f"interrupted at step {step}; saved {checkpoint}. Continue with --resume.")


class RunDirError(RuntimeError):
    """The output directory holds another run."""


class StopRequest:
    """SIGINT / SIGTERM ask the loop to save and stop at the end of the current step; a second
    Ctrl-C stops at once (the last checkpoint stays)."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print(f"\n{signal.Signals(signum).name}: saving a checkpoint after this step "
                  "(press Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def train(config: TrainConfig, out_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train ``config``'s method on its task mixture; write the run directory ``out_dir``.

    Args:
        config: the recipe.
        out_dir: the run directory (created).
        resume: continue from the newest readable checkpoint in ``out_dir`` (exactly: weights,
            optimizer, sampler position and RNG states are restored).

    Returns:
        the content of ``results.json``.

    Raises:
        NonFiniteLossError: the loss became NaN / inf (the last good checkpoint is kept).
        TrainingInterrupted: Ctrl-C or SIGTERM (a checkpoint was saved first).
        RunDirError: ``out_dir`` holds a run and ``resume`` is false.
    """
    threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar per checkpoint
    try:
        return _train(config, Path(out_dir), resume)
    finally:
        torch.set_num_threads(threads)
        if bars:
            hf_logging.enable_progress_bar()


def _train(config: TrainConfig, out: Path, resume: bool) -> dict[str, Any]:
    started = time.time()
    accelerator = build_accelerator(config)  # one process, DDP, FSDP2 or DeepSpeed; GPUs or CPU processes
    main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    accum = config.gradient_accumulation_steps
    if config.batch_size % (accum * world):
        raise ValueError(f"batch_size {config.batch_size} is not divisible by gradient_accumulation_steps ({accum}) "
                         f"x processes ({world})")
    if not resume and (checkpoint_dirs(out) or (out / "final").exists()):
        raise RunDirError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if main:
        out.mkdir(parents=True, exist_ok=True)

    def say(message: str) -> None:
        if main:
            tqdm.write(message)

    # --- tasks, tokenizer, data ----------------------------------------------------------------
    set_seed(config.seed)
    tasks = build_tasks(config)
    config = resolved(config, [t.name for t in tasks])
    tokenizer_dir = out / "tokenizer"
    with accelerator.main_process_first():
        if tokenizer_dir.is_dir():
            tokenizer = load_tokenizer(tokenizer_dir)
        else:
            tokenizer = build_tokenizer(config, tasks)
            if main:
                tokenizer.save_pretrained(str(tokenizer_dir))
    if main:
        warn_if_config_changed(out / "config.yaml", config, say)
        config.save(out / "config.yaml")
    cache_dir = Path(config.cache_dir) if config.cache_dir else out / "cache"
    lengths = (config.max_input_length, config.max_target_length)
    with accelerator.main_process_first():
        train_splits = [encode_task(t, "train", tokenizer, *lengths, cache_dir=cache_dir) for t in tasks]
        eval_splits = [encode_task(t, config.eval.split, tokenizer, *lengths, cache_dir=cache_dir) for t in tasks]
    mix = config.mixture
    mixture = Mixture(tasks, mix.rate, mix.cap, mix.temperature, sizes=[len(s) for s in train_splits])
    # Each process gets its share of every global batch and splits it into micro-batches, so the
    # examples of a step do not depend on the number of processes or accumulation steps.
    sampler = mixture.sampler(config.batch_size // world, config.seed, mixed=mix.mixed, num_replicas=world, rank=rank)
    collate = Seq2SeqCollator(tokenizer.pad_token_id)

    # --- model, optimizer, resume ----------------------------------------------------------------
    model = build_model(config, tokenizer, [t.name for t in tasks])
    state: dict[str, Any] = {"step": 0, "best": {"tasks": {}, "overall": None}, "last_eval": None}
    loaded = load_latest_checkpoint(out, model, rank) if resume else None
    optimizer = build_optimizer(model, config)
    shard_t5_blocks(accelerator, model)
    full_weights = FullWeights(accelerator, model)  # what save_pretrained writes (gathered under FSDP)
    model, optimizer = accelerator.prepare(model, optimizer)
    after_prepare(accelerator, model)
    unwrapped = accelerator.unwrap_model(model)
    if loaded is not None:
        path, saved, rng = loaded
        if saved.get("format", 1) >= 2:
            load_optimizer_state(accelerator, model, optimizer, saved["optimizer"], path)
        else:  # checkpoints written before format 2 hold optimizer.state_dict()
            optimizer.load_state_dict(saved["optimizer"])
        sampler.load_state_dict(saved["sampler"])
        if accelerator.scaler is not None and "scaler" in saved:
            accelerator.scaler.load_state_dict(saved["scaler"])
        state.update(step=saved["step"], best=saved["best"], last_eval=saved["last_eval"])
        set_rng_state(rng)
        say(f"resumed from {path} (step {state['step']})")
    else:
        if resume:
            say(f"no checkpoint in {out / CHECKPOINTS}: starting from scratch")
        set_seed(config.seed + rank)  # dropout differs across ranks
    step = state["step"]
    last_saved = step if loaded is not None else None

    trainable, total = count_parameters(unwrapped)
    say(f"run: {out}  |  {config.model} + {config.method}: {trainable:,} trainable / {total:,} parameters "
        f"({unwrapped.num_added_parameters():,} added)  |  {world} process(es), device {accelerator.device}")
    for task, split, rate in zip(tasks, train_splits, mixture.rates, strict=True):
        say(f"  {task.name:<28} train {len(split):>7,}  rate {rate:.3f}  "
            f"(inputs cut: {split.num_truncated_inputs}, targets cut: {split.num_truncated_targets})")

    # --- logs ------------------------------------------------------------------------------------
    writer = None
    if main:
        for name in ("metrics.jsonl", "train_log.jsonl"):
            truncate_jsonl(out / name, step)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"), purge_step=step + 1 if step else None)

    def log_json(name: str, record: dict[str, Any]) -> None:
        if main:
            with open(out / name, "a") as f:
                f.write(json.dumps(record) + "\n")

    def evaluate(at_step: int) -> dict[str, Any]:
        with accelerator.autocast():
            results = evaluate_tasks(
                unwrapped, tokenizer, tasks, eval_splits, batch_size=config.eval.batch_size,
                max_new_tokens=config.eval.max_new_tokens or config.max_target_length,
                num_beams=config.eval.num_beams, max_examples=config.eval.max_examples_per_task,
                accelerator=accelerator)
        state["last_eval"] = {"step": at_step, **results}
        improved = update_best(state["best"], results, at_step)
        log_json("metrics.jsonl", {"step": at_step, "examples_seen": at_step * config.batch_size, **results})
        if writer is not None:
            writer.add_scalar("eval/average", results["average"], at_step)
            for name, result in results["tasks"].items():
                writer.add_scalar(f"eval/{name}/score", result["score"], at_step)
                for metric, value in result["metrics"].items():
                    writer.add_scalar(f"eval/{name}/{metric}", value, at_step)
        say(f"eval @ step {at_step}: {format_results(results)}")
        if improved:  # the same on every rank (the results are gathered)
            full = full_weights(model)
            if main:
                save_best(out, improved, full, tokenizer, config, state["best"])
        accelerator.wait_for_everyone()
        return results

    def save(at_step: int) -> Path:
        training_state = {
            "format": 2, "step": at_step, "optimizer": optimizer_state(accelerator, model, optimizer),
            "sampler": sampler.state_dict(), "best": state["best"], "last_eval": state["last_eval"],
        }
        if accelerator.scaler is not None:
            training_state["scaler"] = accelerator.scaler.state_dict()
        return save_checkpoint(out, at_step, full_weights(model), tokenizer, config, training_state, accelerator,
                               config.keep_last, lambda directory: save_engine_state(accelerator, model, directory))

    # --- the loop --------------------------------------------------------------------------------
    stop = StopRequest()
    bar = tqdm(total=config.max_steps, initial=step, desc="train", dynamic_ncols=True,
               disable=not (main and sys.stderr.isatty()))

    def close_logs() -> None:
        bar.close()
        if writer is not None:
            writer.flush()
    window = {"time": time.time(), "paused": 0.0, "steps": 0, "loss": 0.0}  # paused: evaluation and saving
    train_started, train_steps, paused_total = time.time(), 0, 0.0
    device = accelerator.device
    backward = backward_options(accelerator)
    iterator = micro_batches(sampler, train_splits, collate, accum)
    model.train()
    with stop.installed():
        while step < config.max_steps:
            lr = learning_rate(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            step_batches = next(iterator)
            counts = [int((b["labels"] != -100).sum()) for b in step_batches]  # target tokens, on the CPU
            tokens = accelerator.reduce(torch.tensor(sum(counts), device=device), "sum")
            loss_sum = torch.zeros((), device=device)
            for i, (batch, n) in enumerate(zip(step_batches, counts, strict=True)):
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                last = i == accum - 1
                accelerator.sync_gradients = last  # DeepSpeed reduces and steps in the last micro-batch's backward
                with contextlib.nullcontext() if last else accelerator.no_sync(model):
                    loss = model(**batch).loss  # mean over this micro-batch's target tokens
                    accelerator.backward(loss * (n * world / tokens), **backward)
                loss_sum += loss.detach().float() * n
            train_loss = (accelerator.reduce(loss_sum, "sum") / tokens).item()
            if not math.isfinite(train_loss):
                optimizer.zero_grad(set_to_none=True)
                close_logs()
                raise NonFiniteLossError(step + 1, train_loss, checkpoint_dirs(out)[-1] if checkpoint_dirs(out) else None)
            if config.max_grad_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            train_steps += 1
            window["steps"] += 1
            window["loss"] += train_loss

            elapsed = time.time() - window["time"] - window["paused"]
            rate = window["steps"] * config.batch_size / max(elapsed, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.4f}", lr=f"{lr:.2e}", ex_s=f"{rate:.1f}", refresh=False)
            if step % config.log_every == 0 or step == config.max_steps:
                record = {"step": step, "loss": window["loss"] / window["steps"], "lr": lr, "examples_per_s": rate}
                log_json("train_log.jsonl", record)
                if writer is not None:
                    writer.add_scalar("train/loss", record["loss"], step)
                    writer.add_scalar("train/lr", lr, step)
                    writer.add_scalar("train/examples_per_s", rate, step)
                if bar.disable:
                    eta = (config.max_steps - step) * elapsed / window["steps"]
                    say(f"step {step}/{config.max_steps} | loss {record['loss']:.4f} | lr {lr:.2e} | "
                        f"{rate:.1f} ex/s | eta {format_duration(eta)}")
                window = {"time": time.time(), "paused": 0.0, "steps": 0, "loss": 0.0}

            paused = time.time()
            if config.eval_every and step % config.eval_every == 0:
                evaluate(step)
            if step % config.save_every == 0:
                save(step)
                last_saved = step
            window["paused"] += time.time() - paused
            paused_total += time.time() - paused
            stop_now = stop.requested
            if world > 1:
                stop_now = bool(accelerator.reduce(torch.tensor(int(stop_now), device=device), "max").item())
            if stop_now:
                close_logs()
                checkpoint = save(step) if last_saved != step else checkpoint_dirs(out)[-1]
                raise TrainingInterrupted(step, checkpoint)
    close_logs()
    train_time = time.time() - train_started - paused_total  # without evaluation and checkpoints

    # --- the end: final evaluation, checkpoints, results -------------------------------------------
    if state["last_eval"] is None or state["last_eval"]["step"] != step:
        evaluate(step)
    if last_saved != step:
        save(step)
    full = full_weights(model)
    if main:
        save_model_dir(out / "final", full, tokenizer, config)
    results = build_results(config, state, step, train_steps, train_time, time.time() - started)
    if main:
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        say(summary_table(results))
        say(f"wrote {out / 'results.json'}, {out / 'metrics.jsonl'}, {out / 'final'}/ and {out / 'best'}/")
    if writer is not None:
        writer.close()
    accelerator.wait_for_everyone()
    # Free the DDP / FSDP wrapper (it holds the process group) while every process is still here:
    # gloo torn down after a peer has exited can hang. The process group itself stays up, so that
    # train() can run again in this process; the CLI destroys it before exiting.
    accelerator.free_memory()
    model = unwrapped = None
    gc.collect()
    accelerator.wait_for_everyone()
    return results


# --- helpers ----------------------------------------------------------------------------------------

def micro_batches(sampler: Any, splits: list[EncodedSplit], collate: Seq2SeqCollator,
                  accum: int) -> Iterator[list[dict[str, torch.Tensor]]]:
    """Per optimizer step, this process's examples as ``accum`` collated micro-batches."""
    for batch in sampler:
        size = len(batch) // accum
        yield [collate([splits[t].feature(i, t) for t, i in batch[k * size:(k + 1) * size]]) for k in range(accum)]


def resolved(config: TrainConfig, task_names: list[str]) -> TrainConfig:
    """The config as the run saves it: canonical task names and absolute paths."""
    def absolute(path: str | None) -> str | None:
        return str(Path(path).expanduser().resolve()) if path else path

    model = config.model
    if Path(model).expanduser().is_dir():
        model = absolute(model)
    tokenizer = config.tokenizer
    if tokenizer and Path(tokenizer).expanduser().is_dir():
        tokenizer = absolute(tokenizer)
    return dataclasses.replace(
        config, tasks=list(task_names), data_dir=absolute(config.data_dir), cache_dir=absolute(config.cache_dir),
        task_files=[absolute(p) for p in config.task_files], model=model, tokenizer=tokenizer)


def warn_if_config_changed(path: Path, config: TrainConfig, say: Any) -> None:
    if not path.is_file():
        return
    old = _flatten(yaml.safe_load(path.read_text()) or {})
    new = _flatten(config.to_dict())
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        say(f"note: the recipe differs from the one in {path}: {', '.join(changed)}")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in ("model_overrides", "method_settings"):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop the lines logged after ``step`` (a resumed run logs them again)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept))


def update_best(best: dict[str, Any], results: dict[str, Any], step: int) -> list[str]:
    """Record improved per-task and overall scores; return the names improved (``"overall"`` included)."""
    improved = []
    for name, result in results["tasks"].items():
        old = best["tasks"].get(name)
        if old is None or result["score"] > old["score"]:
            best["tasks"][name] = {"step": step, **result}
            improved.append(name)
    if best["overall"] is None or results["average"] > best["overall"]["average"]:
        best["overall"] = {"step": step, **results}
        improved.append("overall")
    return improved


def save_best(out: Path, names: list[str], model: Any, tokenizer: Any, config: TrainConfig,
              best: dict[str, Any]) -> None:
    """Write the model once, then hard-link it to ``best/<task>/`` for every improved name."""
    staging = out / "best" / ".current"
    save_model_dir(staging, model, tokenizer, config)
    for name in names:
        info = best["overall"] if name == "overall" else best["tasks"][name]
        link_copy(staging, child_path(out / "best", name), extra={"best.json": {"name": name, **info}})
    shutil.rmtree(staging, ignore_errors=True)


def build_results(config: TrainConfig, state: dict[str, Any], step: int, train_steps: int,
                  train_time: float, wall_time: float) -> dict[str, Any]:
    """``results.json``: final metrics, best per task (the paper's protocol) and best overall."""
    final = state["last_eval"]
    best_tasks = state["best"]["tasks"]
    return {
        "model": config.model, "method": config.method, "tasks": config.tasks,
        "split": config.eval.split, "max_examples_per_task": config.eval.max_examples_per_task,
        "final": final,
        "best_per_task": {
            "tasks": best_tasks,
            "average": benchmark_score({name: r["score"] for name, r in best_tasks.items()}),
        },
        "best_overall": state["best"]["overall"],
        "train": {
            "steps": step, "examples": step * config.batch_size, "steps_this_session": train_steps,
            "train_seconds_this_session": train_time, "wall_seconds_this_session": wall_time,
            "examples_per_s": train_steps * config.batch_size / max(train_time, 1e-9),
        },
    }


def summary_table(results: dict[str, Any]) -> str:
    final, best = results["final"], results["best_per_task"]
    rows = [(name, format_metrics(r["metrics"]), f"{r['score']:.2f}",
             f"{best['tasks'][name]['score']:.2f} @{best['tasks'][name]['step']}")
            for name, r in final["tasks"].items()]
    overall = results["best_overall"]
    rows.append(("average", "", f"{final['average']:.2f}", f"{best['average']:.2f}"))
    header = ("task", f"metrics (step {final['step']})", "final", "best @step")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(4)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    table = [line.format(*header), line.format(*("-" * w for w in widths))]
    table += [line.format(*row) for row in rows]
    table.append(f"best overall checkpoint: step {overall['step']} (average {overall['average']:.2f}); "
                 f"best per task averages {best['average']:.2f} (the paper's protocol)")
    return "\n".join(table)


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
