"""Can the tiny testbed of issue 15 tell tasks apart that conflict on the same inputs? (family tasks, t5-tiny)

The held-out tasks of ``benchmarks/described_tasks.py`` that nothing learned were the positional ones ("the
third letter", "the letter after the second letter", ...). This runs the demo's t5-tiny recipe (from scratch,
equal mixing) on a subset of the family (:mod:`hyperprompt.data.task_family`) with each method given here,
and prints the validation accuracy per task, against chance (the most frequent answer):

- ``mtl``: the task's name as a text prefix (``third c a h b e``), the paper's MTL baseline;
- ``mtl-no-prefix``: no task information at all (the floor: what the inputs alone allow);
- any other method (``hyperprompt-global``, ``hyperprompt-sep``, ``prefix-tuning``, ...): no prefix, the task
  known only through the method's task-conditioned weights (how the issue-15 models were trained).

    python benchmarks/family_routing.py --out runs/family-routing                     # ~2 min per run
    python benchmarks/family_routing.py --tasks first second third fourth last --steps 10000
    python benchmarks/family_routing.py --methods hyperprompt-global --lr 1e-3 --set hypernetwork_init_scale=0.1

Writes OUT/family_routing.json (also printed); finished runs are kept, so a second call resumes (a run is
kept whatever its settings: give other settings another --out).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.described_tasks import (  # noqa: E402
    FAMILY_TARGET_LENGTH,
    add_setting_options,
    chance,
    setting_options,
    train_or_resume,
)
from hyperprompt.data.task_family import family_tasks  # noqa: E402
from hyperprompt.training import load_config  # noqa: E402
from hyperprompt.training.demo import DEMO_RECIPE  # noqa: E402

POSITIONAL = ["first", "second", "third", "fourth", "last"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/family-routing")
    parser.add_argument("--tasks", nargs="+", default=POSITIONAL, help="family rules (default: the positional five)")
    parser.add_argument("--methods", nargs="+", default=["mtl", "hyperprompt-global"])
    parser.add_argument("--model", default="t5-tiny", help="a tiny preset (t5-tiny, t5-mini, ...)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--train-size", type=int, default=2000, help="training examples per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-examples", type=int, help="validation examples per task (default: all 100)")
    add_setting_options(parser)  # --lr, --set KEY=VALUE (method settings, not for mtl)
    args = parser.parse_args()
    settings, optimizer = setting_options(parser, args)
    out = Path(args.out)
    names = [task.name for task in family_tasks(args.tasks, train_size=args.train_size, seed=args.seed)]
    report: dict = {"benchmark": "family_routing", "settings": vars(args),
                    "chance": {name: chance(name) for name in names}, "runs": {}}
    for method in args.methods:
        run = out / method
        if not (run / "results.json").is_file():
            recipe = {**DEMO_RECIPE, "model": args.model, "method": method.removesuffix("-no-prefix"), "task_prefix": method == "mtl",
                      "tasks": names,
                      "max_steps": args.steps, "save_every": args.steps, "seed": args.seed,
                      "mixture": {"rate": "equal"},
                      "method_settings": {} if method.startswith("mtl") else settings,
                      "optimizer": optimizer,
                      "eval": {**DEMO_RECIPE["eval"], "max_examples_per_task": args.eval_examples},
                      "max_target_length": FAMILY_TARGET_LENGTH}
            train_or_resume(load_config(base=recipe), run)
        final = json.loads((run / "results.json").read_text())["final"]
        report["runs"][method] = {name: final["tasks"][name]["score"] for name in names}
    (out / "family_routing.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
