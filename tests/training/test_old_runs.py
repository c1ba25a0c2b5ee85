"""A run written before the restructuring of the training package (commit 3e51ebf: no checksums, no
user_tasks.yaml, the old loop) still evaluates to its recorded numbers and resumes exactly.

``fixtures/run_before_restructure`` was made by that commit with its own ``recipe.yaml`` (t5-tiny narrowed to
d_model 32, HyperPrompt-Global, 20 AdamW steps, one thread); only the files a resume reads were kept
(``final/``, ``best/``, the cache and TensorBoard were dropped).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "run_before_restructure"


def test_an_old_run_evaluates_to_its_recorded_metrics_and_resumes_exactly(tmp_path, tools):
    old = tmp_path / "old"
    shutil.copytree(FIXTURE, old)
    (old / "recipe.yaml").unlink()
    recorded = tools.jsonl(old / "metrics.jsonl")[-1]
    scores = tmp_path / "scores.json"
    result = tools.run_cli("evaluate", old / "checkpoints" / "step-00000020", "--out", scores)
    assert result.returncode == 0, result.stderr
    assert json.loads(scores.read_text())["tasks"] == recorded["tasks"]

    result = tools.run_cli("train", "--out", old, "--resume", "--max-steps", "24")
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stdout + result.stderr
    fresh = tmp_path / "fresh"
    result = tools.run_cli("train", FIXTURE / "recipe.yaml", "--out", fresh, "--max-steps", "24")
    assert result.returncode == 0, result.stderr
    # the new code continues the old run exactly where the new code alone would be
    old_losses = [(r["step"], r["loss"]) for r in tools.jsonl(old / "train_log.jsonl")]
    new_losses = [(r["step"], r["loss"]) for r in tools.jsonl(fresh / "train_log.jsonl")]
    assert old_losses == new_losses
    ours, theirs = tools.model_weights(old / "final"), tools.model_weights(fresh / "final")
    assert ours.keys() == theirs.keys() and all(ours[k].equal(theirs[k]) for k in ours)
