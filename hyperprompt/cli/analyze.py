"""`hyperprompt analyze CKPT [--baseline CKPT] --out DIR`: attention on the prompts and attention entropy."""

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
        "analyze",
        help="attention mass on the prompts per layer and attention entropy (the paper's analysis)",
        description="Run a saved model with teacher forcing on the first N examples of each task and measure, per "
        "self-attention layer, the attention mass on the (hyper-)prompts and the entropy of attention over the real "
        "tokens (prompts removed, renormalised). With --baseline (e.g. an mtl run) both entropy distributions are "
        "compared. Writes DIR/analysis.json and PNG plots. CKPT is a run directory or one of its model directories "
        "(final/, best/<task>/, checkpoints/step-N/). See docs/analysis.md.",
    )
    parser.add_argument("checkpoint", metavar="CKPT")
    parser.add_argument("--baseline", metavar="CKPT", help="a second checkpoint to compare with (any method)")
    parser.add_argument("--tasks", help="comma-separated subset of the model's tasks (default: all)")
    parser.add_argument("--examples", type=non_negative_int, default=100, help="first N examples per task (default: 100; 0 = all)")
    parser.add_argument("--split", default="validation", help="split to read the examples from (default: validation)")
    parser.add_argument("--data-dir", help="folder of the official task files (default: each recipe's data_dir)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="examples per forward (default: 16)")
    parser.add_argument("--bins", type=positive_int, default=40, help="entropy histogram bins (default: 40)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--out", required=True, metavar="DIR", help="where analysis.json and the PNGs go")
    add_logging_flag(parser)
    return parser


def _analyze_checkpoint(path: str, task_names: list[str] | None, args: argparse.Namespace
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load ``path``, encode the tasks' examples with its own tokenizer and recipe, analyse them.

    Returns ({task: AttentionStats}, the model's info for the report)."""
    from hyperprompt.analysis import analyze_splits
    from hyperprompt.data import encode_task
    from hyperprompt.training import load_run_checkpoint

    run = load_run_checkpoint(path, device=device_name(args.device))
    model, tokenizer, config, directory = run
    tasks = run.tasks(task_names, data_dir=args.data_dir)
    splits = [encode_task(t, args.split, tokenizer, config.max_input_length, config.max_target_length,
                          cache_dir=config.cache_dir) for t in tasks]
    stats = analyze_splits(model, splits, pad_token_id=tokenizer.pad_token_id,
                           max_examples=args.examples or None, batch_size=args.batch_size,
                           bos_token_id=tokenizer.bos_token_id)
    info = {"method": config.method, "checkpoint": str(directory), "backbone": config.model}
    return stats, info


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from hyperprompt.analysis import build_report, save_plots
    from hyperprompt.analysis.report import dumps
    names = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    stats, info = _analyze_checkpoint(args.checkpoint, names, args)
    baseline, baseline_info = None, None
    if args.baseline:
        # the same tasks (by canonical name), encoded with the baseline's own tokenizer and recipe
        baseline, baseline_info = _analyze_checkpoint(args.baseline, list(stats), args)

    report = build_report(stats, info, baseline, baseline_info, num_bins=args.bins,
                          split=args.split, examples_per_task=args.examples or None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "analysis.json"
    json_path.write_text(dumps(report))
    # the figures are drawn from the file just written, so they show exactly its numbers
    plots = save_plots(json.loads(json_path.read_text()), out)
    print(summary_table(report))
    print(f"wrote {json_path}" + "".join(f", {p.name}" for p in plots))
    return 0


def summary_table(report: dict[str, Any]) -> str:
    """Per model and task: prompt mass per layer (encoder | decoder) and mean entropies."""
    lines = []
    for section in (report["model"], report.get("baseline")):
        if not section:
            continue
        lines.append(f"{section['label']} ({section['checkpoint']})")
        for task, entry in section["tasks"].items():
            parts = []
            for stack in ("encoder", "decoder"):
                if stack not in entry:
                    continue
                mass = entry[stack]["prompt_mass"]
                mass_text = "-" if mass is None else " ".join(f"{m:.3f}" for m in mass)
                mean = entry[stack]["entropy"]["mean"]
                parts.append(f"{stack} mass [{mass_text}] entropy {mean:.3f}" if mean is not None
                             else f"{stack} mass [{mass_text}]")
            lines.append(f"  {task} (n={entry['num_examples']}): " + " | ".join(parts))
        for stack, summary in section["entropy"].items():
            if summary["mean"] is not None:
                lines.append(f"  all tasks, {stack} entropy: mean {summary['mean']:.3f} median {summary['median']:.3f} "
                             f"nats over {summary['count']} queries")
    return "\n".join(lines)
