"""benchmarks/trainer.py runs and compares the two loops on the same examples (tiny settings here;
the figures in docs/training.md come from its default run)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_trainer_benchmark_reports_both_throughputs(superglue_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [
        "trainer.py", "--size", "t5-tiny", "--steps", "4", "--warmup", "2", "--batch-size", "4",
        "--input-length", "16", "--repeats", "1", "--data-dir", str(superglue_dir)])
    runpy.run_path(str(REPO_ROOT / "benchmarks" / "trainer.py"), run_name="__main__")
    report = json.loads(capsys.readouterr().out)
    speeds = report["examples_per_s"]
    assert report["benchmark"] == "trainer" and set(speeds) == {"hyperprompt_train", "seq2seq_trainer"}
    assert all(s["median"] > 0 for s in speeds.values())
    assert report["ratio"] == speeds["hyperprompt_train"]["median"] / speeds["seq2seq_trainer"]["median"]
