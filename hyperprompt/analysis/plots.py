"""The analysis figures, drawn from an ``analysis.json`` dict only (see :mod:`hyperprompt.analysis.report`).

- ``prompt_mass_<stack>.png``: attention mass on the prompts vs layer, one line per task (the
  baseline's dashed, if it has prompts);
- ``entropy_<stack>.png``: the density of per-query attention entropy over the real tokens, the model
  vs the baseline, with their means marked.

Figures are plain ``matplotlib.figure.Figure`` objects (no pyplot state, no backend switch): in a
notebook, ``display(prompt_mass_figure(report, "encoder"))`` shows one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from hyperprompt.analysis.attention import STACKS

COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c",
          "#ccb974", "#64b5cd")
MODEL_COLOR, BASELINE_COLOR = "#dd8452", "#4c72b0"


def _models(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [section for section in (report["model"], report.get("baseline")) if section]


def prompt_mass_figure(report: dict[str, Any], stack: str) -> Figure | None:
    """Mass on the prompts per ``stack`` layer (x: layer, 1 = bottom), one line per task; None when
    neither model has prompts in that stack."""
    lines = []
    for index, section in enumerate(_models(report)):
        for task, entry in section["tasks"].items():
            mass = entry.get(stack, {}).get("prompt_mass")
            if mass is not None:
                lines.append((index, section["label"], task, mass))
    if not lines:
        return None
    tasks = list(dict.fromkeys(task for _, _, task, _ in lines))
    several_models = len({index for index, *_ in lines}) > 1
    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.subplots()
    for index, label, task, mass in lines:
        name = f"{task} ({label})" if several_models else task
        axes.plot(range(1, len(mass) + 1), mass, marker="o", label=name,
                  color=COLORS[tasks.index(task) % len(COLORS)], linestyle="-" if index == 0 else "--")
    layers = max(len(mass) for *_, mass in lines)
    axes.set_xticks(range(1, layers + 1))
    axes.set_xlim(0.5, layers + 0.5)
    axes.set_ylim(0, max(1e-3, max(max(mass) for *_, mass in lines)) * 1.15)
    axes.set_xlabel(f"{stack} layer (1 = bottom)", fontsize=11)
    axes.set_ylabel("attention mass on the prompts", fontsize=11)
    examples = report.get("examples_per_task")
    title_models = " vs ".join(dict.fromkeys(label for _, label, _, _ in lines))
    axes.set_title(f"{stack.capitalize()} self-attention on prompts: {title_models}"
                   + (f"\n(mean over heads, queries and up to {examples} examples per task)" if examples else ""),
                   fontsize=11)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=9, loc="best")
    figure.tight_layout()
    return figure


def entropy_figure(report: dict[str, Any], stack: str) -> Figure | None:
    """Density of per-query entropy over the real tokens in ``stack``, model vs baseline, on the
    report's shared bins; None when the stack was not analysed."""
    edges = report.get("entropy_bins", {}).get(stack)
    sections = [s for s in _models(report) if stack in s["entropy"]]
    if edges is None or not sections:
        return None
    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.subplots()
    for section, color in zip(sections, (MODEL_COLOR, BASELINE_COLOR), strict=False):
        summary = section["entropy"][stack]
        mean = summary["mean"]
        label = f"{section['label']}: mean {mean:.3f} nats" if mean is not None else section["label"]
        axes.stairs(summary["density"], edges, fill=True, alpha=0.35, color=color, label=label)
        axes.stairs(summary["density"], edges, color=color, linewidth=1.5, label="_outline")
        if mean is not None:
            axes.axvline(mean, color=color, linestyle="--", linewidth=1.2)
    axes.set_xlabel("entropy of attention over the real tokens (nats)", fontsize=11)
    axes.set_ylabel("density (per query, layers pooled)", fontsize=11)
    axes.set_title(f"{stack.capitalize()} self-attention entropy, prompts removed", fontsize=11)
    axes.set_xlim(edges[0], edges[-1])
    axes.grid(alpha=0.3)
    axes.legend(fontsize=9, loc="best")
    figure.tight_layout()
    return figure


def save_plots(report: dict[str, Any], out_dir: str | Path, dpi: int = 120) -> list[Path]:
    """Write ``prompt_mass_<stack>.png`` and ``entropy_<stack>.png`` (those that have data) into
    ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stack in STACKS:
        for name, draw in ((f"prompt_mass_{stack}.png", prompt_mass_figure), (f"entropy_{stack}.png", entropy_figure)):
            figure = draw(report, stack)
            if figure is None:
                continue
            figure.savefig(out / name, dpi=dpi)
            written.append(out / name)
    return written
