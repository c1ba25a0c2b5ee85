"""The demo: HyperPrompt vs plain multi-task T5 on a synthetic suite, offline, in minutes on a CPU.

The suite (:func:`hyperprompt.data.synthetic_tasks`) has four tasks of different sizes over the same
kind of input -- a few letters -- with no task name in the input: ``first`` (2000 training examples),
``last`` (1000), ``reverse`` (500) and ``max`` (250). ``first``, ``last`` and ``max`` conflict: the
same input has different targets under each. Plain MTL sees only the input, so it cannot tell the
tasks apart; HyperPrompt is told the task through its hyper-prompts. Both train the same tiny T5
(random init, ByT5 byte tokenizer) with the same steps, data order and seed. ``--model`` swaps in a tiny
decoder-only preset (``llama-tiny``, ``qwen2-tiny``, ...): input and target then share one sequence.
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

METHODS = {"mtl": "MTL", "hyperprompt-global": "HyperPrompt"}
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


def demo_config(method: str, steps: int, seed: int = 0, model: str = "t5-tiny") -> TrainConfig:
    """The demo recipe for ``method`` (``mtl`` or ``hyperprompt-global``) on the tiny preset ``model``."""
    if model not in TINY_PRESETS:
        raise ValueError(f"the demo trains a tiny preset; choose one of {', '.join(TINY_PRESETS)}")
    recipe = {**DEMO_RECIPE, "model": model, "method": method, "max_steps": steps, "save_every": steps, "seed": seed}
    if model not in TINY_SIZES:  # the causal presets have no dropout to switch off
        recipe["model_overrides"] = {}
    if method.startswith("hyperprompt"):
        recipe["method_settings"] = HYPERPROMPT_SETTINGS
    return load_config(base=recipe)


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
    """Train MTL and HyperPrompt on the synthetic suite, compare them per task.

    Writes ``out_dir/<method>/`` (each a full run directory), ``out_dir/results.json`` and
    ``out_dir/demo.png``; returns the content of ``results.json``.
    """
    out = Path(out_dir)
    started = time.time()
    chance = chance_levels(seed)
    scores: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    for method in METHODS:
        run_started = time.time()
        if (out / method / "config.yaml").is_file():  # an earlier demo run: start afresh
            shutil.rmtree(out / method)
        print(f"\n== {METHODS[method]} ({method}): {steps} steps ==", flush=True)
        results = train(demo_config(method, steps, seed, model), out / method)
        seconds[method] = time.time() - run_started
        scores[method] = {name: r["score"] for name, r in results["final"]["tasks"].items()}
    summary = {
        "model": model,
        "steps": steps,
        "seed": seed,
        "tasks": {name: {"chance": chance[name], **{m: scores[m][name] for m in METHODS}} for name in chance},
        "average": {m: sum(scores[m].values()) / len(scores[m]) for m in METHODS},
        "seconds": {**seconds, "total": time.time() - started},
        "runs": {m: str(out / m) for m in METHODS},
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n" + demo_table(summary))
    if plot:
        plot_demo(summary, out / "demo.png")
    print(f"\nwrote {out / 'results.json'}" + (f" and {out / 'demo.png'}" if plot else "")
          + f"; the two runs are in {out / 'mtl'} and {out / 'hyperprompt-global'} "
          f"({summary['seconds']['total']:.0f} s in all)")
    return summary


def demo_table(summary: dict[str, Any]) -> str:
    """Per task: chance, MTL and HyperPrompt scores (accuracy / exact match, %)."""
    lines = [f"{'task':<20}{'chance':>8}{'MTL':>8}{'HyperPrompt':>13}"]
    for name, row in summary["tasks"].items():
        lines.append(f"{name:<20}{row['chance']:>8.1f}{row['mtl']:>8.1f}{row['hyperprompt-global']:>13.1f}")
    average = summary["average"]
    lines.append(f"{'average':<20}{'':>8}{average['mtl']:>8.1f}{average['hyperprompt-global']:>13.1f}")
    return "\n".join(lines)


def plot_demo(summary: dict[str, Any], path: Path) -> None:
    """A grouped bar chart: per task, chance / MTL / HyperPrompt."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["tasks"])
    series = [("chance", "chance", "#bbbbbb"), ("MTL", "mtl", "#4c72b0"),
              ("HyperPrompt", "hyperprompt-global", "#dd8452")]
    figure, axes = plt.subplots(figsize=(7, 3.6))
    width = 0.27
    for i, (label, key, color) in enumerate(series):
        xs = [j + (i - 1) * width for j in range(len(names))]
        axes.bar(xs, [summary["tasks"][n][key] for n in names], width, label=label, color=color)
    axes.set_xticks(range(len(names)), [n.split("/", 1)[-1] for n in names])
    axes.set_ylabel("validation accuracy / exact match (%)")
    axes.set_ylim(0, 115)
    axes.set_title(f"Synthetic conflicting tasks, {summary.get('model', 't5-tiny')}, {summary['steps']} steps")
    axes.legend(loc="upper center", ncol=3, fontsize=8, frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
