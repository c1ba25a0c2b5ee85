"""`hyperprompt` entry point: one module per subcommand, each with ``add_parser`` and ``run``.

This is the one error boundary: a :class:`~hyperprompt.errors.HyperPromptError` (a problem with what the
user gave) prints ``error: <message>`` and returns its exit code; Ctrl-C returns 130; any other exception
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hyperprompt.errors import HyperPromptError, TrainingInterrupted

#: subcommand modules under hyperprompt.cli, in the order `--help` lists them
COMMANDS = ["train", "evaluate", "predict", "compare", "params", "demo", "analyze", "add-task"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyperprompt",
        description="Multi-task fine-tuning of T5 with HyperPrompt (He et al., ICML 2022) and its baselines.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"hyperprompt.cli.{name.replace('-', '_')}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except HyperPromptError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except TrainingInterrupted as stop:
        print(str(stop), file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
