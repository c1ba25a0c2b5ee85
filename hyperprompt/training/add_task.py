"""Add a task to a trained model by learning only its new rows (beyond the paper; issue 15, part 1).

HyperPrompt-Global makes every layer's prompts from a task embedding k_tau through hypernetworks shared by
all tasks, so a new task needs only its own k_tau (``--train embedding``: t' numbers) and optionally its
global prompts P_tau (``embedding+prompts``). Backbone and hypernetworks stay frozen, every old task's outputs
stay bit-identical (:mod:`hyperprompt.model.extend`). ``task-rows`` trains the new rows of every per-task
parameter instead, which works for any method that has them (prompt tuning, prefix tuning, adapters,
HyperPrompt-Sep, HyperFormer++'s task embedding).

A description-conditioned Global (``task_conditioning: description``) makes k_tau from the task's description:
the new task's prompts then come from its description alone (``--train none``: zero-shot), and ``embedding``
fine-tunes its description embedding e_tau from there (through the frozen projection W_p).

The new model is written as a model directory (``OUT/final/``: the old tasks plus the new one, loadable by
``evaluate`` / ``predict`` / ``analyze`` like any other) with ``OUT/results.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from hyperprompt.data import encode_task, get_task, load_task_spec
from hyperprompt.errors import InputError
from hyperprompt.model.extend import train_only_new_rows, with_new_tasks
from hyperprompt.training.builder import build_collator
from hyperprompt.training.checkpoint import load_run_checkpoint, save_model_dir
from hyperprompt.training.evaluate import evaluate_tasks
from hyperprompt.training.loop import cut_target_warnings
from hyperprompt.training.recipe import resolve

#: what ``--train`` may name, for HyperPrompt-Global (``task-rows`` works for every method)
GLOBAL_TRAINED = {"embedding": ("hyperprompt.task_embedding", "hyperprompt.description_embedding"),
                  "embedding+prompts": ("hyperprompt.task_embedding", "hyperprompt.description_embedding",
                                        "hyperprompt.prompts.encoder", "hyperprompt.prompts.decoder")}
#: ``none`` trains nothing: the new task as its initial rows give it (zero-shot from a description);
#: ``prefix`` learns the new task's prompts P^m directly, every layer's (prefix tuning on the frozen model);
#: ``prompt`` learns soft input tokens for it (prompt tuning on the frozen model; its hyper-prompts stay
#: those of its initial rows)
TRAIN_CHOICES = (*GLOBAL_TRAINED, "prefix", "prompt", "task-rows", "none")
PREFIX_TRAINED = ("hyperprompt.direct_prompts.encoder", "hyperprompt.direct_prompts.decoder")
PROMPT_TRAINED = ("input_prompts",)
#: where a described task's rows start: its own description's embedding (zero-shot), or the mean of the old
#: tasks' description embeddings (the "average task", as a named task starts: separates the start from the
#: parametrisation when its embedding is fine-tuned)
START_CHOICES = ("description", "mean")


def add_task(run: str | Path, task: str, out_dir: str | Path, *, train: str = "embedding", steps: int = 300,
             batch_size: int = 32, lr: float = 1e-2, num_examples: int | None = None, seed: int = 0,
             data_dir: str | Path | None = None, eval_examples: int | None = None,
             start: str | None = None) -> dict[str, Any]:
    """Add ``task`` (a task spec file, or a registered task name) to the model saved in ``run``.

    Args:
        run: a run directory or model directory of the trained model.
        task: the new task: a YAML / JSON task spec (``docs/data.md``) or a built-in task name.
        out_dir: where ``final/`` and ``results.json`` go (must not hold a model yet).
        train: ``embedding``, ``embedding+prompts`` (HyperPrompt-Global), ``prefix`` (HyperPrompt: the new
            task's prompts in every layer learned directly, starting from the generated ones -- prefix tuning
            of the new task on the frozen model, a baseline), ``prompt`` (HyperPrompt: 16 soft input tokens for
            the new task, sampled-vocabulary init, on the frozen model whose hyper-prompts for it come from its
            initial rows -- prompt tuning, the other baseline), ``task-rows`` (any method) or ``none`` (no
            training: a description-conditioned model's zero-shot prompts).
        steps, batch_size, lr: AdamW (no weight decay) on the new rows only.
        num_examples: train on the first N training examples of the task only (few-shot); None: all.
        eval_examples: evaluate on the first N validation examples (None: all).
        start: a description-conditioned model's new description embedding starts as the task's own
            description's (``description``, the default) or as the mean of the old tasks' (``mean``); a model
            with named tasks always starts the new rows from the mean (``mean``, the only choice there).

    Returns:
        the content of ``results.json``: the new task's scores before (the rows as they start) and
        after training, and the settings; ``start`` says where the new task's per-task rows started
        (``description`` or ``mean``: a named model's rows always start at the mean; with ``--train prefix``
        the learned prompts then start as the prompts generated from those rows).
    """
    if train not in TRAIN_CHOICES:
        raise InputError(f"--train {train!r}: choose one of {', '.join(TRAIN_CHOICES)}")
    if start is not None and start not in START_CHOICES:
        raise InputError(f"--start {start!r}: choose one of {', '.join(START_CHOICES)}")
    out = Path(out_dir)
    if (out / "final").exists():
        raise InputError(f"{out / 'final'} exists already: choose another --out")
    started = time.time()
    loaded = load_run_checkpoint(run)
    model, tokenizer, config = loaded.model, loaded.tokenizer, loaded.config
    spec_path = Path(task)
    new_task = load_task_spec(spec_path) if spec_path.suffix.lower() in (".yaml", ".yml", ".json") else \
        get_task(task, data_dir=data_dir if data_dir is not None else config.data_dir)
    if new_task.name in model.config.task_names:
        raise InputError(f"the model already has a task named {new_task.name!r}: give the new task another name")
    if train == "prefix" and not model.config.method.startswith("hyperprompt-"):
        raise InputError(f"--train prefix learns a HyperPrompt model's prompts for the new task directly; this is "
                         f"{model.config.method}: use --train task-rows")
    if train == "prompt" and not model.config.method.startswith("hyperprompt-"):
        raise InputError(f"--train prompt gives a HyperPrompt model soft input tokens for the new task; this is "
                         f"{model.config.method}: use --train task-rows")
    if train in GLOBAL_TRAINED and model.config.method != "hyperprompt-global":
        raise InputError(f"--train {train} needs a HyperPrompt-Global model (task embeddings); this is "
                         f"{model.config.method}: use --train task-rows")
    describes = bool(getattr(model.config, "describes_tasks", False))
    start = start or ("description" if describes else "mean")
    if start == "description" and not describes:
        rows = ("a learned task embedding per task" if model.config.method == "hyperprompt-global"
                else f"{model.config.method}'s per-task parameters, learned per task")
        raise InputError(f"--start description: {loaded.path} names its tasks ({rows}), so a new task starts from "
                         "the mean of the old tasks' rows; --start description needs a description-conditioned "
                         "HyperPrompt-Global model (task_conditioning: description)")
    if train == "none" and describes and start == "mean":
        raise InputError("--train none --start mean would score the average of the old tasks, not the new one: "
                         "train its rows (--train embedding) or start from its description")
    if describes and not new_task.description:
        raise InputError(f"{loaded.path} makes each task's prompts from its description, and {new_task.name} has "
                         "none: add 'description:' to its task spec")
    task_files = [*config.task_files, str(spec_path.resolve())] if spec_path.suffix else list(config.task_files)
    recipe = resolve(dataclasses.replace(config, tasks=[*config.tasks, new_task.name], task_files=task_files),
                     data_dir=data_dir)

    if train == "none" and not describes:
        raise InputError("--train none keeps the new task at the mean of the old tasks' rows; it is meant for a "
                         "description-conditioned model (task_conditioning: description). Choose "
                         f"{', '.join(c for c in TRAIN_CHOICES if c != 'none')}")
    if train == "embedding+prompts" and getattr(model.config, "global_prompts", "per-task") == "shared":
        raise InputError("--train embedding+prompts: this model shares its global prompts across tasks (global_prompts: "
                         "shared), so a task has no prompts of its own; use --train embedding")

    torch.manual_seed(seed)
    first_new = model.config.num_tasks
    try:
        model = with_new_tasks(model, [new_task.name], [new_task.description], direct_prompts=train == "prefix",
                               input_prompts=train == "prompt",
                               mean_rows=("hyperprompt.description_embedding",) if describes and start == "mean" else ())
    except ValueError as error:
        raise InputError(str(error)) from None
    if train == "prefix":
        model.start_direct_prompts([first_new])
    trained_names = {"none": (), "prefix": PREFIX_TRAINED, "prompt": PROMPT_TRAINED, **GLOBAL_TRAINED}
    names = trained_names[train] if train in trained_names else tuple(model.per_task_parameters())
    names = tuple(n for n in names if n in model.per_task_parameters())
    if not names and train != "none":
        raise InputError(f"{model.config.method} has no per-task parameters to learn for a new task (it is told "
                         "the task by its text prefix): train the new task in the mixture instead")
    parameters = train_only_new_rows(model, first_new, names) if names else []
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0) if parameters else None

    lengths = (config.max_input_length, config.max_target_length)
    train_split = encode_task(new_task, "train", tokenizer, *lengths)
    eval_split = encode_task(new_task, config.eval.split, tokenizer, *lengths)
    size = len(train_split) if num_examples is None else min(num_examples, len(train_split))
    if size == 0:
        raise InputError(f"{new_task.name} has no training examples")
    collate = build_collator(model, tokenizer)

    def evaluate() -> dict[str, Any]:
        return evaluate_tasks(model, tokenizer, [new_task], [eval_split], batch_size=config.eval.batch_size,
                              max_new_tokens=config.generation_length, num_beams=config.eval.num_beams,
                              max_examples=eval_examples, show_progress=False)

    before = evaluate()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in range(steps if optimizer is not None else 0):
        rows = torch.randint(size, (min(batch_size, size),), generator=generator).tolist()
        batch = collate([train_split.feature(i, first_new) for i in rows])
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    after = evaluate()
    save_model_dir(out / "final", model, tokenizer, recipe.config, task_specs=recipe.user_task_specs())
    results = {
        "run": str(loaded.path), "task": new_task.name, "task_id": first_new, "method": model.config.method,
        "train": train, "start": start, "trained_parameters": list(names),
        "trained_numbers": sum(p[first_new:].numel() for p in parameters),
        "steps": steps if optimizer is not None else 0, "batch_size": batch_size, "lr": lr, "num_examples": size, "seed": seed,
        "before": before["tasks"][new_task.name], "after": after["tasks"][new_task.name],
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "seconds": time.time() - started, "model_dir": str(out / "final"),
        "warnings": cut_target_warnings([train_split], [eval_split], config.max_target_length),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
