"""Sharded training on 2 CPU processes (torchrun, gloo), chosen through accelerate's environment variables:
FSDP2 (ACCELERATE_USE_FSDP, FSDP_VERSION=2) and DeepSpeed ZeRO stage 2 (ACCELERATE_USE_DEEPSPEED). Each
trains what 1 process with the same global batch trains (warm-up, clipping and gradient accumulation
included), saves full weights in the format of a 1-process run (loadable and evaluable alone), and
resumes exactly after a crash. Unsupported set-ups fail with a message that says what to use instead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from hyperprompt.training import load_config, load_run_checkpoint, train
from hyperprompt.training.evaluate import evaluate_checkpoint

LOSS_RTOL = 1e-5  # per-step loss, relative (observed: ~1.5e-7 for both, as DDP)
WEIGHT_ATOL = 1e-4  # final weights after 16 AdamW steps (observed: ~1e-6)
STRATEGIES = {
    # cpu_ram_efficient_loading: what `accelerate config` and `accelerate launch` set unless told otherwise
    "fsdp": {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"},
    "deepspeed": {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"},
}
strategies = pytest.mark.parametrize("strategy", list(STRATEGIES))  # deepspeed: in the dev extra, never skipped


def torchrun(tools, strategy: str, *args, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``hyperprompt ARGS`` in 2 CPU processes under ``strategy``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "hyperprompt.cli.main", *map(str, args)]
    return subprocess.Popen(command, env={**tools.cli_env(), **STRATEGIES[strategy], **(env or {})}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def kill(process: subprocess.Popen) -> None:
    """SIGKILL torchrun's workers and torchrun at once (each worker runs in a session of its own)."""
    for pid in [child.pid for child in psutil.Process(process.pid).children(recursive=True)] + [process.pid]:
        os.kill(pid, signal.SIGKILL)
    process.communicate(timeout=60)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tools):
    """The recipe under each strategy on 2 processes, and on 1 process (no dropout: the ranks' masks differ)."""
    root = tmp_path_factory.mktemp("sharded")
    recipe = {**tools.SYNTHETIC_RECIPE, "model_overrides": {"dropout_rate": 0.0}, "max_steps": 16, "save_every": 4,
              "eval_every": 8, "keep_last": 2, "gradient_accumulation_steps": 2, "max_grad_norm": 1.0,
              "schedule": {"name": "linear", "warmup_steps": 4},
              "optimizer": {"name": "adamw", "lr": 3.0e-3, "eps": 1.0e-3}}  # eps: see test_distributed.py
    config = tools.write_recipe(root / "recipe.yaml", recipe)
    launched = {name: torchrun(tools, name, "train", config, "--out", root / name)
                for name in STRATEGIES}
    train(load_config(config), root / "one")  # meanwhile, in this process
    for process in launched.values():
        assert "2 process(es)" in finish(process)
    return root


@strategies
def test_two_processes_match_one_process_with_the_same_global_batch(runs, tools, strategy):
    reference, log = tools.jsonl(runs / "one" / "train_log.jsonl"), tools.jsonl(runs / strategy / "train_log.jsonl")
    assert [r["step"] for r in log] == [r["step"] for r in reference] == list(range(1, 17))
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in reference], rel=LOSS_RTOL)
    expected, weights = tools.model_weights(runs / "one" / "final"), tools.model_weights(runs / strategy / "final")
    assert expected.keys() == weights.keys()  # full weights, saved as one process saves them (tied ones once)
    assert max((expected[k] - weights[k]).abs().max().item() for k in expected) < WEIGHT_ATOL
    one_eval, two_eval = tools.jsonl(runs / "one" / "metrics.jsonl"), tools.jsonl(runs / strategy / "metrics.jsonl")
    assert [e["step"] for e in two_eval] == [8, 16]  # generation sharded over the ranks
    assert [e["average"] for e in two_eval] == pytest.approx([e["average"] for e in one_eval], abs=1e-9)
    for directory in ("best/overall", "checkpoints/step-00000016"):
        assert tools.model_weights(runs / strategy / directory).keys() == expected.keys()


