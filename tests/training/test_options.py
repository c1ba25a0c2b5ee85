"""The loop with every registered method and with the training options (a few steps each)."""

from __future__ import annotations

import pytest

from hyperprompt.model import MultiTaskT5
from hyperprompt.training import load_config, load_run_checkpoint, train


def short_run(tools, tmp_path, *overrides: str) -> list[float]:
    recipe = {**tools.SYNTHETIC_RECIPE, "model_overrides": {"dropout_rate": 0.0}, "max_steps": 3,
              "save_every": 3, "method_settings": {}, "eval": {"max_examples_per_task": 4}}
    config = load_config(base=recipe, overrides=list(overrides))
    train(config, tmp_path / "run")
    return [r["loss"] for r in tools.jsonl(tmp_path / "run" / "train_log.jsonl")]


@pytest.mark.parametrize("method", sorted(MultiTaskT5.registry))
def test_every_registered_method_trains_saves_and_loads(method, tools, tmp_path):
    losses = short_run(tools, tmp_path, f"method={method}")
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    model, _, config, _ = load_run_checkpoint(tmp_path / "run" / "final")
    assert type(model) is MultiTaskT5.registry[method] and config.method == method


def test_gradient_checkpointing_gives_the_same_losses(tools, tmp_path):
    plain = short_run(tools, tmp_path / "a", "method=hyperprompt-global")
    checkpointed = short_run(tools, tmp_path / "b", "method=hyperprompt-global", "gradient_checkpointing=true")
    assert checkpointed == pytest.approx(plain, rel=1e-6)


@pytest.mark.parametrize("overrides", [
    ["optimizer.name=adafactor", "schedule.name=cosine", "schedule.warmup_steps=2"],
    ["optimizer.name=adamw", "optimizer.weight_decay=0.1", "schedule.name=linear", "max_grad_norm=0.5"],
    ["precision=bf16"],
    ["mixture={rate: temperature, temperature: 2.0, mixed: false}", "tokenizer=trained", "tokenizer_vocab_size=40"],
], ids=["adafactor-cosine", "adamw-linear-clip", "bf16", "temperature-single-task-trained-tokenizer"])
def test_training_options(overrides, tools, tmp_path):
    losses = short_run(tools, tmp_path, *overrides)
    assert len(losses) == 3 and all(0 < loss < 20 for loss in losses)


def test_a_local_model_directory_and_tokenizer(tools, tmp_path):
    short_run(tools, tmp_path / "first", "method=mtl")
    saved = tmp_path / "first" / "run"
    losses = short_run(tools, tmp_path / "second", f"model={saved / 'final' / 'model' / 'backbone'}",
                       f"tokenizer={saved / 'tokenizer'}", "method=hyperprompt-share")
    assert len(losses) == 3
    config = load_config(tmp_path / "second" / "run" / "config.yaml")
    assert config.model == str(saved / "final" / "model" / "backbone")  # absolute paths in the saved recipe


def test_a_run_whose_targets_are_cut_says_so_per_task(tools, tmp_path, capsys):
    """ByT5 bytes: synthetic/reverse's answers ('c b a e') are 7 bytes + EOS; the others' are 1 + EOS."""
    short_run(tools, tmp_path / "cut", "max_target_length=6")
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: synthetic/reverse: ")
    assert "targets are longer than max_target_length=6" in warnings[0] and "validation targets" in warnings[0]
    short_run(tools, tmp_path / "whole", "max_target_length=8")
    assert "warning:" not in capsys.readouterr().out
