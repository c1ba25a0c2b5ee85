"""A real CPU run on official SuperGLUE files (CB + COPA + RTE): the loss falls, every evaluation is
recorded per task, and `evaluate` / `predict` on the saved checkpoints reproduce those numbers."""

from __future__ import annotations

import io
import json
import logging
import shutil

import pytest

from hyperprompt.cli.main import main
from hyperprompt.data import get_task
from hyperprompt.training import CheckpointError, load_config, load_run_checkpoint, train

TASKS = ["superglue/cb", "superglue/copa", "superglue/rte"]


def recipe(superglue_dir, **overrides):
    return {
        "model": "t5-tiny",
        "tokenizer": "trained",
        "tokenizer_vocab_size": 600,
        "method": "hyperprompt-global",
        "method_settings": {"encoder_prompt_length": 4, "decoder_prompt_length": 2},
        "tasks": ["cb", "copa", "superglue/rte"],  # aliases resolve to the canonical names
        "data_dir": str(superglue_dir),
        "max_input_length": 64,
        "max_target_length": 6,
        "batch_size": 16,
        "optimizer": {"name": "adamw", "lr": 3.0e-3},
        "max_steps": 40,
        "eval_every": 20,
        "save_every": 20,
        "keep_last": 2,
        "log_every": 5,
        "eval": {"max_examples_per_task": 12, "batch_size": 8},
        "num_threads": 1,
        **overrides,
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory, superglue_dir):
    out = tmp_path_factory.mktemp("superglue") / "run"
    results = train(load_config(base=recipe(superglue_dir)), out)
    return out, results


def test_loss_falls_and_every_evaluation_is_recorded(run, tools):
    out, results = run
    log = tools.jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in log] == list(range(5, 41, 5))
    assert log[-1]["loss"] < 0.6 * log[0]["loss"]
    evaluations = tools.jsonl(out / "metrics.jsonl")
    assert [e["step"] for e in evaluations] == [20, 40]
    for evaluation in evaluations:
        assert list(evaluation["tasks"]) == TASKS
        for name, result in evaluation["tasks"].items():
            assert set(result["metrics"]) == set(get_task(name).metric_names)
            assert result["num_examples"] == 12
            assert result["score"] == pytest.approx(sum(result["metrics"].values()) / len(result["metrics"]))
    assert results["final"]["step"] == 40 and results["final"]["tasks"] == evaluations[-1]["tasks"]
    assert json.loads((out / "results.json").read_text()) == results
    for name in TASKS:
        best = results["best_per_task"]["tasks"][name]
        assert best["score"] == max(e["tasks"][name]["score"] for e in evaluations)
        assert json.loads((out / "best" / name / "best.json").read_text())["step"] == best["step"]
    assert results["best_overall"]["average"] == max(e["average"] for e in evaluations)
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step-00000020", "step-00000040"]
    assert any((out / "tensorboard").iterdir())
    assert load_config(out / "config.yaml").tasks == TASKS


def test_final_checkpoint_loads_on_its_own(run):
    out, _ = run
    model, tokenizer, config, path = load_run_checkpoint(out / "final")
    assert path == out / "final" and model.config.task_names == TASKS and config.tasks == TASKS
    assert not model.training and tokenizer.pad_token_id == 0 and tokenizer.eos_token_id == 1
    assert load_run_checkpoint(out).path == out / "final"  # a run directory means its final model
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load_run_checkpoint(out / "tensorboard")


def test_evaluate_reproduces_the_recorded_metrics(run, tmp_path, capsys):
    out, results = run
    report = tmp_path / "final.json"
    assert main(["evaluate", str(out / "final"), "--out", str(report)]) == 0
    assert json.loads(report.read_text())["tasks"] == results["final"]["tasks"]
    assert "average" in capsys.readouterr().out
    best = results["best_per_task"]["tasks"]["superglue/cb"]
    assert main(["evaluate", str(out / "best" / "superglue" / "cb"), "--tasks", "cb", "--out", str(report)]) == 0
    cb = json.loads(report.read_text())["tasks"]["superglue/cb"]
    assert cb["metrics"] == best["metrics"] and cb["score"] == best["score"]


def test_predict_reproduces_the_recorded_metrics(run, tmp_path, monkeypatch, capsys, superglue_dir):
    out, results = run
    task = get_task("copa", data_dir=superglue_dir)
    references = task.load("validation")[:12]
    raw = [{k: v for k, v in ex.items() if k not in ("inputs", "targets", "task")} for ex in references]
    source, target = tmp_path / "copa.jsonl", tmp_path / "predictions.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in raw))
    assert main(["predict", str(out / "final"), "--task", "copa", "--input", str(source), "--output", str(target)]) == 0
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["gold_label"] for r in rows] == [r["label"] for r in raw]
    assert all(r["label_name"] in (None, *task.label_names) for r in rows)
    metrics = task.compute_metrics([r["prediction"] for r in rows], references)
    assert metrics == results["final"]["tasks"]["superglue/copa"]["metrics"]

    # stdin -> stdout, with ready-made model inputs
    cb = get_task("cb", data_dir=superglue_dir).load("validation")[:12]
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(json.dumps({"inputs": ex["inputs"]}) + "\n" for ex in cb)))
    capsys.readouterr()
    assert main(["predict", str(out / "final"), "--task", "superglue/cb"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    metrics = get_task("cb").compute_metrics([r["prediction"] for r in rows], cb)
    assert metrics == results["final"]["tasks"]["superglue/cb"]["metrics"]


def test_resume_falls_back_from_a_corrupt_checkpoint(run, tmp_path, caplog, superglue_dir):
    out, _ = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    latest = copy / "checkpoints" / "step-00000040" / "model" / "backbone" / "model.safetensors"
    latest.write_bytes(latest.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        results = train(load_config(base=recipe(superglue_dir, max_steps=45, eval_every=None)), copy, resume=True)
    assert "step-00000040 is unreadable" in caplog.text and "falling back to the previous one" in caplog.text
    log = [json.loads(line) for line in (copy / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5, 10, 15, 20, 25, 30, 35, 40, 45]  # steps 21-40 were trained again
    assert results["final"]["step"] == 45 and results["train"]["steps_this_session"] == 25
    assert load_run_checkpoint(copy / "checkpoints" / "step-00000040").model  # written again, readable
    final = copy / "final" / "model" / "backbone" / "model.safetensors"
    final.write_bytes(final.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot load the model in .*final"):
        load_run_checkpoint(copy / "final")


def test_a_second_run_into_the_same_directory_is_refused(run, capsys):
    out, _ = run
    assert main(["train", str(out / "config.yaml"), "--out", str(out)]) == 1
    assert "is not empty (best, cache, checkpoints, config.yaml, final, metrics.jsonl, ...): pass --resume" in capsys.readouterr().err
