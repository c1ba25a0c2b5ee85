"""New tasks from their descriptions: zero-shot and few-shot on held-out tasks of a described family (issue 15).

The family (:mod:`hyperprompt.data.task_family`: 43 tasks over the same letter strings, each with a sentence
saying what it asks) is split into 35 training tasks and 8 held-out ones whose parts all occur in training
("the letter two after the third letter": *third* and *two after* are seen, together they are not). Three
HyperPrompt-Global models (the demo's tiny T5 from scratch, no task prefix, the same recipe) are trained:

- ``described``: k_tau from the task's description (frozen MiniLM, mean-pooled, through a learned
  projection; one global prompt shared by all tasks), on the 35 training tasks;
- ``named``: a learned k_tau per task (the paper's Global), on the 35 training tasks;
- ``all-named``: the paper's Global on all 43 tasks (the upper bound: each held-out task trained in the mixture).

Each held-out task is then added (``add_task``, everything else frozen, old tasks bit-identical):
zero-shot from its description (``described``, nothing trained); its description embedding fine-tuned from
there on N examples; ``named`` learning its task embedding (mean-initialised) or embedding + global prompts on
N examples; and, as the baselines, prefix tuning of the new task on the same frozen ``named`` model (its
prompts in every layer learned directly, from the generated ones) and prompt tuning (16 soft input tokens,
sampled-vocabulary init; its hyper-prompts those of the mean rows). References: its score in ``all-named``,
and chance (the most frequent validation answer).

    python benchmarks/described_tasks.py --out runs/described-tasks --figure     # ~35 min on 2 cores

Writes OUT/described_tasks.json and OUT/described_tasks.png (with --figure also
docs/figures/described_tasks.png; with --add-lr or --lr, names that say so); finished runs are kept and an
interrupted base run continues from its last checkpoint, so a second call resumes.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import shutil
import statistics
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyperprompt.data import get_task  # noqa: E402
from hyperprompt.data.task_family import HELD_OUT, TASK_NAMES, TRAINING  # noqa: E402
from hyperprompt.training import load_config, train  # noqa: E402
from hyperprompt.training.add_task import add_task  # noqa: E402
from hyperprompt.training.demo import DEMO_RECIPE  # noqa: E402

#: the family's longest target, five letters with spaces (reverse, sort, ...), is 9 bytes + EOS: the demo's 8 cut it
FAMILY_TARGET_LENGTH = 12

MODELS = {
    "described": (TRAINING, {"task_conditioning": "description"}),
    "named": (TRAINING, {}),
    "all-named": (TASK_NAMES, {}),
}
#: curve name -> (base model, add_task's train=, add_task's start=)
CURVES = {
    "described + fine-tuned description embedding": ("described", "embedding", None),
    "described, from the mean description: fine-tuned description embedding": ("described", "embedding", "mean"),
    "named: task embedding": ("named", "embedding", None),
    "named: task embedding + global prompts": ("named", "embedding+prompts", None),
    "named: prefix tuning (every layer's prompts learned directly)": ("named", "prefix", None),
    "named: prompt tuning (16 soft input tokens)": ("named", "prompt", None),
}
#: --curves' short names (described-mean: the described model's new embedding started from the mean of the
#: training tasks' description embeddings instead of its own -- is it the start or the 384 trained numbers?)
CURVE_KEYS = dict(zip(("described", "described-mean", "k", "k+P", "prefix", "prompt"), CURVES, strict=True))


def chance(task_name: str) -> float:
    """Accuracy of always giving the most frequent validation answer (%)."""
    targets = collections.Counter(ex["targets"] for ex in get_task(task_name).load("validation"))
    return 100.0 * max(targets.values()) / sum(targets.values())


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """``--lr`` and ``--set KEY=VALUE`` (method settings of the trained models), shared with family_routing.py."""
    parser.add_argument("--lr", type=float, help=f"AdamW learning rate (default: the demo's {DEMO_RECIPE['optimizer']['lr']})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a method setting (YAML value), e.g. --set hypernetwork_init_scale=0.1")


def setting_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[dict, dict]:
    """(method settings, optimizer) from :func:`add_setting_options`' options."""
    settings = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item!r}: expected KEY=VALUE, e.g. hypernetwork_init_scale=0.1")
        settings[key] = yaml.safe_load(value)
    return settings, {**DEMO_RECIPE["optimizer"], **({"lr": args.lr} if args.lr else {})}


