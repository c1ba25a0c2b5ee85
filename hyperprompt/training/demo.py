"""The demo: what task conditioning buys, and HyperPrompt against the paper's MTL, on a CPU in minutes.

The suite (:func:`hyperprompt.data.synthetic_tasks`) has four tasks of different sizes over the same
kind of input -- a few letters: ``first`` (2000 training examples), ``last`` (1000), ``reverse`` (500)
and ``max`` (250). ``first``, ``last`` and ``max`` conflict: the same input has different targets under
each. Three runs train the same tiny model (random init, ByT5 byte tokenizer; T5 by default, ``--model``
swaps in a tiny decoder-only preset such as ``llama-tiny``, where input and target share one sequence) with
the same steps, data order and seed:

- ``t5-no-task-name``: the model on the inputs alone (method ``mtl`` without a task prefix). It cannot tell
  the conflicting tasks apart: the floor that task conditioning lifts.
- ``mtl``: the paper's MTL baseline, with the task name as a text prefix (``first: b a c d``).
- ``hyperprompt-global``: HyperPrompt-Global with its defaults, told the task by its task id (through the
  hyper-prompts), inputs without a prefix.
"""

from __future__ import annotations

import collections
import json
import shutil
import time
from pathlib import Path
from typing import Any

from hyperprompt.data import synthetic_tasks
from hyperprompt.model.presets import TINY_PRESETS, TINY_SIZES
from hyperprompt.training.config import TrainConfig, load_config
from hyperprompt.training.loop import train

#: The demo's runs: name (its folder under OUT) -> method, task prefix, short column title.
RUNS: dict[str, dict[str, Any]] = {
    "t5-no-task-name": {"method": "mtl", "task_prefix": False, "title": "T5, no task name"},
    "mtl": {"method": "mtl", "task_prefix": True, "title": "MTL (prefix)"},
    "hyperprompt-global": {"method": "hyperprompt-global", "task_prefix": False, "title": "HyperPrompt"},
}
DEFAULT_STEPS = 1500

#: The recipe both methods share (the method and its settings aside).
DEMO_RECIPE: dict[str, Any] = {
    "model": "t5-tiny",
    "model_overrides": {"dropout_rate": 0.0},
    "tokenizer": "byt5",
    "tasks": ["synthetic/first", "synthetic/last", "synthetic/reverse", "synthetic/max"],
    "mixture": {"rate": "equal"},
    "max_input_length": 16,
    "max_target_length": 8,
    "batch_size": 32,
    "optimizer": {"name": "adamw", "lr": 3.0e-3},
    "schedule": {"name": "linear", "warmup_steps": 50, "min_lr_ratio": 0.1},
    "max_grad_norm": 1.0,
    "log_every": 100,
    "eval": {"batch_size": 200},
    "num_threads": 1,
}
#: HyperPrompt with its defaults: Global, prompts in both stacks (l_enc 16, l_dec 6).
HYPERPROMPT_SETTINGS: dict[str, Any] = {}


def demo_config(run: str, steps: int, seed: int = 0, model: str = "t5-tiny") -> TrainConfig:
    """The demo recipe of one of :data:`RUNS` (``t5-no-task-name``, ``mtl`` or ``hyperprompt-global``) on the
    tiny preset ``model``."""
    if model not in TINY_PRESETS:
        raise ValueError(f"the demo trains a tiny preset; choose one of {', '.join(TINY_PRESETS)}")
    method, prefix = RUNS[run]["method"], RUNS[run]["task_prefix"]
    recipe = {**DEMO_RECIPE, "model": model, "method": method, "task_prefix": prefix, "max_steps": steps,
              "save_every": steps, "seed": seed}
    if model not in TINY_SIZES:  # the causal presets have no dropout to switch off
        recipe["model_overrides"] = {}
    if method.startswith("hyperprompt"):
        recipe["method_settings"] = HYPERPROMPT_SETTINGS
    return load_config(base=recipe)


def run_label(config: TrainConfig) -> str:
    """What a run is: the method with its distinguishing settings and how it is told the task."""
    if config.method == "mtl":
        return ("mtl with the task name as a text prefix (the paper's MTL baseline)" if config.task_prefix
                else "mtl on inputs without a task prefix")
    return f"{config.method_config(config.tasks).label}, task id through the hyper-prompts, no task prefix"


