"""HyperPrompt-Global's stability under Adafactor: parameter scaling (T5's default) on / off, Global with
its default stability changes and paper-exact, on the synthetic suite with task prefixes (a tiny T5 from
scratch, one CPU thread, ~30 s a run).

For each (lr, seed): four runs {default, paper_exact} x {scale_parameter false, true}, the recipe of
``configs/compare-synthetic.yaml`` with Adafactor at a constant LR. Prints JSON: per run the average
validation score, the training loss at a few steps, and the std of the generated hyper-prompts at the
end (a diverging Global shows as a std of thousands).

    python benchmarks/global_stability.py --lr 1e-3 1e-2 --seeds 0 1 --out runs/global-stability
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

from hyperprompt.training import load_config, load_run_checkpoint, train

RECIPE = {
    "model": "t5-tiny", "tokenizer": "byt5",
    "tasks": ["synthetic/first", "synthetic/last", "synthetic/reverse", "synthetic/max"],
    "task_prefix": True, "max_input_length": 32, "max_target_length": 12, "batch_size": 32,
    "keep_last": 1, "eval": {"batch_size": 200}, "method": "hyperprompt-global", "num_threads": 1,
}
VARIANTS = {"default": {}, "paper-exact": {"paper_exact": True}}


def run(out: Path, lr: float, seed: int, variant: str, scale: bool, steps: int, eval_examples: int | None) -> dict:
    config = load_config(base={
        **RECIPE, "method_settings": VARIANTS[variant], "seed": seed, "max_steps": steps, "save_every": steps,
        "log_every": max(1, steps // 20), "eval": {**RECIPE["eval"], "max_examples_per_task": eval_examples},
        "optimizer": {"name": "adafactor", "lr": lr, "scale_parameter": scale}})
    started = time.time()
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON report
        results = train(config, out)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    model = load_run_checkpoint(out / "final").model
    with torch.no_grad():
        tables = model.hyperprompt(torch.arange(len(RECIPE["tasks"])))
    marks = sorted({log[0]["step"], log[len(log) // 2]["step"], log[-1]["step"]})
    return {
        "lr": lr, "seed": seed, "variant": variant, "scale_parameter": scale, "label": model.config.label,
        "average": results["final"]["average"],
        "tasks": {name: r["score"] for name, r in results["final"]["tasks"].items()},
        "loss": {r["step"]: r["loss"] for r in log if r["step"] in marks},
        "prompt_std": {stack: table.std().item() for stack, table in tables.items()},
        "seconds": time.time() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3, 1e-2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-examples", type=int, default=None, help="per task (default: all 200)")
    parser.add_argument("--out", default="runs/global-stability")
    args = parser.parse_args()
    rows = []
    for lr in args.lr:
        for seed in args.seeds:
            for variant in VARIANTS:
                for scale in (False, True):
                    out = Path(args.out) / f"lr{lr:g}-seed{seed}-{variant}-scale{int(scale)}"
                    rows.append(run(out, lr, seed, variant, scale, args.steps, args.eval_examples))
    print(json.dumps({"benchmark": "global_stability", "steps": args.steps, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
