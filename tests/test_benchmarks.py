"""The benchmark scripts still run and print their JSON (tiny settings; the figures come from real runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HYPERPROMPT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

TINY = ["--size", "t5-tiny", "--batch-size", "2", "--input-length", "16", "--target-length", "4"]
SCRIPTS = {
    "overhead.py": [*TINY, "--repeats", "1", "--generate-repeats", "1", "--methods", "hyperprompt-global",
                    "prompt-tuning", "adapter", "--sweep-prompt-lengths", "2", "4"],
    "peft_reference.py": [*TINY, "--repeats", "1"],
    "overhead_causal.py": ["--layers", "1", "--vocab-size", "500", "--batch-size", "2", "--input-length", "8",
                           "--target-length", "3", "--prompt-length", "2", "--repeats", "1", "--generate-repeats", "1"],
    "gpu.py": [*TINY, "--device", "cpu", "--steps", "1", "--warmup", "1"],
    "param_scaling.py": ["--size", "t5-small"],
    "profile_step.py": [*TINY, "--steps", "1", "--methods", "hyperprompt-global", "adapter"],
    "global_stability.py": ["--lr", "1e-3", "--steps", "2", "--eval-examples", "2"],
    "add_task_curve.py": ["--steps", "2", "--add-steps", "1", "--eval-examples", "4", "--out", "curve"],
    "described_tasks.py": ["--steps", "2", "--add-steps", "1", "--eval-examples", "4", "--examples", "16",
                           "--held-out", "family/third_next2", "--out", "described", "--set", "prompt_init_std=0.1"],
    "family_routing.py": ["--steps", "2", "--train-size", "8", "--eval-examples", "4", "--tasks", "first", "last",
                          "--lr", "1e-2", "--set", "hypernetwork_init_scale=0.1"],
    "minilm_add_task.py": ["--data-dir", str(SHARED_DATA), "--steps", "2", "--add-steps", "1", "--eval-examples", "4",
                           "--examples", "8", "--out", "minilm", "--set", "num_threads=1"],
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_benchmark_script_runs(script, tmp_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / script), *SCRIPTS[script]],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["benchmark"] == script.removesuffix(".py")
    if script == "overhead.py":
        assert set(report["train_step"]) == {"t5", "hyperprompt-global@2", "hyperprompt-global@4",
                                             "prompt-tuning@2", "prompt-tuning@4", "adapter"}
        assert report["train_step"]["t5"]["ratio"] == 1.0
    if script == "global_stability.py":
        runs = report["runs"]
        assert [(r["variant"], r["scale_parameter"]) for r in runs] == [
            ("default", False), ("default", True), ("paper-exact", False), ("paper-exact", True)]
        assert runs[2]["label"] == "hyperprompt-global (paper-exact)"
        assert all(r["prompt_std"]["encoder"] > 0 for r in runs)
    if script == "overhead_causal.py":
        assert set(report["generate"]) == {"plain", "hyperprompt-global", "peft-prefix-tuning (frozen)"}
        assert report["trainable_parameters"]["peft-prefix-tuning (frozen)"] == 2 * 1 * 2 * 128  # l * M * k|v * 2x64
    if script == "profile_step.py":
        models = report["models"]
        assert set(models) == {"t5", "hyperprompt-global", "adapter"}
        assert all(m["profiled_step_ms"] > 0 and m["top_ops_ms"] for m in models.values())
        assert models["hyperprompt-global"]["generator_fwd_bwd_ms"] > 0  # its share is only meaningful at real sizes
        assert "generator_share_of_step" not in models["adapter"]  # no hyper-prompt generator
    if script == "described_tasks.py":
        row = report["tasks"]["family/third_next2"]
        assert set(row["curves"]) == {"described + fine-tuned description embedding",
                                      "described, from the mean description: fine-tuned description embedding",
                                      "named: task embedding",
                                      "named: task embedding + global prompts",
                                      "named: prefix tuning (every layer's prompts learned directly)",
                                      "named: prompt tuning (16 soft input tokens)"}
        assert report["models"]["described"]["tasks"] == 35 and report["models"]["all-named"]["tasks"] == 43
        assert 0 < row["chance"] < 100
        # one curve again at another learning rate of the new rows: the base models are reused, not retrained
        again = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / script), *SCRIPTS[script],
                                "--curves", "described", "--add-lr", "1e-3"],
                               capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-2000:]
        assert "run: described/described  |" in result.stderr and "run: described/" not in again.stderr
        variant = json.loads((tmp_path / "described" / "described_tasks-lr0.001.json").read_text())
        assert list(variant["tasks"]["family/third_next2"]["curves"]) == ["described + fine-tuned description embedding"]
        assert json.loads((tmp_path / "described" / "added-lr0.001" / "family_third_next2" / "described-embedding-16" /
                           "results.json").read_text())["lr"] == 1e-3
        assert json.loads((tmp_path / "described" / "described_tasks.json").read_text()) == report  # kept
    if script == "minilm_add_task.py":
        assert report["held_out"] == "glue/sst2" and set(report["curves"]) == {
            "task embedding", "task embedding + global prompts",
            "prefix tuning (every layer's prompts learned directly)", "prompt tuning (16 soft input tokens)"}
        assert all(set(points) == {"8"} for points in report["curves"].values())
        assert 0 < report["majority"]["glue/sst2/accuracy"] < 100
        assert yaml.safe_load((tmp_path / "minilm" / "base" / "config.yaml").read_text())["num_threads"] == 1  # --set
    if script == "family_routing.py":
        assert set(report["runs"]) == {"mtl", "hyperprompt-global"}
        assert all(set(scores) == {"family/first", "family/last"} for scores in report["runs"].values())
        assert all(0 < level < 100 for level in report["chance"].values())
        # a run killed after its last checkpoint continues from it (it used to start again from step 0)
        run = tmp_path / "runs" / "family-routing" / "hyperprompt-global"
        (run / "results.json").unlink()
        again = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / script), *SCRIPTS[script]],
                               capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-2000:]
        assert "resumed from runs/family-routing/hyperprompt-global/checkpoints/step-00000002" in again.stderr
        assert json.loads(again.stdout)["runs"] == report["runs"]
    if script == "param_scaling.py":
        growth = report["growth_1_to_1000"]
        assert growth["hyperprompt-sep"] == pytest.approx(1000) and growth["prompt-tuning"] == pytest.approx(1000)
        assert growth["hyperprompt-global"] < 10  # nearly independent of the number of tasks


def test_gpu_checks_script_runs_every_check_in_smoke_mode(tmp_path):
    """benchmarks/gpu_checks.sh (the one command for a lent GPU machine), on tiny shapes on the CPU."""
    result = subprocess.run(["bash", str(REPO_ROOT / "benchmarks" / "gpu_checks.sh")], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OUT": str(tmp_path), "SMOKE": "1", "PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr[-2000:]
    log = (tmp_path / "log.txt").read_text()
    for name in ("correctness", "gpu", "overhead", "profile", "overhead_causal"):
        assert f"== {name}: exit 0" in log, log[-3000:]
        assert json.loads((tmp_path / f"{name}.json").read_text())["benchmark"] in {name, f"gpu_{name}", "profile_step"}
    correctness = json.loads((tmp_path / "correctness.json").read_text())
    assert correctness["ok"] and correctness["checks"]["generate_cache_equals_no_cache"]["ok"]


def test_the_family_benchmarks_keep_every_target_whole():
    """Every family target, tokenised as the benchmarks do (the demo's ByT5 bytes + EOS), fits the benchmarks'
    max_target_length: with the demo's 8 the five-letter answers (reverse, sort, ...) were all cut, scored 0."""
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.described_tasks import FAMILY_TARGET_LENGTH
    from hyperprompt.data import get_task
    from hyperprompt.data.task_family import TASK_NAMES
    from hyperprompt.training import load_config
    from hyperprompt.training.builder import build_tokenizer
    from hyperprompt.training.demo import DEMO_RECIPE

    tokenizer = build_tokenizer(load_config(base=DEMO_RECIPE), [])
    longest = max(len(tokenizer(ex["targets"])["input_ids"]) for name in TASK_NAMES
                  for split in ("train", "validation") for ex in get_task(name).load(split))
    assert longest == 10 and longest <= FAMILY_TARGET_LENGTH < 2 * longest
