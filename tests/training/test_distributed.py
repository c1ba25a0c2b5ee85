"""Data parallelism: 2 CPU processes (torchrun, gloo) train what 1 process with the same global batch
trains -- same per-step losses and weights up to float summation order -- and so does gradient
accumulation."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hyperprompt.training import load_config, train

LOSS_RTOL = 1e-5  # per-step loss, relative (observed: ~1.4e-7)
WEIGHT_ATOL = 1e-4  # final weights after 8 AdamW steps (observed: ~1e-6)


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, tools):
    # AdamW's default eps turns float-level differences in near-zero gradients into full-size (sign-like)
    # updates; a larger eps keeps the comparison about the data-parallel arithmetic, not that amplification.
    recipe = {**tools.SYNTHETIC_RECIPE, "model_overrides": {"dropout_rate": 0.0}, "eval_every": 4,
              "optimizer": {"name": "adamw", "lr": 3.0e-3, "eps": 1.0e-3}}
    config = tools.write_recipe(tmp_path / "recipe.yaml", recipe)
    two = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "hyperprompt.cli.main", "train", str(config), "--out", str(tmp_path / "two")],
        env=tools.cli_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    train(load_config(config), tmp_path / "one")  # meanwhile, in this process
    accumulated = load_config(config, ["gradient_accumulation_steps=2"])
    train(accumulated, tmp_path / "accumulated")
    stdout, stderr = two.communicate(timeout=300)
    assert two.returncode == 0, stderr
    assert "2 process(es)" in stdout

    reference = tools.jsonl(tmp_path / "one" / "train_log.jsonl")
    assert len(reference) == 8
    for other in ("two", "accumulated"):
        log = tools.jsonl(tmp_path / other / "train_log.jsonl")
        assert [r["step"] for r in log] == [r["step"] for r in reference]
        assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in reference], rel=LOSS_RTOL)
        expected, weights = tools.model_weights(tmp_path / "one" / "final"), tools.model_weights(tmp_path / other / "final")
        assert max((expected[k] - weights[k]).abs().max().item() for k in expected) < WEIGHT_ATOL
        # evaluation sharded over the ranks and gathered: the same scores
        one_eval, other_eval = tools.jsonl(tmp_path / "one" / "metrics.jsonl"), tools.jsonl(tmp_path / other / "metrics.jsonl")
        assert [e["step"] for e in other_eval] == [4, 8]
        assert [e["average"] for e in other_eval] == pytest.approx([e["average"] for e in one_eval], abs=1e-9)
    assert torch.get_num_threads() >= 1


def test_batch_must_split_over_processes_and_accumulation(tmp_path, tools):
    config = load_config(base={**tools.SYNTHETIC_RECIPE, "batch_size": 10, "gradient_accumulation_steps": 4})
    with pytest.raises(ValueError, match=r"batch_size 10 is not divisible by gradient_accumulation_steps \(4\) x processes \(1\)"):
        train(config, tmp_path / "run")
