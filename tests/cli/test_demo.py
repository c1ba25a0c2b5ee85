"""`hyperprompt demo`: offline, both models train, HyperPrompt beats chance on every synthetic task.

The default run (1500 steps) is timed and its table recorded in docs/training.md; this test runs a
shorter one (750 steps, about 40 s) whose HyperPrompt model beats chance on every task by a margin.
"""

from __future__ import annotations

import json

from hyperprompt.cli.main import main
from hyperprompt.training.demo import DEFAULT_STEPS, chance_levels


def test_demo_trains_both_models_and_hyperprompt_beats_chance_everywhere(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "750"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert list(results["tasks"]) == ["synthetic/first", "synthetic/last", "synthetic/reverse", "synthetic/max"]
    for name, row in results["tasks"].items():
        assert row["hyperprompt-global"] > row["chance"] + 5, (name, row)
        assert row["chance"] == chance_levels()[name]
        assert f"{name:<20}{row['chance']:>8.1f}" in printed
    assert results["average"]["hyperprompt-global"] > results["average"]["mtl"]
    assert (out / "demo.png").stat().st_size > 10_000
    for method in ("mtl", "hyperprompt-global"):
        assert (out / method / "final" / "model").is_dir()
    assert f"wrote {out / 'results.json'} and {out / 'demo.png'}" in printed
    assert DEFAULT_STEPS == 1500 and results["steps"] == 750
