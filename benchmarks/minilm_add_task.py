"""A real task added after training, on the pretrained MiniLM backbone (issue 15, real data).

HyperPrompt-Global on MiniLM-BERT2BERT (the ``hyperprompt-global`` run of ``configs/compare-minilm.yaml``:
full fine-tuning, the same settings) is trained on the recipe's GLUE / SuperGLUE tasks minus one
(``--held-out``, default SST-2), then the held-out task is added with ``add_task`` -- everything else frozen,
old tasks bit-identical -- from its first N training examples, learning:

- its task embedding k_tau (``embedding``: t' numbers), or k_tau and its global prompts P_tau
  (``embedding+prompts``), both started from the mean of the trained rows;
- the baselines on the same frozen model: its prompts in every layer learned directly (``prefix``, prefix
  tuning of the new task) and 16 soft input tokens before its input (``prompt``, prompt tuning).

References: the majority class, and with ``--reference RUN`` the task's score in a run that trained it in
the mixture from the start (e.g. the comparison's ``hyperprompt-global`` seed-0 run) at the same step.

    python benchmarks/minilm_add_task.py --data-dir ../shared/data --out runs/minilm-add-task \
        --reference runs/compare-minilm/runs/hyperprompt-global/seed-0

Writes OUT/minilm_add_task.json and .md; finished runs are kept, so a second call resumes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hyperprompt.training import train  # noqa: E402
from hyperprompt.training.add_task import add_task  # noqa: E402
from hyperprompt.training.compare import load_comparison, majority_row  # noqa: E402

TRAIN = {
    "task embedding": "embedding",
    "task embedding + global prompts": "embedding+prompts",
    "prefix tuning (every layer's prompts learned directly)": "prefix",
    "prompt tuning (16 soft input tokens)": "prompt",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "configs" / "compare-minilm.yaml"))
    parser.add_argument("--data-dir", help="folder of the official task files (default: the recipe's)")
    parser.add_argument("--out", default="runs/minilm-add-task")
    parser.add_argument("--held-out", default="glue/sst2")
    parser.add_argument("--steps", type=int, default=1000, help="steps of the base run")
    parser.add_argument("--add-steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-2, help="add_task's AdamW lr (the tiny benchmarks' value)")
    parser.add_argument("--examples", type=int, nargs="+", default=[256, 64], help="N, the few-shot sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-examples", type=int, help="validation examples per task (default: all)")
    parser.add_argument("--reference", help="a run that trained the held-out task in the mixture")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the base run's recipe, e.g. --set num_threads=1 (repeatable)")
    args = parser.parse_args()
    out = Path(args.out)
    overrides = [*args.set, *([f"data_dir={args.data_dir}"] if args.data_dir else [])]
    comparison = load_comparison(args.recipe, methods=["hyperprompt-global"], overrides=overrides)
    config = comparison.run_config("hyperprompt-global", args.seed)
    if args.held_out not in config.tasks:
        raise SystemExit(f"--held-out {args.held_out}: not among the recipe's tasks ({', '.join(config.tasks)})")
    config = dataclasses.replace(config, tasks=[t for t in config.tasks if t != args.held_out],
                                 max_steps=args.steps, eval_every=args.steps, save_every=args.steps,
                                 eval=dataclasses.replace(config.eval, max_examples_per_task=args.eval_examples))
    base = out / "base"
    if not (base / "results.json").is_file():
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON report
            train(config, base, resume=(base / "checkpoints").is_dir())
    majority = {f"{task}/{metric}": value[0] for (task, metric), value in majority_row(comparison)["metrics"].items()
                if task == args.held_out}
    report: dict = {"benchmark": "minilm_add_task", "settings": vars(args), "held_out": args.held_out,
                    "base_average": json.loads((base / "results.json").read_text())["final"]["average"],
                    "majority": majority, "curves": {}}
    if args.reference:
        for line in (Path(args.reference) / "metrics.jsonl").read_text().splitlines():
            record = json.loads(line)
            if record["step"] == args.steps:
                report["in_the_mixture"] = record["tasks"][args.held_out]["metrics"]
    for n in args.examples:
        for curve, what in TRAIN.items():
            target = out / "added" / f"{what}-{n}"
            if not (target / "results.json").is_file():
                shutil.rmtree(target, ignore_errors=True)
                with contextlib.redirect_stdout(sys.stderr):
                    add_task(base / "final", args.held_out, target, train=what, steps=args.add_steps, batch_size=16,
                             lr=args.lr, num_examples=n, seed=args.seed, data_dir=args.data_dir,
                             eval_examples=args.eval_examples)
            result = json.loads((target / "results.json").read_text())
            report["curves"].setdefault(curve, {})[str(n)] = result["after"]["metrics"]
            report["mean_rows"] = result["before"]["metrics"]
            (out / "minilm_add_task.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "minilm_add_task.md").write_text(markdown(report))
    print(json.dumps(report, indent=2))


def markdown(report: dict) -> str:
    """One row per way of adding the task (and the references), one column per N."""
    sizes = sorted({n for points in report["curves"].values() for n in points}, key=int)

    def cell(metrics: dict | None) -> str:
        return "" if metrics is None else " / ".join(f"{value:.1f}" for value in metrics.values())

    lines = [f"| {report['held_out']} added after training | " + " | ".join(f"N = {n}" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for curve, points in report["curves"].items():
        lines.append(f"| {curve} | " + " | ".join(cell(points.get(n)) for n in sizes) + " |")
    lines.append(f"| mean rows, before training | {cell(report.get('mean_rows'))} |" + " |" * (len(sizes) - 1))
    lines.append(f"| majority class | {' / '.join(f'{v:.1f}' for v in report['majority'].values())} |"
                 + " |" * (len(sizes) - 1))
    if "in_the_mixture" in report:
        lines.append(f"| trained in the mixture from the start | {cell(report['in_the_mixture'])} |" + " |" * (len(sizes) - 1))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
