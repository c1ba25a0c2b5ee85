"""`hyperprompt demo`: offline, three runs train, each labelled for what it is; HyperPrompt beats chance
on every synthetic task and beats T5 without a task name.

The default run (1500 steps) is timed and its table recorded in docs/training.md and the README; this
test runs a shorter one (750 steps).
"""

from __future__ import annotations

import json

from hyperprompt.cli.main import main
from hyperprompt.training.demo import DEFAULT_STEPS, RUNS, chance_levels, demo_config


def test_demo_configs_differ_only_in_the_conditioning():
    configs = {run: demo_config(run, 10) for run in RUNS}
    assert [(c.method, c.task_prefix) for c in configs.values()] == [
        ("mtl", False), ("mtl", True), ("hyperprompt-global", False)]
    plain = {run: {**c.to_dict(), "method": None, "task_prefix": None, "method_settings": None}
             for run, c in configs.items()}
    assert plain["t5-no-task-name"] == plain["mtl"] == plain["hyperprompt-global"]


def test_demo_trains_three_labelled_runs_and_hyperprompt_beats_chance_everywhere(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "750"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert list(results["tasks"]) == ["synthetic/first", "synthetic/last", "synthetic/reverse", "synthetic/max"]
    for name, row in results["tasks"].items():
        assert set(row) == {"chance", "t5-no-task-name", "mtl", "hyperprompt-global"}
        assert row["hyperprompt-global"] > row["chance"] + 5, (name, row)
        assert row["chance"] == chance_levels()[name]
        assert f"{name:<20}{row['chance']:>8.1f}" in printed
    assert results["average"]["hyperprompt-global"] > results["average"]["t5-no-task-name"]
    labels = {run: info["label"] for run, info in results["runs"].items()}
    assert labels == {
        "t5-no-task-name": "mtl on inputs without a task prefix",
        "mtl": "mtl with the task name as a text prefix (the paper's MTL baseline)",
        "hyperprompt-global": "hyperprompt-global (LayerNorm on I + 1/t generators), task id through the "
                              "hyper-prompts, no task prefix"}
    assert [results["runs"][run]["task_prefix"] for run in RUNS] == [False, True, False]
    assert "task                  chance  T5, no task name  MTL (prefix)  HyperPrompt" in printed
    for run, label in labels.items():
        assert f"  {RUNS[run]['title']}: {label}" in printed
    assert (out / "demo.png").stat().st_size > 10_000
    for run in RUNS:
        assert (out / run / "final" / "model").is_dir()
        assert json.loads((out / run / "results.json").read_text())["method"] == RUNS[run]["method"]
    assert f"wrote {out / 'results.json'} and {out / 'demo.png'}" in printed
    assert DEFAULT_STEPS == 1500 and results["steps"] == 750
