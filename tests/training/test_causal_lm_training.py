"""`hyperprompt train / evaluate / predict` end to end on decoder-only presets (synthetic tasks, ByT5 bytes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hyperprompt.cli.main import main
from hyperprompt.model import MultiTaskT5

RECIPE = {
    "tokenizer": "byt5",
    "tasks": ["synthetic/first", "synthetic/max"],
    "max_input_length": 16,
    "max_target_length": 4,
    "batch_size": 32,
    "optimizer": {"name": "adamw", "lr": 3.0e-3},
    "log_every": 50,
    "eval": {"max_examples_per_task": 40, "batch_size": 16},
    "num_threads": 1,
}


def train(tmp_path: Path, model: str, method: str, steps: int, settings: dict | None = None) -> Path:
    recipe = {**RECIPE, "model": model, "method": method, "max_steps": steps, "save_every": steps,
              "method_settings": settings or {}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out)]) == 0
    return out


def test_llama_tiny_learns_and_evaluate_and_predict_reproduce(tmp_path, capsys):
    out = train(tmp_path, "llama-tiny", "hyperprompt-global", 150, {"decoder_prompt_length": 3})
    results = json.loads((out / "results.json").read_text())
    final = results["final"]
    assert final["tasks"]["synthetic/first"]["score"] >= 60  # chance (most frequent letter) is ~25
    capsys.readouterr()

    saved = MultiTaskT5.from_pretrained(out / "final" / "model")
    assert type(saved.base).__name__ == "LlamaForCausalLM" and saved.config.apply_to == "decoder"

    assert main(["evaluate", str(out / "final"), "--out", str(tmp_path / "eval.json"),
                 "--predictions", str(tmp_path / "predictions.jsonl")]) == 0
    again = json.loads((tmp_path / "eval.json").read_text())
    assert again["average"] == final["average"]
    for name, result in final["tasks"].items():
        assert again["tasks"][name]["metrics"] == result["metrics"]
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert all(len(p["prediction"]) <= 4 for p in predictions)  # the continuation only, not the input

    examples = tmp_path / "examples.jsonl"
    examples.write_text('{"inputs": "e c a b"}\n{"inputs": "d c d b"}\n')
    capsys.readouterr()
    assert main(["predict", str(out / "final"), "--task", "synthetic/first", "--input", str(examples),
                 "--output", str(tmp_path / "out.jsonl")]) == 0
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["prediction"] for line in lines] == ["e", "d"]  # the first letter, learned


@pytest.mark.parametrize("model,method", [("qwen2-tiny", "prompt-tuning"), ("gemma2-tiny", "adapter"),
                                          ("mistral-tiny", "prefix-tuning")])
def test_other_presets_train_and_evaluate_reproduces(tmp_path, model, method):
    out = train(tmp_path, model, method, 4)
    final = json.loads((out / "results.json").read_text())["final"]
    assert main(["evaluate", str(out / "final"), "--out", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["tasks"] == final["tasks"]
