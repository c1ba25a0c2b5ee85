"""A decoder-only LM (llama-tiny, GQA) on 2 CPU processes (torchrun, gloo): DDP and FSDP2 (its
``LlamaDecoderLayer`` s as units, from ``_no_split_modules``) train what 1 process with the same global
batch trains -- per-step losses, final weights and gathered evaluation."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hyperprompt.training import load_config, train

LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-4
STRATEGIES = {
    "ddp": {},
    "fsdp": {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"},
}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tools):
    root = tmp_path_factory.mktemp("causal-dist")
    # evaluation at the end only: an evaluation right before a save (eval_every 4, save at step 8) fails under
    # FSDP2 for T5 as well (the root unit stays unsharded after generate; a loop issue, not the family's)
    recipe = {**tools.SYNTHETIC_RECIPE, "model": "llama-tiny", "method_settings": {"decoder_prompt_length": 3},
              "optimizer": {"name": "adamw", "lr": 3.0e-3, "eps": 1.0e-3}}
    config = tools.write_recipe(root / "recipe.yaml", recipe)
    train(load_config(config), root / "one")
    return root, config


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_two_processes_match_one_process(one_process, tools, strategy):
    root, config = one_process
    out = root / strategy
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "hyperprompt.cli.main", "train", str(config), "--out", str(out)],
        env={**tools.cli_env(), **STRATEGIES[strategy]}, text=True, capture_output=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 process(es)" in two.stdout
    reference, log = tools.jsonl(root / "one" / "train_log.jsonl"), tools.jsonl(out / "train_log.jsonl")
    assert len(reference) == 8
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in reference], rel=LOSS_RTOL)
    expected, weights = tools.model_weights(root / "one" / "final"), tools.model_weights(out / "final")
    assert expected.keys() == weights.keys()
    assert max((expected[k] - weights[k]).abs().max().item() for k in expected) < WEIGHT_ATOL
    one_eval, two_eval = tools.jsonl(root / "one" / "metrics.jsonl"), tools.jsonl(out / "metrics.jsonl")
    assert [e["step"] for e in two_eval] == [e["step"] for e in one_eval] == [8]
    assert [e["average"] for e in two_eval] == pytest.approx([e["average"] for e in one_eval], abs=1e-9)