@strategies
def test_saved_model_loads_and_evaluates_in_one_process(runs, strategy):
    model, _, config, path = load_run_checkpoint(runs / strategy / "final")
    assert path == runs / strategy / "final" and type(model).__name__ == "HyperPromptModel"
    assert all(type(p) is torch.nn.Parameter for p in model.parameters())  # no DTensor left
    results = json.loads((runs / strategy / "results.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the run did (num_threads: 1); 2 threads on shared cores can be 50x slower
    try:
        scores = evaluate_checkpoint(runs / strategy / "final")
    finally:
        torch.set_num_threads(threads)
    assert scores["tasks"] == results["final"]["tasks"] and scores["average"] == results["final"]["average"]


@strategies
def test_run_killed_after_a_checkpoint_resumes_exactly(runs, tools, strategy):
    """Weights, optimizer state and sampler position come back from the checkpoint (RNG states, which
    dropout would exercise, are tested in one process by test_resume.py)."""
    reference, killed = runs / strategy, runs / f"{strategy}-killed"
    crashing = torchrun(tools, strategy, "train", runs / "recipe.yaml", "--out", killed)
    deadline = time.time() + 120
    while not list((killed / "checkpoints").glob("step-*")):
        assert crashing.poll() is None, crashing.communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    kill(crashing)
    assert not (killed / "final").exists(), "the run ended before it was killed"
    assert "resumed from" in finish(torchrun(tools, strategy, "train", "--out", killed, "--resume"))

    expected, weights = tools.model_weights(reference / "final"), tools.model_weights(killed / "final")
    assert expected.keys() == weights.keys()
    assert all(torch.equal(expected[k], weights[k]) for k in expected), "weights differ"
    assert tools.jsonl(killed / "metrics.jsonl") == tools.jsonl(reference / "metrics.jsonl")
    assert [r["loss"] for r in tools.jsonl(killed / "train_log.jsonl")] == [
        r["loss"] for r in tools.jsonl(reference / "train_log.jsonl")]
    results, expected_results = (json.loads((run / "results.json").read_text()) for run in (killed, reference))
    assert results["final"] == expected_results["final"] and results["best_per_task"] == expected_results["best_per_task"]


ACCELERATE_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"


@pytest.mark.parametrize("name", ["ddp", "fsdp2", "deepspeed-zero2"])
def test_shipped_accelerate_configs_launch_and_train_like_one_process(tmp_path, tools, name):
    """`accelerate launch --config_file configs/accelerate/NAME.yaml` (the user's command), on 2 CPU processes,
    with gradient checkpointing (transformers' under DDP and DeepSpeed; FSDP2's checkpoint wrapper per unit)."""
    recipe = {**tools.SYNTHETIC_RECIPE, "model_overrides": {"dropout_rate": 0.0}, "max_steps": 4, "save_every": 4,
              "eval_every": None, "optimizer": {"name": "adamw", "lr": 3.0e-3, "eps": 1.0e-3},
              "gradient_checkpointing": True}
    config = tools.write_recipe(tmp_path / "recipe.yaml", recipe)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE_CONFIGS / f"{name}.yaml"),
               "--num_processes", "2", "--mixed_precision", "no", "-m", "hyperprompt.cli.main", "train", str(config),
               "--out", str(tmp_path / name)]
    launched = subprocess.Popen(command, env=tools.cli_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    train(load_config(config), tmp_path / "one")
    assert "2 process(es)" in finish(launched)
    reference, log = tools.jsonl(tmp_path / "one" / "train_log.jsonl"), tools.jsonl(tmp_path / name / "train_log.jsonl")
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in reference], rel=LOSS_RTOL)
    expected, weights = tools.model_weights(tmp_path / "one" / "final"), tools.model_weights(tmp_path / name / "final")
    assert max((expected[k] - weights[k]).abs().max().item() for k in expected) < WEIGHT_ATOL


REFUSALS = """
import json, os, pathlib, sys
from hyperprompt.training.config import load_config
from hyperprompt.training.distributed import build_accelerator
messages = []
for env, optimizer in json.loads(sys.argv[1]):
    os.environ.update(env)
    try:
        build_accelerator(load_config(base={"tasks": ["synthetic/first"], "optimizer": {"name": optimizer}}))
        messages.append(None)
    except NotImplementedError as error:
        messages.append(str(error))
    for name in env:
        del os.environ[name]
pathlib.Path(sys.argv[2], os.environ["RANK"] + ".json").write_text(json.dumps(messages))
"""


def test_unsupported_setups_are_refused_with_what_to_use_instead(tmp_path, tools):
    """One 2-process launch that builds the accelerator of each unsupported set-up in turn."""
    cases = [({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "adamw"),
             ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, "adafactor")]
    expected = ["FSDP1 is not supported: set fsdp_version: 2 in the accelerate config",
                "optimizer.name adafactor does not run under FSDP: transformers' Adafactor mixes plain tensors"]
    deepspeed = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}
    cases += [({**deepspeed, "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "adamw"), (deepspeed, "adafactor")]
    expected += ["DeepSpeed ZeRO stage 3 is not supported: stage 3 shards the parameters",
                 "optimizer.name adafactor is not Adafactor under DeepSpeed: ZeRO hands the optimizer flat"]
    script = tmp_path / "refusals.py"
    script.write_text(REFUSALS)
    process = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         json.dumps(cases), str(tmp_path)], env=tools.cli_env(), capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    for rank in (0, 1):
        messages = json.loads((tmp_path / f"{rank}.json").read_text())
        assert len(messages) == len(expected)
        for message, start in zip(messages, expected, strict=True):
            assert message is not None and message.startswith(start), message
