"""`hyperprompt evaluate CKPT`: official metrics of a saved model on its tasks' validation sets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hyperprompt.cli.common import (
    add_logging_flag,
    device_name,
    non_negative_int,
    positive_int,
    setup_logging,
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a saved model with the official metrics",
        description="Generate on each task's evaluation split and score it with the official metrics. CKPT is a "
        "run directory or one of its model directories (final/, best/<task>/, checkpoints/step-N/). Settings "
        "default to the recipe the model was trained with, so the numbers equal those recorded in training.",
    )
    parser.add_argument("checkpoint", metavar="CKPT")
    parser.add_argument("--data-dir", help="folder of the official task files (default: the recipe's)")
    parser.add_argument("--tasks", help="comma-separated subset of the model's tasks (default: all)")
    parser.add_argument("--split", help="split to evaluate (default: the recipe's eval.split)")
    parser.add_argument("--max-examples", type=non_negative_int,
                        help="examples per task; 0 = all (default: the recipe's eval.max_examples_per_task)")
    parser.add_argument("--batch-size", type=positive_int, help="generation batch size")
    parser.add_argument("--num-beams", type=positive_int, help="beam size (default: the recipe's)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--out", metavar="FILE", help="write the results as JSON here")
    parser.add_argument("--predictions", metavar="FILE", help="also write every prediction as JSON lines here")
    add_logging_flag(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from hyperprompt.training.evaluate import evaluate_checkpoint, format_metrics

    max_examples: Any = "recipe" if args.max_examples is None else (args.max_examples or None)
    results = evaluate_checkpoint(
        args.checkpoint, data_dir=args.data_dir, split=args.split, max_examples=max_examples,
        tasks=[t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None,
        batch_size=args.batch_size, num_beams=args.num_beams, device=device_name(args.device),
        return_predictions=bool(args.predictions))
    predictions = results.pop("predictions", None)
    width = max(len(name) for name in results["tasks"]) + 2
    print(f"{results['checkpoint']} ({results['split']})")
    print(f"{'task':<{width}}{'n':>6}  {'score':>7}  metrics")
    for name, result in results["tasks"].items():
        print(f"{name:<{width}}{result['num_examples']:>6}  {result['score']:>7.2f}  {format_metrics(result['metrics'])}")
    print(f"{'average':<{width}}{'':>6}  {results['average']:>7.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    if predictions is not None:
        with open(args.predictions, "w") as f:
            for name, texts in predictions.items():
                for index, text in enumerate(texts):
                    f.write(json.dumps({"task": name, "index": index, "prediction": text}) + "\n")
        print(f"wrote {args.predictions}")
    return 0
