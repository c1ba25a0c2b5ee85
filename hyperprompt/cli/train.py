"""`hyperprompt train CONFIG --out DIR`: train a multi-task model from a YAML recipe."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hyperprompt.cli.common import add_logging_flag, positive_int, setup_logging


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a multi-task model from a YAML recipe",
        description="Train a multi-task T5 (HyperPrompt or a baseline) from a YAML recipe. Writes DIR/results.json, "
        "DIR/metrics.jsonl, checkpoints, DIR/best/<task>/ and DIR/final/. Multi-GPU: "
        "accelerate launch -m hyperprompt.cli.main train ...",
    )
    parser.add_argument("config", nargs="?", help="YAML recipe (optional with --resume: DIR/config.yaml)")
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set optimizer.lr=3e-4 --set tasks=[cb,copa] (repeatable)")
    parser.add_argument("--data-dir", help="folder of the official GLUE/SuperGLUE files (same as --set data_dir=...)")
    parser.add_argument("--max-steps", type=positive_int, help="same as --set max_steps=N")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest good checkpoint in DIR (a run without one starts over)")
    parser.add_argument("--resume-from", type=positive_int, metavar="STEP",
                        help="continue from checkpoints/step-STEP (implies --resume); later checkpoints are "
                        "moved to DIR/abandoned/")
    add_logging_flag(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from accelerate import PartialState

    from hyperprompt.errors import ConfigError
    from hyperprompt.training import load_config, train

    resume = args.resume or args.resume_from is not None
    config_path = args.config
    if config_path is None:
        saved = Path(args.out) / "config.yaml"
        if not (resume and saved.is_file()):
            raise ConfigError("give a recipe: hyperprompt train CONFIG --out DIR (or --resume a run that has "
                              "DIR/config.yaml)")
        config_path = saved
    overrides = list(args.set)
    if args.data_dir:
        overrides.append(f"data_dir={args.data_dir}")
    if args.max_steps is not None:
        overrides.append(f"max_steps={args.max_steps}")
    config = load_config(config_path, overrides)
    train(config, args.out, resume=resume, resume_from=args.resume_from)
    PartialState().destroy_process_group()  # several processes: tear down while all are here
    return 0
