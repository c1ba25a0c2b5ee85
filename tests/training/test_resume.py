"""Exact resume: a run killed with SIGKILL, or stopped with Ctrl-C, and resumed ends with the same
weights, evaluations and results as an uninterrupted run (CPU, fixed seed, dropout on)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import torch

MAX_STEPS = 150


def wait_for_checkpoint(run: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not any((run / "checkpoints").glob("step-*")):
        assert process.poll() is None, f"the run ended early: {process.communicate()}"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)


def test_killed_and_interrupted_runs_resume_exactly(tmp_path, tools):
    recipe = {**tools.SYNTHETIC_RECIPE, "max_steps": MAX_STEPS, "save_every": 10, "eval_every": 50, "log_every": 10,
              "keep_last": 3, "model_overrides": {"dropout_rate": 0.1}}
    config = tools.write_recipe(tmp_path / "recipe.yaml", recipe)
    runs = {name: tmp_path / name for name in ("reference", "killed", "interrupted")}
    popen = {name: subprocess.Popen(tools.cli("train", config, "--out", run), env=tools.cli_env(), text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name, run in runs.items()}

    wait_for_checkpoint(runs["killed"], popen["killed"])
    os.kill(popen["killed"].pid, signal.SIGKILL)
    wait_for_checkpoint(runs["interrupted"], popen["interrupted"])
    os.kill(popen["interrupted"].pid, signal.SIGINT)
    assert popen["killed"].wait(60) == -signal.SIGKILL
    _, stderr = popen["interrupted"].communicate(timeout=60)
    assert popen["interrupted"].returncode == 130, stderr
    assert "SIGINT: saving a checkpoint after this step" in stderr and "Continue with --resume" in stderr
    stopped_at = int(stderr.split("interrupted at step ")[1].split(";")[0])
    assert (runs["interrupted"] / "checkpoints" / f"step-{stopped_at:08d}").is_dir()
    for name in ("killed", "interrupted"):
        assert not (runs[name] / "final").exists()
        assert not (runs[name] / "checkpoints" / f"step-{MAX_STEPS:08d}").exists()

    resumed = {name: subprocess.Popen(tools.cli("train", "--out", runs[name], "--resume"), env=tools.cli_env(),
                                      text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for name in ("killed", "interrupted")}
    outputs = {}
    for name, process in [("reference", popen["reference"]), *resumed.items()]:
        outputs[name] = process.communicate(timeout=300)
        assert process.returncode == 0, outputs[name][1]
    for name in ("killed", "interrupted"):
        assert "resumed from" in outputs[name][0]

    reference = tools.model_weights(runs["reference"] / "final")
    for name in ("killed", "interrupted"):
        weights = tools.model_weights(runs[name] / "final")
        assert reference.keys() == weights.keys()
        assert all(torch.equal(reference[k], weights[k]) for k in reference), f"{name}: weights differ"
        assert tools.jsonl(runs[name] / "metrics.jsonl") == tools.jsonl(runs["reference"] / "metrics.jsonl")
        log, expected_log = tools.jsonl(runs[name] / "train_log.jsonl"), tools.jsonl(runs["reference"] / "train_log.jsonl")
        assert [r["step"] for r in log] == [r["step"] for r in expected_log]
        if name == "killed":  # resumed at a checkpoint, which is a logging step: same loss windows
            assert [r["loss"] for r in log] == [r["loss"] for r in expected_log]
        results = json.loads((runs[name] / "results.json").read_text())
        expected = json.loads((runs["reference"] / "results.json").read_text())
        assert results["final"] == expected["final"] and results["best_per_task"] == expected["best_per_task"]
