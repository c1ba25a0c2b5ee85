"""The `hyperprompt` command line: help, and the documented messages for bad input and faults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hyperprompt.cli.main import build_parser, main

RECIPE = {
    "model": "t5-tiny",
    "tokenizer": "byt5",
    "method": "hyperprompt-global",
    "method_settings": {"encoder_prompt_length": 2, "decoder_prompt_length": 2},
    "tasks": ["synthetic/first", "synthetic/max"],
    "max_input_length": 16,
    "max_target_length": 4,
    "batch_size": 8,
    "optimizer": {"name": "adamw", "lr": 3.0e-3},
    "max_steps": 4,
    "save_every": 2,
    "log_every": 1,
    "eval": {"max_examples_per_task": 8},
    "num_threads": 1,
}


@pytest.fixture
def recipe(tmp_path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "params", "demo"):
        assert f"    {command}" in help_text
    assert build_parser().parse_args(["train", "r.yaml", "--out", "d", "--resume"]).resume


@pytest.mark.parametrize(("override", "message"), [
    ("optimzer.lr=1", "error: unknown config key 'optimzer' (did you mean 'optimizer'?). Valid keys at the top level: "),
    ("batch_size=big", "error: config key 'batch_size': expected an integer, got 'big'"),
    ("optimizer.name=sgd", "error: config key 'optimizer.name': 'sgd' is not one of 'adafactor', 'adamw'"),
    ("tasks=[cb,nope]", "error: unknown task 'nope'."),
])
def test_config_errors_exit_with_the_documented_message(recipe, tmp_path, capsys, override, message):
    code = main(["train", str(recipe), "--out", str(tmp_path / "run"), "--set", override])
    assert code == (1 if "task" in message else 2)
    assert capsys.readouterr().err.startswith(message)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_data_dir_and_missing_task_files(recipe, tmp_path, capsys):
    args = ["train", str(recipe), "--out", str(tmp_path / "run"), "--set", "tasks=[cb]"]
    assert main([*args, "--data-dir", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.startswith(f"error: data directory {tmp_path / 'nowhere'} does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*args, "--data-dir", str(empty)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "CB" in err and "train.jsonl" in err


def test_recipe_is_required_unless_resuming(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    assert "give a recipe" in capsys.readouterr().err


def test_non_finite_loss_stops_and_marks_the_checkpoint_that_gave_it(recipe, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", str(recipe), "--out", str(run), "--set", "optimizer.lr=1e9", "--set", "save_every=1"])
    err = capsys.readouterr().err
    assert code == 3
    # step 1's update made the weights that give NaN at step 2: its checkpoint is not "good"
    assert err.startswith("error: non-finite loss (nan) at step 2: training stopped; no checkpoint was written yet")
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000001"]
    assert (run / "checkpoints" / "step-00000001" / "NONFINITE").is_file()
    assert not (run / "final").exists()
    assert main(["evaluate", str(run / "checkpoints" / "step-00000001"), "--max-examples", "2"]) == 0


def test_training_then_resuming_a_finished_run(recipe, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "best overall checkpoint" in printed and f"wrote {run / 'results.json'}" in printed
    results = json.loads((run / "results.json").read_text())
    assert main(["train", "--out", str(run), "--resume"]) == 0  # nothing left to train: same results
    assert json.loads((run / "results.json").read_text())["final"] == results["final"]
    assert "resumed from" in capsys.readouterr().out


def test_predict_and_evaluate_reject_bad_input(recipe, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(run), "--set", "max_steps=1"]) == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a b c d"}\nnot json\n')
    assert main(["predict", str(run), "--task", "synthetic/first", "--input", str(bad), "--output", "-"]) == 1
    assert capsys.readouterr().err.startswith(f"error: {bad} line 2: not JSON")
    bad.write_text('{"text": "a b c d"}\n')
    assert main(["predict", str(run), "--task", "synthetic/last", "--input", str(bad)]) == 1
    assert "the model was not trained on synthetic/last" in capsys.readouterr().err
    assert main(["predict", str(run), "--task", "synthetic/first", "--input", str(bad)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["text"] == "a b c d" and "prediction" in row and "label" in row
    assert main(["evaluate", str(tmp_path)]) == 1
    assert "is not a checkpoint" in capsys.readouterr().err
