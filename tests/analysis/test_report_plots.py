"""analysis.json and the figures: the plots show exactly the numbers in the file; PNGs are valid."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from matplotlib.image import imread

from hyperprompt.analysis import AttentionStats, build_report, entropy_figure, prompt_mass_figure, save_plots
from hyperprompt.analysis.report import dumps, entropy_summary


def fake_stats(seed: int, prompts: bool, layers: int = 3) -> AttentionStats:
    """Synthetic statistics (the figures only read the report, so any values do)."""
    rng = np.random.default_rng(seed)
    stacks = ("encoder", "decoder")
    return AttentionStats(
        num_examples=10,
        prompt_length={s: (4 if prompts else 0) for s in stacks},
        prompt_mass={s: (sorted(rng.uniform(0, 0.6, layers).tolist()) if prompts else None) for s in stacks},
        entropies={s: [rng.gamma(4, 0.4, 50).astype(np.float32) for _ in range(layers)] for s in stacks},
    )


@pytest.fixture
def report(tmp_path):
    model = {"cb": fake_stats(0, True), "copa": fake_stats(1, True)}
    baseline = {"cb": fake_stats(2, False), "copa": fake_stats(3, False)}
    report = build_report(model, {"method": "hyperprompt-global", "checkpoint": "a"}, baseline,
                          {"method": "mtl", "checkpoint": "b"}, num_bins=25, split="validation",
                          examples_per_task=10)
    path = tmp_path / "analysis.json"
    path.write_text(dumps(report))
    return json.loads(path.read_text())  # what the CLI plots from


def test_report_holds_every_number(report):
    model, baseline = report["model"], report["baseline"]
    assert model["label"] == "hyperprompt-global" and baseline["label"] == "mtl"
    assert model["prompt_length"] == {"encoder": 4, "decoder": 4} and model["num_layers"]["encoder"] == 3
    assert len(model["tasks"]["cb"]["encoder"]["prompt_mass"]) == 3
    assert baseline["tasks"]["cb"]["decoder"]["prompt_mass"] is None
    edges = report["entropy_bins"]["encoder"]
    assert len(edges) == 26 and edges[0] == 0
    pooled = model["entropy"]["encoder"]
    assert pooled["count"] == 2 * 3 * 50 == sum(pooled["histogram"])
    assert sum(d * w for d, w in zip(pooled["density"], np.diff(edges), strict=True)) == pytest.approx(1)
    # bins are shared: every value of both models falls inside them
    for section in (model, baseline):
        assert section["entropy"]["decoder"]["count"] == sum(section["entropy"]["decoder"]["histogram"])
        for entry in section["tasks"].values():
            assert entry["encoder"]["entropy"]["count"] == sum(entry["encoder"]["entropy"]["histogram"]) == 150
    assert not math.isnan(model["tasks"]["copa"]["encoder"]["entropy_mean_per_layer"][2])


def test_prompt_mass_plot_shows_the_json_numbers(report):
    figure = prompt_mass_figure(report, "encoder")
    axes = figure.axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert set(lines) == {"cb", "copa"}  # the baseline has no prompts: no lines for it
    for task, line in lines.items():
        assert list(line.get_xdata()) == [1, 2, 3]
        assert list(line.get_ydata()) == report["model"]["tasks"][task]["encoder"]["prompt_mass"]
    assert axes.get_xlabel() and axes.get_ylabel() and axes.get_title()


def test_entropy_plot_shows_the_json_histograms(report):
    for stack in ("encoder", "decoder"):
        figure = entropy_figure(report, stack)
        axes = figure.axes[0]
        steps = [patch for patch in axes.patches if patch.get_label() and not patch.get_label().startswith("_")]
        assert [patch.get_label().split(":")[0] for patch in steps] == ["hyperprompt-global", "mtl"]
        for patch, section in zip(steps, (report["model"], report["baseline"]), strict=True):
            values, edges, _ = patch.get_data()
            assert list(values) == section["entropy"][stack]["density"]
            assert list(edges) == report["entropy_bins"][stack]
        means = sorted(line.get_xdata()[0] for line in axes.get_lines())
        assert means == sorted([report["model"]["entropy"][stack]["mean"], report["baseline"]["entropy"][stack]["mean"]])
        assert "nats" in axes.get_xlabel()


def test_baseline_with_prompts_is_drawn_dashed(tmp_path):
    report = build_report({"cb": fake_stats(0, True)}, {"method": "hyperprompt-global"},
                          {"cb": fake_stats(1, True)}, {"method": "prefix-tuning"})
    lines = prompt_mass_figure(report, "decoder").axes[0].get_lines()
    assert [(line.get_label(), line.get_linestyle()) for line in lines] == [
        ("cb (hyperprompt-global)", "-"), ("cb (prefix-tuning)", "--")]
    same = build_report({"cb": fake_stats(0, True)}, {"method": "mtl"}, {"cb": fake_stats(1, False)}, {"method": "mtl"})
    assert same["baseline"]["label"] == "mtl (baseline)"
    assert prompt_mass_figure(same, "encoder") is not None  # the model's lines only


def test_save_plots_writes_valid_pngs(report, tmp_path):
    paths = save_plots(report, tmp_path / "figures")
    assert sorted(p.name for p in paths) == ["entropy_decoder.png", "entropy_encoder.png",
                                             "prompt_mass_decoder.png", "prompt_mass_encoder.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = imread(path)
        assert image.shape[0] > 300 and image.shape[1] > 500 and image.std() > 0


def test_no_prompts_no_mass_plot(tmp_path):
    report = build_report({"cb": fake_stats(0, False)}, {"method": "mtl"})
    assert report["baseline"] is None
    assert sorted(p.name for p in save_plots(report, tmp_path)) == ["entropy_decoder.png", "entropy_encoder.png"]


def test_entropy_summary_of_nothing_and_of_zeros():
    empty = entropy_summary(np.zeros(0, dtype=np.float32), [0.0, 0.5, 1.0])
    assert empty["count"] == 0 and empty["mean"] is None and empty["histogram"] == [0, 0]
    zeros = entropy_summary(np.zeros(4, dtype=np.float32), [0.0, 0.5, 1.0])
    assert zeros["histogram"] == [4, 0] and zeros["median"] == 0.0
    for summary in (empty, zeros):
        json.dumps(summary, allow_nan=False)  # valid JSON: no NaN for an empty task
