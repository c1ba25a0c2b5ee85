"""The training loop on Hugging Face accelerate: :func:`setup` builds a run's state, :func:`train` runs it.

The same code runs on one CPU, one GPU, several GPUs or CPU processes (``accelerate launch`` /
torchrun: DDP, FSDP2 or DeepSpeed ZeRO 1/2, see ``distributed.py``; bf16 / fp16).
Each optimizer step takes ``batch_size`` examples (the *global* batch) from the mixture sampler,
split into ``gradient_accumulation_steps`` micro-batches per process. The loss is the mean token
cross-entropy over the whole global batch -- each micro-batch's summed loss is divided by the global
number of target tokens -- so N processes compute what one process with the global batch computes.

Run directory (see docs/training.md; its rules: ``rundir.py``)::

    OUT/config.yaml  OUT/tokenizer/  OUT/checkpoints/step-N/  OUT/best/<task>/  OUT/best/overall/
    OUT/final/  OUT/metrics.jsonl  OUT/train_log.jsonl  OUT/results.json  OUT/tensorboard/
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging

from hyperprompt.data import EncodedSplit, Mixture, MixtureBatches, encode_task
from hyperprompt.errors import (
    ConfigError,
    HyperPromptError,
    NonFiniteLossError,
    RunDirError,
    TrainingInterrupted,
)
from hyperprompt.files import write_text_atomic
from hyperprompt.training import rundir
from hyperprompt.training.best import build_results, new_best, save_best, summary_table, update_best
from hyperprompt.training.builder import (
    build_collator,
    build_model,
    build_tokenizer,
    count_parameters,
    load_tokenizer,
)
from hyperprompt.training.checkpoint import (
    checkpoint_dirs,
    good_checkpoints,
    load_checkpoint,
    load_latest_checkpoint,
    mark_nonfinite,
    prune_checkpoints,
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
from hyperprompt.training.evaluate import evaluate_tasks, format_results
from hyperprompt.training.logs import RunLog
from hyperprompt.training.optim import build_optimizer, learning_rate
from hyperprompt.training.recipe import Recipe, resolve


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


@dataclass
class TrainState:
    """Everything a run holds between steps; :func:`setup` builds it, the loop advances ``step``."""

    recipe: Recipe
    out: Path
    accelerator: Accelerator
    tokenizer: Any
    batches: MixtureBatches
    eval_splits: list[EncodedSplit]
    model: torch.nn.Module  # as accelerate prepared it (DDP / FSDP / DeepSpeed wrapper)
    unwrapped: Any  # the MultiTaskT5
    optimizer: torch.optim.Optimizer
    full_weights: FullWeights
    log: RunLog
    step: int = 0
    best: dict[str, Any] | None = None
    last_eval: dict[str, Any] | None = None
    last_saved: int | None = None  # step of the newest checkpoint this run wrote or resumed from

    @property
    def config(self) -> TrainConfig:
        return self.recipe.config


def train(config: TrainConfig, out_dir: str | Path, resume: bool = False,
          resume_from: int | None = None) -> dict[str, Any]:
    """Train ``config``'s method on its task mixture; write the run directory ``out_dir``.

    Args:
        config: the recipe.
        out_dir: the run directory (created; a fresh run needs it empty or new).
        resume: continue from the newest good checkpoint in ``out_dir`` (exactly: weights, optimizer,
            sampler position and RNG states are restored), after checking that it belongs to this recipe.
            A run directory without a checkpoint starts over.
        resume_from: continue from ``checkpoints/step-<resume_from>`` instead (implies ``resume``).

    Returns:
        the content of ``results.json``.

    Raises:
        NonFiniteLossError: the loss became NaN / inf (the last good checkpoint is kept and named).
        TrainingInterrupted: Ctrl-C or SIGTERM (a checkpoint was saved first).
        RunDirError: ``out_dir`` is a file, is not writable, holds another run without ``resume``, or a
            write failed (disk full, read-only): the message names the file.
        CheckpointError: the checkpoint to resume belongs to another recipe, or none is readable.
    """
    threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar per checkpoint
    out = Path(out_dir)
    try:
        state = setup(config, out, resume or resume_from is not None, resume_from)
        return run(state)
    except Exception as error:
        failed = None if isinstance(error, HyperPromptError) else rundir.write_failure(error)
        if failed is None:
            raise
        good = good_checkpoints(out)
        kept = f"the last checkpoint, {good[-1]}, is intact" if good else "no checkpoint was written yet"
        raise RunDirError(f"could not write {failed}; {kept}. Free space or choose a writable --out, then run "
                          "again with --resume") from error
    finally:
        torch.set_num_threads(threads)
        if bars:
            hf_logging.enable_progress_bar()


def setup(config: TrainConfig, out: Path, resume: bool, resume_from: int | None) -> TrainState:
    """Resolve the recipe, check the run directory, build data, model and optimizer, resume if asked."""
    started = time.time()
    accelerator = build_accelerator(config)  # one process, DDP, FSDP2 or DeepSpeed; GPUs or CPU processes
    main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    accum = config.gradient_accumulation_steps
    if config.batch_size % (accum * world):
        raise ConfigError(f"config key 'batch_size': batch_size {config.batch_size} is not divisible by "
                          f"gradient_accumulation_steps ({accum}) x processes ({world})")

    # --- the recipe, resolved once; the run directory checked before anything is written -------------
    set_seed(config.seed)
    recipe = resolve(config)
    config = recipe.config

    def say(message: str) -> None:
        if main:
            tqdm.write(message)

    rundir.check_writable(out)
    plan = rundir.plan(out, recipe, resume, resume_from)  # read-only: the same decision on every rank
    accelerator.wait_for_everyone()
    if main:
        rundir.apply(out, plan, say)
    accelerator.wait_for_everyone()

    # --- tokenizer and data --------------------------------------------------------------------------
    tokenizer_dir = out / "tokenizer"
    with accelerator.main_process_first():
        if tokenizer_dir.is_dir():
            tokenizer = load_tokenizer(tokenizer_dir)
        else:
            tokenizer = build_tokenizer(config, list(recipe.tasks))
            if main:
                tokenizer.save_pretrained(str(tokenizer_dir))
    if main:
        warn_if_config_changed(out / "config.yaml", config, say)
        config.save(out / "config.yaml")
    cache_dir = Path(config.cache_dir) if config.cache_dir else out / "cache"
    lengths = (config.max_input_length, config.max_target_length)
    with accelerator.main_process_first():
        train_splits = [encode_task(t, "train", tokenizer, *lengths, cache_dir=cache_dir) for t in recipe.tasks]
        eval_splits = [encode_task(t, config.eval.split, tokenizer, *lengths, cache_dir=cache_dir)
                       for t in recipe.tasks]
    mix = config.mixture
    mixture = Mixture(list(recipe.tasks), mix.rate, mix.cap, mix.temperature, sizes=[len(s) for s in train_splits])
    # Each process gets its share of every global batch and splits it into micro-batches, so the
    # examples of a step do not depend on the number of processes or accumulation steps.
    sampler = mixture.sampler(config.batch_size // world, config.seed, mixed=mix.mixed, num_replicas=world, rank=rank)

    # --- model, optimizer, resume --------------------------------------------------------------------
    model = build_model(config, tokenizer, recipe.method)
    batches = MixtureBatches(train_splits, sampler, build_collator(model, tokenizer), accumulation=accum)
    if plan.resume_from is not None:
        loaded = (plan.resume_from, *load_checkpoint(plan.resume_from, model, rank))
    else:
        loaded = load_latest_checkpoint(out, model, rank) if resume else None
    optimizer = build_optimizer(model, config)
    shard_t5_blocks(accelerator, model)
    full_weights = FullWeights(accelerator, model)  # what save_pretrained writes (gathered under FSDP)
    model, optimizer = accelerator.prepare(model, optimizer)
    after_prepare(accelerator, model)
    unwrapped = accelerator.unwrap_model(model)
    step, best, last_eval, last_saved = 0, new_best(), None, None
    if loaded is not None:
        path, saved, rng = loaded
        if saved.get("format", 1) >= 2:
            load_optimizer_state(accelerator, model, optimizer, saved["optimizer"], path)
        else:  # checkpoints written before format 2 hold optimizer.state_dict()
            optimizer.load_state_dict(saved["optimizer"])
        batches.load_state_dict(saved["sampler"])
        if accelerator.scaler is not None and "scaler" in saved:
            accelerator.scaler.load_state_dict(saved["scaler"])
        step, best, last_eval, last_saved = saved["step"], saved["best"], saved["last_eval"], saved["step"]
        set_rng_state(rng)
        say(f"resumed from {path} (step {step})")
    else:
        set_seed(config.seed + rank)  # dropout differs across ranks

    log = RunLog(out, main, step, config.max_steps, config.batch_size, config.log_every, started=started)
    trainable, total = count_parameters(unwrapped)
    log.say(f"run: {out}  |  {config.model} + {config.method}: {trainable:,} trainable / {total:,} parameters "
            f"({unwrapped.num_added_parameters():,} added)  |  {world} process(es), device {accelerator.device}")
    for task, split, rate in zip(recipe.tasks, train_splits, mixture.rates, strict=True):
        log.say(f"  {task.name:<28} train {len(split):>7,}  rate {rate:.3f}  "
                f"(inputs cut: {split.num_truncated_inputs}, targets cut: {split.num_truncated_targets})")
    for warning in cut_target_warnings(train_splits, eval_splits, config.max_target_length):
        log.say(warning)
    return TrainState(recipe, out, accelerator, tokenizer, batches, eval_splits, model, unwrapped, optimizer,
                      full_weights, log, step, best, last_eval, last_saved)


def run(s: TrainState) -> dict[str, Any]:
    """The loop: steps until ``max_steps`` with evaluation and checkpoints, then the final model and results."""
    config, accelerator = s.config, s.accelerator
    stop = StopRequest()
    steps = s.batches.steps()
    s.model.train()
    with stop.installed():
        while s.step < config.max_steps:
            lr = learning_rate(s.step, config)
            loss = train_step(s, next(steps), lr)
            if not math.isfinite(loss):
                s.log.close()
                raise non_finite(s, loss)
            s.step += 1
            if s.last_saved == s.step - 1 and accelerator.is_main_process:
                prune_checkpoints(s.out, config.keep_last)  # the newest checkpoint's next step was finite
            s.log.train_step(s.step, loss, lr)
            paused = time.time()
            if config.eval_every and s.step % config.eval_every == 0:
                evaluate(s)
            if s.step % config.save_every == 0:
                save(s)
            s.log.paused(time.time() - paused)
            if stop_requested(s, stop.requested):
                s.log.close()
                checkpoint = save(s) if s.last_saved != s.step else checkpoint_dirs(s.out)[-1]
                raise TrainingInterrupted(s.step, checkpoint)
    s.log.close()
    return finish(s)


def train_step(s: TrainState, micro_batches: list[dict[str, torch.Tensor]], lr: float) -> float:
    """One optimizer step on a global batch; returns its mean token loss (the step is not applied if it is
    not finite)."""
    accelerator, model, optimizer = s.accelerator, s.model, s.optimizer
    world, device = accelerator.num_processes, accelerator.device
    for group in optimizer.param_groups:
        group["lr"] = lr
    counts = [int((b["labels"] != -100).sum()) for b in micro_batches]  # target tokens, on the CPU
    tokens = accelerator.reduce(torch.tensor(sum(counts), device=device), "sum")
    loss_sum = torch.zeros((), device=device)
    backward = backward_options(accelerator)
    for i, (batch, n) in enumerate(zip(micro_batches, counts, strict=True)):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        last = i == len(micro_batches) - 1
        accelerator.sync_gradients = last  # DeepSpeed reduces and steps in the last micro-batch's backward
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            loss = model(**batch).loss  # mean over this micro-batch's target tokens
            accelerator.backward(loss * (n * world / tokens), **backward)
        loss_sum += loss.detach().float() * n
    train_loss = (accelerator.reduce(loss_sum, "sum") / tokens).item()
    if not math.isfinite(train_loss):
        optimizer.zero_grad(set_to_none=True)
        return train_loss
    if s.config.max_grad_norm is not None:
        accelerator.clip_grad_norm_(model.parameters(), s.config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return train_loss


def non_finite(s: TrainState, loss: float) -> NonFiniteLossError:
    """The error for a non-finite loss at step ``s.step + 1``. A checkpoint of step ``s.step`` holds the
    weights that gave it: it is marked, so that a resume starts from the one before (kept for this)."""
    checkpoints = checkpoint_dirs(s.out)
    if s.accelerator.is_main_process and checkpoints and checkpoints[-1].name == f"step-{s.step:08d}":
        mark_nonfinite(checkpoints[-1], s.step + 1, loss)
    s.accelerator.wait_for_everyone()
    good = good_checkpoints(s.out)
    return NonFiniteLossError(s.step + 1, loss, good[-1] if good else None)


def stop_requested(s: TrainState, requested: bool) -> bool:
    if s.accelerator.num_processes > 1:  # every rank stops at the same step
        flag = torch.tensor(int(requested), device=s.accelerator.device)
        return bool(s.accelerator.reduce(flag, "max").item())
    return requested


def evaluate(s: TrainState) -> dict[str, Any]:
    """Evaluate every task; log; keep the best checkpoint per task and overall."""
    config, accelerator = s.config, s.accelerator
    with accelerator.autocast():
        results = evaluate_tasks(
            s.unwrapped, s.tokenizer, list(s.recipe.tasks), s.eval_splits, batch_size=config.eval.batch_size,
            max_new_tokens=config.generation_length, num_beams=config.eval.num_beams,
            max_examples=config.eval.max_examples_per_task, accelerator=accelerator)
    s.last_eval = {"step": s.step, **results}
    improved = update_best(s.best, results, s.step)
    s.log.evaluation(s.step, results)
    s.log.say(f"eval @ step {s.step}: {format_results(results)}")
    if improved:  # the same on every rank (the results are gathered)
        full = s.full_weights(s.model)
        if accelerator.is_main_process:
            save_best(s.out, improved, full, s.tokenizer, s.recipe, s.best)
    accelerator.wait_for_everyone()
    return results


def save(s: TrainState) -> Path:
    """Write ``checkpoints/step-N`` (every process takes part)."""
    accelerator = s.accelerator
    training_state = {
        "format": 2, "step": s.step, "optimizer": optimizer_state(accelerator, s.model, s.optimizer),
        "sampler": s.batches.state_dict(), "best": s.best, "last_eval": s.last_eval,
    }
    if accelerator.scaler is not None:
        training_state["scaler"] = accelerator.scaler.state_dict()
    path = save_checkpoint(s.out, s.step, s.full_weights(s.model), s.tokenizer, s.config, training_state,
                           accelerator, s.config.keep_last,
                           lambda directory: save_engine_state(accelerator, s.model, directory),
                           task_specs=s.recipe.user_task_specs())
    s.last_saved = s.step
    return path


def finish(s: TrainState) -> dict[str, Any]:
    """The final evaluation and checkpoint, ``final/`` and ``results.json``."""
    accelerator, out = s.accelerator, s.out
    if s.last_eval is None or s.last_eval["step"] != s.step:
        evaluate(s)
    if s.last_saved != s.step:
        save(s)
    full = s.full_weights(s.model)
    if accelerator.is_main_process:
        save_model_dir(out / "final", full, s.tokenizer, s.config, task_specs=s.recipe.user_task_specs())
    results = build_results(s.recipe, accelerator.unwrap_model(s.model).config, s.best, s.last_eval, s.step, s.log.timing())
    if accelerator.is_main_process:
        write_text_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")  # marks the run finished
        s.log.say(summary_table(results))
        s.log.say(f"wrote {out / 'results.json'}, {out / 'metrics.jsonl'}, {out / 'final'}/ and {out / 'best'}/")
    accelerator.wait_for_everyone()
    # Free the DDP / FSDP wrapper (it holds the process group) while every process is still here:
    # gloo torn down after a peer has exited can hang. The process group itself stays up, so that
    # train() can run again in this process; the CLI destroys it before exiting.
    accelerator.free_memory()
    s.model = s.unwrapped = None
    gc.collect()
    accelerator.wait_for_everyone()
    return results


def cut_target_warnings(train_splits: list[EncodedSplit], eval_splits: list[EncodedSplit],
                        max_target_length: int) -> list[str]:
    """One warning per task whose targets are cut: the model learns, and generates, at most
    ``max_target_length - 1`` tokens, so a cut answer can never be matched exactly (silently 0 otherwise)."""
    warnings = []
    for train_split, eval_split in zip(train_splits, eval_splits, strict=True):
        cut = [f"{split.num_truncated_targets:,} of {len(split):,} {split.split} targets"
               for split in (train_split, eval_split) if split.num_truncated_targets]
        if cut:
            warnings.append(
                f"warning: {train_split.task}: {' and '.join(cut)} are longer than max_target_length="
                f"{max_target_length} tokens (EOS included) and are cut to their first {max_target_length - 1} tokens; "
                f"the model cannot generate them whole. Raise max_target_length in the recipe if that is not meant.")
    return warnings


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
