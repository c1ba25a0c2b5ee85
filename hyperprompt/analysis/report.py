"""``analysis.json``: every number of an attention analysis, in plain JSON (docs/analysis.md).

The plots (:mod:`hyperprompt.analysis.plots`) are drawn from this dict alone, so the figures show
exactly the numbers in the file. Entropy histograms of the model and the baseline share their bins
(per stack) so they can be compared bar by bar.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from hyperprompt.analysis.attention import STACKS, AttentionStats
from hyperprompt.errors import InputError

FORMAT = "hyperprompt-attention-analysis/1"
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)

DEFINITIONS = {
    "prompt_mass": "per layer (bottom first): softmax weight on the prompt columns, averaged over heads, "
    "over each example's non-padding queries, then over the examples; null if the stack has no prompts",
    "entropy": "per (layer, non-padding query): entropy in nats of the attention over the real tokens "
    "(prompt columns and masked keys removed, renormalised), averaged over heads",
    "decoder": "teacher forcing on the gold targets; a decoder query is valid where it predicts a target token",
    "histogram": "counts per bin of entropy_bins[stack]; density = counts / (count * bin width)",
}


def entropy_bins(values: list[np.ndarray], num_bins: int = 40) -> list[float]:
    """``num_bins + 1`` equal-width bin edges from 0 to just above the largest value in ``values``."""
    largest = max((float(v.max()) for v in values if len(v)), default=0.0)
    top = largest * 1.001 if largest > 0 else 1.0
    return [float(x) for x in np.linspace(0.0, top, num_bins + 1)]


def entropy_summary(values: np.ndarray, edges: list[float]) -> dict[str, Any]:
    """count, mean, std, quantiles and the histogram (counts and density) of per-query entropies."""
    counts, _ = np.histogram(values, bins=np.asarray(edges))
    widths = np.diff(edges)
    total = int(len(values))
    density = counts / (total * widths) if total else np.zeros_like(widths)
    finite = len(values) > 0
    return {
        "count": total,
        "mean": float(values.mean()) if finite else None,
        "std": float(values.std()) if finite else None,
        "median": float(np.median(values)) if finite else None,
        "quantiles": {str(q): float(np.quantile(values, q)) for q in QUANTILES} if finite else {},
        "histogram": [int(c) for c in counts],
        "density": [float(d) for d in density],
    }


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def model_section(
    stats: Mapping[str, AttentionStats],
    edges: Mapping[str, list[float]],
    info: Mapping[str, Any],
) -> dict[str, Any]:
    """One model's part of the report: ``info`` (method, checkpoint, label...), per task and pooled."""
    first = next(iter(stats.values()))
    section: dict[str, Any] = {
        **info,
        "prompt_length": {stack: first.prompt_length.get(stack, 0) for stack in STACKS},
        "num_layers": {stack: len(first.entropies.get(stack, [])) for stack in STACKS},
        "tasks": {},
        "entropy": {},
    }
    for task, task_stats in stats.items():
        entry: dict[str, Any] = {"num_examples": task_stats.num_examples}
        for stack in STACKS:
            if stack not in task_stats.entropies:
                continue
            mass = task_stats.prompt_mass.get(stack)
            entry[stack] = {
                "prompt_mass": None if mass is None else [float(m) for m in mass],
                "entropy_mean_per_layer": [_clean(m) for m in task_stats.entropy_mean_per_layer(stack)],
                "entropy": entropy_summary(task_stats.entropy_values(stack), edges[stack]),
            }
        section["tasks"][task] = entry
    for stack in STACKS:
        pooled = [s.entropy_values(stack) for s in stats.values() if stack in s.entropies]
        if pooled:
            section["entropy"][stack] = entropy_summary(np.concatenate(pooled), edges[stack])
    return section


def build_report(
    stats: Mapping[str, AttentionStats],
    info: Mapping[str, Any],
    baseline: Mapping[str, AttentionStats] | None = None,
    baseline_info: Mapping[str, Any] | None = None,
    num_bins: int = 40,
    **settings: Any,
) -> dict[str, Any]:
    """The ``analysis.json`` dict of a model (and optionally a baseline) analysed per task.

    Args:
        stats, baseline: ``{task: AttentionStats}`` from :func:`~hyperprompt.analysis.analyze_splits`.
        info, baseline_info: descriptive fields copied into the model's section; ``label`` names the
            model in legends (default: its ``method``).
        num_bins: entropy histogram bins (shared by the model and the baseline, per stack).
        settings: recorded as they are (e.g. ``split``, ``examples_per_task``).
    """
    if not stats:
        raise InputError("nothing to report: no task was analysed")
    models = [stats] + ([baseline] if baseline else [])
    edges = {}
    for stack in STACKS:
        values = [s.entropy_values(stack) for m in models for s in m.values() if stack in s.entropies]
        if values:
            edges[stack] = entropy_bins(values, num_bins)
    info = {"label": info.get("method", "model"), **info}
    report: dict[str, Any] = {
        "format": FORMAT,
        "definitions": DEFINITIONS,
        **settings,
        "entropy_bins": edges,
        "model": model_section(stats, edges, info),
        "baseline": None,
    }
    if baseline:
        baseline_info = dict(baseline_info or {})
        baseline_info.setdefault("label", baseline_info.get("method", "baseline"))
        if baseline_info["label"] == info["label"]:
            baseline_info["label"] += " (baseline)"
        report["baseline"] = model_section(baseline, edges, baseline_info)
    return report


_NUMBER_LIST = re.compile(r"\[\s*((?:-?[0-9.eE+-]+|null)(?:,\s*(?:-?[0-9.eE+-]+|null))*)\s*\]")


def dumps(report: dict[str, Any]) -> str:
    """The report as indented JSON with each list of numbers on one line."""
    text = json.dumps(report, indent=2)
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"
