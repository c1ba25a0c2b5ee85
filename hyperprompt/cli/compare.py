"""`hyperprompt compare CONFIG --methods m1,m2 --seeds N --out DIR`: train several methods alike, tabulate."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hyperprompt.cli.common import add_logging_flag, positive_int, setup_logging


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare",
        help="train several methods with the same recipe and seeds; write a comparison table",
        description="Train each method with the same data, steps and seeds (one run per method and seed under "
        "DIR/runs/<method>/seed-<seed>/), evaluate with the official metrics and write DIR/comparison.md and "
        "DIR/comparison.csv (mean ± std over seeds, added parameters, step time relative to mtl). Finished runs are "
        "kept: calling it again resumes an interrupted comparison or adds methods / seeds.",
    )
    parser.add_argument("config", help="YAML recipe: a training recipe with an optional 'compare' section")
    parser.add_argument("--methods", help="comma-separated method names (default: the recipe's compare.methods)")
    parser.add_argument("--seeds", type=positive_int, help="number of seeds (default: the recipe's compare.seeds, else 1)")
    parser.add_argument("--out", help="output directory (default: runs/compare-<config name>)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training key for every run, e.g. --set max_steps=100; method_settings.KEY=VALUE "
                             "sets a method setting of every compared method, over compare.method_settings "
                             "(repeatable)")
    parser.add_argument("--data-dir", help="folder of the official GLUE/SuperGLUE files (same as --set data_dir=...)")
    parser.add_argument("--archive", metavar="DIR",
                        help="also keep every finished run's results, logs and configs (a few kB, no weights) in DIR, "
                        "e.g. a folder under version control, and count the finished runs found there as finished: a "
                        "comparison spanning sessions then survives the loss of --out")
    add_logging_flag(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from hyperprompt.training.compare import load_comparison, run_comparison

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    overrides = list(args.set) + ([f"data_dir={args.data_dir}"] if args.data_dir else [])
    out = Path(args.out) if args.out else Path("runs") / f"compare-{Path(args.config).stem}"
    comparison = load_comparison(args.config, methods, args.seeds, overrides)
    if run_comparison(comparison, out, archive=args.archive) is None:
        return 0  # runs left to other compare processes: the one that finishes last writes the tables
    print((out / "comparison.md").read_text())
    print(f"wrote {out / 'comparison.md'} and {out / 'comparison.csv'}")
    return 0
