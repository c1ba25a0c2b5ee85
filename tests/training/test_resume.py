"""Exact resume: a run killed with SIGKILL (a real subprocess), or stopped with Ctrl-C (SIGINT), and
resumed ends with the same weights, evaluations and results as an uninterrupted run (CPU, fixed
seed, dropout on)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import torch

from hyperprompt.cli.main import main

MAX_STEPS = 150


def checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("step-*"))


def test_killed_and_interrupted_runs_resume_exactly(tmp_path, tools, capsys):
    recipe = {**tools.SYNTHETIC_RECIPE, "max_steps": MAX_STEPS, "save_every": 10, "eval_every": 50, "log_every": 10,
              "keep_last": 3, "model_overrides": {"dropout_rate": 0.1}}
    config = tools.write_recipe(tmp_path / "recipe.yaml", recipe)
    runs = {name: tmp_path / name for name in ("reference", "killed", "interrupted")}

    # SIGKILL a real training process as soon as it has written its first checkpoint
    killed = subprocess.Popen(tools.cli("train", config, "--out", runs["killed"]), env=tools.cli_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not checkpoints(runs["killed"]):
        assert killed.poll() is None, killed.communicate()[1]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(60) == -signal.SIGKILL
    assert not (runs["killed"] / "final").exists() and len(checkpoints(runs["killed"])) < MAX_STEPS // 10

    assert main(["train", str(config), "--out", str(runs["reference"])]) == 0

    # Ctrl-C: save at the end of the current step and exit with 130
    def interrupt_after_first_checkpoint() -> None:
        while not checkpoints(runs["interrupted"]):
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=interrupt_after_first_checkpoint, daemon=True)
    watcher.start()
    capsys.readouterr()
    assert main(["train", str(config), "--out", str(runs["interrupted"])]) == 130
    watcher.join()
    err = capsys.readouterr().err
    assert "SIGINT: saving a checkpoint after this step" in err and "Continue with --resume" in err
    stopped_at = int(err.split("interrupted at step ")[1].split(";")[0])
    assert checkpoints(runs["interrupted"])[-1].name == f"step-{stopped_at:08d}" and stopped_at < MAX_STEPS
    assert not (runs["interrupted"] / "final").exists()

    for name in ("killed", "interrupted"):
        assert main(["train", "--out", str(runs[name]), "--resume"]) == 0
        assert "resumed from" in capsys.readouterr().out

    reference = tools.model_weights(runs["reference"] / "final")
    expected = json.loads((runs["reference"] / "results.json").read_text())
    expected_log = tools.jsonl(runs["reference"] / "train_log.jsonl")
    for name in ("killed", "interrupted"):
        weights = tools.model_weights(runs[name] / "final")
        assert reference.keys() == weights.keys()
        assert all(torch.equal(reference[k], weights[k]) for k in reference), f"{name}: weights differ"
        assert tools.jsonl(runs[name] / "metrics.jsonl") == tools.jsonl(runs["reference"] / "metrics.jsonl")
        log = tools.jsonl(runs[name] / "train_log.jsonl")
        assert [r["step"] for r in log] == [r["step"] for r in expected_log]
        if name == "killed":  # resumed at a checkpoint, which is a logging step: the same loss windows
            assert [r["loss"] for r in log] == [r["loss"] for r in expected_log]
        results = json.loads((runs[name] / "results.json").read_text())
        assert results["final"] == expected["final"] and results["best_per_task"] == expected["best_per_task"]
