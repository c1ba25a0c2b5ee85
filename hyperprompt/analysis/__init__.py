"""Peeking into a trained model: attention mass on the (hyper-)prompts per layer and the entropy of
attention over the real tokens, as numbers (``analysis.json``) and figures.

>>> from hyperprompt.analysis import analyze_splits, build_report, save_plots
>>> stats = analyze_splits(model, splits, pad_token_id=tokenizer.pad_token_id)   # doctest: +SKIP
>>> report = build_report(stats, {"method": model.config.method})                # doctest: +SKIP
>>> save_plots(report, "analysis/")                                              # doctest: +SKIP

See docs/analysis.md.
"""

from hyperprompt.analysis.attention import (
    STACKS,
    AttentionRecorder,
    AttentionStats,
    analyze_attention,
    analyze_splits,
    reduce_layer,
    split_batches,
)
from hyperprompt.analysis.plots import entropy_figure, prompt_mass_figure, save_plots
from hyperprompt.analysis.report import build_report, entropy_bins, entropy_summary

__all__ = [
    "STACKS",
    "AttentionRecorder",
    "AttentionStats",
    "analyze_attention",
    "analyze_splits",
    "build_report",
    "entropy_bins",
    "entropy_figure",
    "entropy_summary",
    "prompt_mass_figure",
    "reduce_layer",
    "save_plots",
    "split_batches",
]
