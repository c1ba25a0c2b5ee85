"""`hyperprompt params`: added parameters per method and backbone size, from shapes alone (no download)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

import hyperprompt.model  # noqa: F401  (registers every method and its formula)
from hyperprompt.cli.common import positive_int
from hyperprompt.errors import InputError
from hyperprompt.model.causal_lm import CAUSAL_LM_SIZES
from hyperprompt.model.config import MethodConfig
from hyperprompt.model.params import ADDED_PARAMETER_FORMULAS, BackboneShape, added_parameters
from hyperprompt.model.presets import T5_SIZES, backbone_size_config, count_checkpoint_parameters

#: Settings that reproduce the paper's headline ratios (which exact setting the paper used is unsure).
PAPER_SETTINGS = [
    ("t5-base", "hyperprompt-global", {}, "≈2% at Base (the ablations' 1.02x MTL)"),
    ("t5-11b", "hyperprompt-global", {"layer_task_embedding_dim": 16}, "≈0.14% at 11B (t=16, b=d/32=32)"),
    ("t5-11b", "hyperprompt-global", {"layer_task_embedding_dim": 16, "bottleneck_dim": 24},
     "≈0.14% at 11B (t=16, b=24 as at Base)"),
]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "params",
        help="added parameters of each method on the paper's T5 sizes (and some decoder-only shapes)",
        description="Added (task-conditioned) parameters and their share of the backbone, computed from the "
        "built-in shapes of the released T5 checkpoints (nothing is downloaded).",
    )
    parser.add_argument("--model", action="append", choices=[*sorted(T5_SIZES), *CAUSAL_LM_SIZES],
                        help="backbone size (repeatable; default: every T5 size); decoder-only shapes: "
                        + ", ".join(CAUSAL_LM_SIZES))
    parser.add_argument("--method", action="append", choices=sorted(ADDED_PARAMETER_FORMULAS),
                        help="method (repeatable; default: every HyperPrompt variant)")
    parser.add_argument("--tasks", type=positive_int, default=8, help="number of tasks (default 8, as GLUE/SuperGLUE)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="method config override, e.g. --set layer_task_embedding_dim=16")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def parse_overrides(items: list[str]) -> dict[str, Any]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set {item!r}: expected KEY=VALUE, e.g. --set layer_task_embedding_dim=16")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def count(model: str, method: str, num_tasks: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """Backbone and added parameter counts for one (model size, method, settings)."""
    backbone_config = backbone_size_config(model)
    names = [f"task{i}" for i in range(num_tasks)]
    if overrides.get("task_conditioning") == "description" and "task_descriptions" not in overrides:
        overrides = {**overrides, "task_descriptions": [f"Task number {i}." for i in range(num_tasks)]}  # sizes only
    config = MethodConfig.from_dict({"method": method, "task_names": names, **overrides})
    backbone = count_checkpoint_parameters(model)
    added = added_parameters(config, BackboneShape.from_config(backbone_config))
    return {"model": model, "method": method, "tasks": num_tasks, "settings": overrides,
            "backbone_parameters": backbone, "added_parameters": added, "added_percent": 100 * added / backbone}


def run(args: argparse.Namespace) -> int:
    models = args.model or list(T5_SIZES)
    methods = args.method or [f"hyperprompt-{v}" for v in ("share", "sep", "global")]
    overrides = parse_overrides(args.set)
    try:
        rows = [count(m, method, args.tasks, overrides) for m in models for method in methods]
    except ValueError as error:  # a method setting the method does not have, or a bad value for one
        raise InputError(str(error)) from None
    paper = [{**count(m, method, 8, settings), "note": note} for m, method, settings, note in PAPER_SETTINGS]
    if args.json:
        print(json.dumps({"rows": rows, "paper_settings": paper}, indent=2))
        return 0
    print(f"{'model':<15} {'method':<20} {'backbone':>14} {'added':>12} {'added %':>9}")
    for row in rows:
        print(f"{row['model']:<15} {row['method']:<20} {row['backbone_parameters']:>14,} "
              f"{row['added_parameters']:>12,} {row['added_percent']:>8.3f}%")
    print("\nThe paper's ratios (8 tasks):")
    for row in paper:
        print(f"  {row['model']:<8} {row['method']} {row['settings'] or 'defaults'}: "
              f"{row['added_percent']:.3f}%  -- {row['note']}")
    return 0
