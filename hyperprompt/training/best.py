"""The paper's model selection: the best checkpoint per task (and overall), and the run's ``results.json``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hyperprompt.data import benchmark_score
from hyperprompt.model.config import MethodConfig
from hyperprompt.training.checkpoint import child_path, link_copy, save_model_dir
from hyperprompt.training.evaluate import format_metrics
from hyperprompt.training.recipe import Recipe


def new_best() -> dict[str, Any]:
    """The bookkeeping before any evaluation: ``{"tasks": {name: {step, metrics, score, ...}}, "overall": ...}``."""
    return {"tasks": {}, "overall": None}


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


def save_best(out: Path, names: list[str], model: Any, tokenizer: Any, recipe: Recipe, best: dict[str, Any]) -> None:
    """Write the model once, then hard-link it to ``best/<task>/`` for every improved name."""
    staging = out / "best" / ".current"
    save_model_dir(staging, model, tokenizer, recipe.config, task_specs=recipe.user_task_specs())
    for name in names:
        info = best["overall"] if name == "overall" else best["tasks"][name]
        link_copy(staging, child_path(out / "best", name), extra={"best.json": {"name": name, **info}})
    shutil.rmtree(staging, ignore_errors=True)


def build_results(recipe: Recipe, method: MethodConfig, best: dict[str, Any], last_eval: dict[str, Any], step: int,
                  timing: dict[str, float]) -> dict[str, Any]:
    """``results.json``: final metrics, best per task (the paper's protocol) and best overall.

    ``method`` is the trained model's method config: the recipe's, with what building the model filled in
    (e.g. ``description_dim``).
    """
    config = recipe.config
    best_tasks = best["tasks"]
    return {
        "model": config.model, "method": config.method, "method_label": recipe.method.label,
        "method_settings": method_settings(method),
        "tasks": recipe.task_names, "split": config.eval.split,
        "max_examples_per_task": config.eval.max_examples_per_task,
        "final": last_eval,
        "best_per_task": {
            "tasks": best_tasks,
            "average": benchmark_score({name: r["score"] for name, r in best_tasks.items()}),
        },
        "best_overall": best["overall"],
        "train": {
            "steps": step, "examples": step * config.batch_size, "steps_this_session": timing["steps"],
            "train_seconds_this_session": timing["train_seconds"], "wall_seconds_this_session": timing["wall_seconds"],
            "examples_per_s": timing["steps"] * config.batch_size / max(timing["train_seconds"], 1e-9),
        },
    }


def method_settings(method: MethodConfig) -> dict[str, Any]:
    """The method config that trained, as plain data (without the task names)."""
    data = method.to_dict()
    for key in ("method", "task_names"):
        data.pop(key, None)
    return data


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