def train_or_resume(config, run: Path) -> None:
    """Train ``config`` into ``run``: continue an interrupted run from its newest checkpoint (exactly, or the
    loop refuses with the reason, e.g. another recipe), start afresh if it never saved one. Progress on stderr."""
    resume = any((run / "checkpoints").glob("step-*"))
    if not resume:
        shutil.rmtree(run, ignore_errors=True)
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON report
        train(config, run, resume=resume)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/described-tasks")
    parser.add_argument("--steps", type=int, default=4000, help="steps of the three base runs")
    parser.add_argument("--add-steps", type=int, default=300)
    parser.add_argument("--examples", type=int, nargs="+", default=[16, 64, 256], help="N, the few-shot sizes")
    parser.add_argument("--held-out", nargs="+", default=list(HELD_OUT), help="held-out tasks to add")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-examples", type=int, help="validation examples per task (default: all 100)")
    parser.add_argument("--figure", action="store_true",
                        help="also write docs/figures/described_tasks[-lr<add-lr>][-base-lr<lr>].png")
    parser.add_argument("--curves", nargs="+", choices=list(CURVE_KEYS), default=list(CURVE_KEYS),
                        help="which few-shot curves to run (default: all)")
    parser.add_argument("--add-lr", type=float, default=1e-2, help="AdamW learning rate of the added task's rows")
    add_setting_options(parser)
    args = parser.parse_args()
    common, optimizer = setting_options(parser, args)
    out = Path(args.out)
    curves = {CURVE_KEYS[key]: CURVES[CURVE_KEYS[key]] for key in args.curves}
    added_dir = out / ("added" if args.add_lr == 1e-2 else f"added-lr{args.add_lr:g}")
    base = {**DEMO_RECIPE, "method": "hyperprompt-global", "task_prefix": False, "max_steps": args.steps,
            "optimizer": optimizer,
            "save_every": args.steps, "seed": args.seed, "mixture": {"rate": "equal"},
            "eval": {**DEMO_RECIPE["eval"], "max_examples_per_task": args.eval_examples},
            "max_target_length": FAMILY_TARGET_LENGTH}
    report: dict = {"benchmark": "described_tasks", "settings": vars(args), "models": {}, "tasks": {}}
    for name, (tasks, settings) in MODELS.items():
        if not (out / name / "results.json").is_file():
            train_or_resume(load_config(base={**base, "tasks": list(tasks), "method_settings": {**common, **settings}}),
                            out / name)
        final = json.loads((out / name / "results.json").read_text())["final"]
        report["models"][name] = {"tasks": len(tasks), "average": final["average"]}
        if name == "all-named":
            upper = {task: final["tasks"][task]["score"] for task in args.held_out}

    def added(model: str, task: str, train_what: str, n: int | None, start: str | None = None) -> dict:
        target = added_dir / task.replace("/", "_") / f"{model}-{train_what}-{n or 'none'}{'-' + start if start else ''}"
        if not (target / "results.json").is_file():
            shutil.rmtree(target, ignore_errors=True)
            with contextlib.redirect_stdout(sys.stderr):
                add_task(out / model / "final", task, target, train=train_what, steps=args.add_steps,
                         batch_size=16, lr=args.add_lr, num_examples=n, seed=args.seed, eval_examples=args.eval_examples,
                         start=start)
        return json.loads((target / "results.json").read_text())

    for task in args.held_out:
        zero_shot = added("described", task, "none", None)
        row = {"chance": chance(task), "upper_bound": upper[task], "zero_shot": zero_shot["after"]["score"],
               "curves": {}}
        for curve, (model, train_what, start) in curves.items():
            for n in args.examples:
                result = added(model, task, train_what, n, start)
                row["curves"].setdefault(curve, {})[str(n)] = result["after"]["score"]
                if model == "named" and train_what != "prompt":  # prompt's "before" has its fresh soft tokens too
                    row["named_mean_rows"] = result["before"]["score"]
                elif start == "mean":
                    row["described_mean_rows"] = result["before"]["score"]
        report["tasks"][task] = row
    rows = report["tasks"].values()
    report["mean"] = {key: statistics.fmean(r[key] for r in rows)
                      for key in ("chance", "upper_bound", "zero_shot", "named_mean_rows", "described_mean_rows") if all(key in r for r in rows)}
    report["mean"]["curves"] = {curve: {str(n): statistics.fmean(r["curves"][curve][str(n)] for r in rows)
                                        for n in args.examples} for curve in curves}
    name = "described_tasks" + added_dir.name.removeprefix("added")  # another --add-lr: its own report
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown(report, args.examples))
    print(json.dumps(report, indent=2))
    plot(report, out / f"{name}.png")
    if args.figure:  # named by both learning rates when not the defaults: each figure of docs/results.md stays its own
        figure = name + ("" if args.lr is None else f"-base-lr{args.lr:g}")
        shutil.copy(out / f"{name}.png", Path(__file__).resolve().parents[1] / "docs" / "figures" / f"{figure}.png")


def markdown(report: dict, examples: list[int]) -> str:
    """Per held-out task and on average: chance, the upper bound, zero-shot, and each curve at each N."""
    curves = list(report["mean"]["curves"])
    header = ["held-out task", "chance", "in the mixture", "zero-shot (described)",
              *(f"{curve}, N={n}" for curve in curves for n in examples)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in [*report["tasks"].items(), ("**mean**", report["mean"])]:
        cells = [name.split("/")[-1], *(f"{row[key]:.1f}" for key in ("chance", "upper_bound", "zero_shot")),
                 *(f"{row['curves'][curve][str(n)]:.1f}" for curve in curves for n in examples)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = report["mean"]
    figure, axes = plt.subplots(figsize=(6.4, 3.8))
    for curve, points in mean["curves"].items():
        xs = sorted(points, key=int)
        axes.plot([int(x) for x in xs], [points[x] for x in xs], marker="o", label=curve)
    for key, label, style in (("upper_bound", "trained in the mixture (all 43 tasks)", "--"),
                              ("zero_shot", "zero-shot from the description", "-"),
                              ("named_mean_rows", "named: mean rows, before training", ":"),
                              ("described_mean_rows", "described: mean description, before training", (0, (1, 4))),
                              ("chance", "chance (most frequent answer)", "-.")):
        if key in mean:  # *_mean_rows: only with a curve that starts there
            axes.axhline(mean[key], linestyle=style, color="gray", label=label)
    axes.set_xscale("log", base=2)
    axes.set_xlabel("training examples of the new task")
    axes.set_ylabel(f"accuracy, mean of {len(report['tasks'])} held-out tasks (%)")
    axes.set_ylim(0, 105)
    axes.legend(fontsize=6.5, frameon=False)
    lr = report["settings"]["add_lr"]
    axes.set_title(f"New tasks for HyperPrompt-Global: described or named (t5-tiny; new rows at lr {lr:g})",
                   fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
