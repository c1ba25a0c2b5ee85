"""`hyperprompt add-task RUN --task SPEC --out DIR`: add a task to a trained model by learning only its rows."""

from __future__ import annotations

import argparse
from typing import Any

from hyperprompt.cli.common import add_logging_flag, non_negative_int, positive_int, setup_logging


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from hyperprompt.training.add_task import START_CHOICES, TRAIN_CHOICES

    parser = subparsers.add_parser(
        "add-task",
        help="add a task to a trained model, training only the new task's own parameters",
        description="Extend a trained model (a run or model directory) with a new task: the new task's rows of the "
        "per-task parameters start as the mean of the old ones and are the only weights trained (HyperPrompt-Global: "
        "its task embedding, optionally its global prompts; a description-conditioned Global starts the new task from "
        "its description); the old tasks' outputs stay bit-identical. Writes "
        "OUT/final/ (old tasks + the new one) and OUT/results.json (the new task's scores before and after).",
    )
    parser.add_argument("run", metavar="RUN", help="a run directory or one of its model directories")
    parser.add_argument("--task", required=True, help="a task spec (YAML / JSON, docs/data.md) or a built-in task")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--train", default="embedding", choices=TRAIN_CHOICES,
                        help="what to learn (default: embedding; prefix: the new task's prompts in every layer, learned "
                        "directly, the prefix-tuning baseline; prompt: soft input tokens for it, the prompt-tuning "
                        "baseline; task-rows for methods other than HyperPrompt; none: a "
                        "description-conditioned Global's zero-shot prompts, from the task's description alone)")
    parser.add_argument("--start", choices=START_CHOICES,
                        help="where the new rows start: description (a description-conditioned model's default: the "
                        "task's own description) or mean (the mean of the old tasks' rows; a named model's only start)")
    parser.add_argument("--steps", type=positive_int, default=300)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--examples", type=positive_int, help="train on the first N examples only (few-shot)")
    parser.add_argument("--eval-examples", type=non_negative_int, help="validation examples to score (0 = all)")
    parser.add_argument("--data-dir", help="folder of the official task files (built-in tasks)")
    parser.add_argument("--seed", type=int, default=0)
    add_logging_flag(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from hyperprompt.training.add_task import add_task

    results = add_task(args.run, args.task, args.out, train=args.train, steps=args.steps, batch_size=args.batch_size,
                       lr=args.lr, num_examples=args.examples, seed=args.seed, data_dir=args.data_dir,
                       eval_examples=args.eval_examples or None, start=args.start)
    for warning in results["warnings"]:
        print(warning)
    print(f"{results['task']} (task id {results['task_id']}) added to {results['method']} by training "
          f"{results['trained_numbers']:,} numbers ({', '.join(results['trained_parameters'])}), "
          f"{results['steps']} steps on {results['num_examples']} examples: score "
          f"{results['before']['score']:.2f} -> {results['after']['score']:.2f}")
    print(f"wrote {results['model_dir']}/ and {args.out}/results.json")
    return 0
