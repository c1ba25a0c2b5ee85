"""`hyperprompt predict CKPT --task T --input in.jsonl --output out.jsonl`: predictions for raw examples."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hyperprompt.cli.common import add_logging_flag, device_name, fail, setup_logging


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="predict labels for raw examples (JSON lines)",
        description="Read one example per line (the task's fields, e.g. {\"premise\": ..., \"hypothesis\": ...} "
        "for CB, or {\"inputs\": \"...\"} with the model input text), write each line back with 'prediction' "
        "(generated text), 'label' (postprocessed: class id, number or text) and 'label_name'. "
        "A gold 'label' in the input is kept as 'gold_label'. '-' is stdin / stdout.",
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="a run directory or a model directory (final/, best/...)")
    parser.add_argument("--task", required=True, help="the task (name or alias) the examples belong to")
    parser.add_argument("--input", default="-", help="JSON-lines file, or - for stdin (default)")
    parser.add_argument("--output", default="-", help="JSON-lines file, or - for stdout (default)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-beams", type=int, help="beam size (default: the recipe's)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    add_logging_flag(parser)
    return parser


def read_records(stream: Any, name: str) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{name} line {number}: not JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{name} line {number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from hyperprompt.training import CheckpointError, build_tasks, load_run_checkpoint
    from hyperprompt.training.predict import predict_records

    try:
        model, tokenizer, config, _ = load_run_checkpoint(args.checkpoint, device=device_name(args.device))
        (task,) = build_tasks(config, names=[args.task], check_data_dir=False)
        if task.name not in model.config.task_names:
            raise ValueError(f"the model was not trained on {task.name}; its tasks: {', '.join(model.config.task_names)}")
        if args.input == "-":
            records = read_records(sys.stdin, "stdin")
        else:
            with open(args.input) as f:
                records = read_records(f, args.input)
        rows = predict_records(model, tokenizer, task, records, max_input_length=config.max_input_length,
                               max_new_tokens=config.eval.max_new_tokens or config.max_target_length,
                               batch_size=args.batch_size, num_beams=args.num_beams or config.eval.num_beams)
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        return fail(str(error))
    out = sys.stdout if args.output == "-" else open(args.output, "w")  # noqa: SIM115
    try:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output != "-":
        print(f"wrote {len(rows)} predictions to {args.output}", file=sys.stderr)
    return 0
