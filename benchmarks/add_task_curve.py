"""How well does a task added by its embedding alone work? (issue 15's measurement, first part)

HyperPrompt-Global (the demo's tiny T5 and recipe, no task prefix) is trained on three synthetic tasks
(first, last, reverse letter(s)); the fourth (``max``: the alphabetically largest letter) is then added with
``add_task`` from N = 16, 64, 256 and all (250) training examples, learning its task embedding only
(32 numbers) or also its global prompts. References: the model trained on all four tasks (upper bound),
the new task's score at the mean-initialised rows (step 0), and chance (the most frequent answer).

    python benchmarks/add_task_curve.py --out runs/add-task-curve      # ~10 min on 2 cores

Writes OUT/curve.json and OUT/curve.png (also copied to docs/figures/add_task_curve.png with --figure).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyperprompt.training import load_config, train  # noqa: E402
from hyperprompt.training.add_task import add_task  # noqa: E402
from hyperprompt.training.demo import DEMO_RECIPE, chance_levels  # noqa: E402

OLD = ["synthetic/first", "synthetic/last", "synthetic/reverse"]
NEW = "synthetic/max"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/add-task-curve")
    parser.add_argument("--steps", type=int, default=1500, help="steps of the base runs")
    parser.add_argument("--add-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-examples", type=int, help="validation examples per task (default: all 200)")
    parser.add_argument("--figure", action="store_true", help="also write docs/figures/add_task_curve.png")
    args = parser.parse_args()
    out = Path(args.out)
    base = {**DEMO_RECIPE, "method": "hyperprompt-global", "task_prefix": False, "max_steps": args.steps,
            "save_every": args.steps, "seed": args.seed,
            "eval": {**DEMO_RECIPE["eval"], "max_examples_per_task": args.eval_examples}}
    results = {"chance": chance_levels(args.seed)[NEW], "settings": vars(args)}
    for name, tasks in (("three-tasks", OLD), ("four-tasks", [*OLD, NEW])):
        if not (out / name / "results.json").is_file():
            shutil.rmtree(out / name, ignore_errors=True)
            with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON report
                train(load_config(base={**base, "tasks": tasks}), out / name)
        results[name] = json.loads((out / name / "results.json").read_text())["final"]["tasks"]
    results["upper_bound"] = results["four-tasks"][NEW]["score"]
    results["curve"] = {}
    for train_what in ("embedding", "embedding+prompts"):
        for n in (16, 64, 256):
            target = out / f"add-{train_what}-{n}"
            if not (target / "results.json").is_file():
                shutil.rmtree(target, ignore_errors=True)
                add_task(out / "three-tasks" / "final", NEW, target, train=train_what, steps=args.add_steps,
                         batch_size=16, lr=1e-2, num_examples=n, seed=args.seed, eval_examples=args.eval_examples)
            added = json.loads((target / "results.json").read_text())
            results["curve"].setdefault(train_what, {})[n] = added["after"]["score"]
            results["step0"] = added["before"]["score"]
    (out / "curve.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({"benchmark": "add_task_curve",
                      **{k: results[k] for k in ("chance", "step0", "upper_bound", "curve")}}, indent=2))
    plot(results, out / "curve.png")
    if args.figure:
        target = Path(__file__).resolve().parents[1] / "docs" / "figures" / "add_task_curve.png"
        shutil.copy(out / "curve.png", target)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.6))
    for train_what, curve in results["curve"].items():
        xs = sorted(curve, key=int)
        axes.plot([int(x) for x in xs], [curve[x] for x in xs], marker="o", label=f"add-task: {train_what}")
    for value, label, style in ((results["upper_bound"], "trained in the mixture (4 tasks)", "--"),
                                (results["step0"], "mean rows, before training", ":"),
                                (results["chance"], "chance (most frequent answer)", "-.")):
        axes.axhline(value, linestyle=style, color="gray", label=label)
    axes.set_xscale("log", base=2)
    axes.set_xlabel("training examples of the new task")
    axes.set_ylabel("accuracy on synthetic/max (%)")
    axes.set_ylim(0, 105)
    axes.legend(fontsize=7, frameon=False)
    axes.set_title("A task added to HyperPrompt-Global by its rows only (t5-tiny)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
