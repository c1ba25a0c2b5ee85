"""`hyperprompt predict CKPT --task T --input in.jsonl --output out.jsonl`: predictions for raw examples."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from hyperprompt.cli.common import add_logging_flag, device_name, positive_int, setup_logging


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="predict labels for raw examples (JSON lines)",
        description="Read one example per line (the task's fields, e.g. {\"premise\": ..., \"hypothesis\": ...} "
        "for CB, a user task's own fields, or {\"inputs\": \"...\"} with the model input text), write each line back "
        "with 'prediction' (generated text), 'label' (postprocessed: class id, number or text) and 'label_name'. "
        "A gold 'label' in the input is kept as 'gold_label'. '-' is stdin / stdout. Lines are read and written "
        "in chunks, in input order.",
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="a run directory or a model directory (final/, best/...)")
    parser.add_argument("--task", required=True, help="the task (name or alias) the examples belong to")
    parser.add_argument("--input", default="-", help="JSON-lines file, or - for stdin (default)")
    parser.add_argument("--output", default="-", help="JSON-lines file, or - for stdout (default)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--num-beams", type=positive_int, help="beam size (default: the recipe's)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    add_logging_flag(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from hyperprompt.training import load_run_checkpoint
    from hyperprompt.training.predict import predict_stream

    loaded = load_run_checkpoint(args.checkpoint, device=device_name(args.device))
    with contextlib.ExitStack() as files:
        source = getattr(sys.stdin, "buffer", sys.stdin) if args.input == "-" else files.enter_context(open_input(args.input))
        sink = sys.stdout if args.output == "-" else files.enter_context(open(args.output, "w", encoding="utf-8"))
        count = predict_stream(loaded, args.task, source, "stdin" if args.input == "-" else args.input, sink,
                               batch_size=args.batch_size, num_beams=args.num_beams)
    if args.output != "-":
        print(f"wrote {count} predictions to {args.output}", file=sys.stderr)
    return 0


def open_input(path: str) -> Any:
    from hyperprompt.errors import MissingFileError

    try:
        return open(path, "rb")  # decoded line by line, so that a bad byte is reported with its line
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no such file (--input)") from None