def chance_levels(seed: int = 0) -> dict[str, float]:
    """Per task, the accuracy of always answering the most frequent validation target (in %):
    the best a model that ignores its input can do."""
    levels = {}
    for task in synthetic_tasks(seed, register=False):
        targets = collections.Counter(ex["targets"] for ex in task.load("validation"))
        levels[task.name] = 100.0 * max(targets.values()) / sum(targets.values())
    return levels


def run_demo(out_dir: str | Path = "runs/demo", steps: int = DEFAULT_STEPS, seed: int = 0,
             plot: bool = True, model: str = "t5-tiny") -> dict[str, Any]:
    """Train the three :data:`RUNS` on the synthetic suite (on the tiny preset ``model``), compare them per task.

    Writes ``out_dir/<run>/`` (each a full run directory), ``out_dir/results.json`` and
    ``out_dir/demo.png``; returns the content of ``results.json``.
    """
    out = Path(out_dir)
    started = time.time()
    chance = chance_levels(seed)
    scores: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    runs: dict[str, dict[str, Any]] = {}
    for run in RUNS:
        run_started = time.time()
        if (out / run / "config.yaml").is_file():  # an earlier demo run: start afresh
            shutil.rmtree(out / run)
        config = demo_config(run, steps, seed, model)
        runs[run] = {"title": RUNS[run]["title"], "label": run_label(config), "method": config.method,
                     "method_label": config.method_config(config.tasks).label,
                     "task_prefix": config.task_prefix, "dir": str(out / run)}
        print(f"\n== {runs[run]['title']}: {runs[run]['label']} ({run}): {steps} steps ==", flush=True)
        results = train(config, out / run)
        seconds[run] = time.time() - run_started
        scores[run] = {name: r["score"] for name, r in results["final"]["tasks"].items()}
    summary = {
        "model": model,
        "steps": steps,
        "seed": seed,
        "tasks": {name: {"chance": chance[name], **{run: scores[run][name] for run in RUNS}} for name in chance},
        "average": {run: sum(scores[run].values()) / len(scores[run]) for run in RUNS},
        "seconds": {**seconds, "total": time.time() - started},
        "runs": runs,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n" + demo_table(summary))
    if plot:
        plot_demo(summary, out / "demo.png")
    print(f"\nwrote {out / 'results.json'}" + (f" and {out / 'demo.png'}" if plot else "")
          + f"; the runs are in {', '.join(str(out / run) for run in RUNS)} "
          f"({summary['seconds']['total']:.0f} s in all)")
    return summary


def demo_table(summary: dict[str, Any]) -> str:
    """Per task: chance and each run's score (accuracy / exact match, %), then what each column is."""
    widths = {run: max(8, len(RUNS[run]["title"]) + 2) for run in RUNS}
    lines = [f"{'task':<20}{'chance':>8}" + "".join(f"{RUNS[run]['title']:>{widths[run]}}" for run in RUNS)]
    for name, row in summary["tasks"].items():
        lines.append(f"{name:<20}{row['chance']:>8.1f}" + "".join(f"{row[run]:>{widths[run]}.1f}" for run in RUNS))
    average = summary["average"]
    lines.append(f"{'average':<20}{'':>8}" + "".join(f"{average[run]:>{widths[run]}.1f}" for run in RUNS))
    lines += [f"  {RUNS[run]['title']}: {summary['runs'][run]['label']}" for run in RUNS]
    return "\n".join(lines)


def plot_demo(summary: dict[str, Any], path: Path) -> None:
    """A grouped bar chart: per task, chance and each run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["tasks"])
    colors = {"t5-no-task-name": "#8c8c8c", "mtl": "#4c72b0", "hyperprompt-global": "#dd8452"}
    series = [("chance (most frequent answer)", "chance", "#d9d9d9")]
    # MTL's two runs by what they are told; HyperPrompt by its settings
    series += [(info["title"] if info["method"] == "mtl" else info["method_label"], run, colors[run])
               for run, info in summary["runs"].items()]
    figure, axes = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(series)
    for i, (label, key, color) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(names))]
        axes.bar(xs, [summary["tasks"][n][key] for n in names], width, label=label, color=color)
    axes.set_xticks(range(len(names)), [n.split("/", 1)[-1] for n in names])
    axes.set_ylabel("validation accuracy / exact match (%)")
    axes.set_ylim(0, 125)
    axes.set_title(f"Synthetic conflicting tasks, {summary.get('model', 't5-tiny')}, {summary['steps']} steps")
    axes.legend(loc="upper center", ncol=2, fontsize=7, frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
