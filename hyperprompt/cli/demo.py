"""`hyperprompt demo`: T5 without a task name, the paper's MTL and HyperPrompt on a synthetic suite, offline."""

from __future__ import annotations

import argparse
from typing import Any

from hyperprompt.cli.common import add_logging_flag, positive_int, setup_logging


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from hyperprompt.model.presets import TINY_PRESETS
    from hyperprompt.training.demo import DEFAULT_STEPS

    parser = subparsers.add_parser(
        "demo",
        help="train T5 without a task name, MTL with task prefixes and HyperPrompt on synthetic conflicting "
        "tasks (offline, ~2 min on a CPU)",
        description="Train the same tiny T5 three ways -- without a task name, as the paper's MTL (task name as a "
        "text prefix), with HyperPrompt-Global (task id) -- on four synthetic tasks of different sizes whose "
        "targets conflict (generated in code, nothing is downloaded). "
        "Prints a per-task table and writes OUT/results.json and OUT/demo.png.",
    )
    parser.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    parser.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, help=f"training steps per model (default {DEFAULT_STEPS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="t5-tiny", choices=TINY_PRESETS,
                        help="the tiny preset both methods train (default t5-tiny; llama-tiny etc.: decoder-only)")
    parser.add_argument("--no-plot", action="store_true", help="skip demo.png")
    add_logging_flag(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from hyperprompt.training.demo import run_demo

    run_demo(args.out, steps=args.steps, seed=args.seed, plot=not args.no_plot, model=args.model)
    return 0
