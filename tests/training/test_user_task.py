"""A task defined by a user (a jsonl file + a YAML spec, no Python) trains, evaluates and predicts
through the same path as a built-in one, mixed with a built-in task (SuperGLUE CB)."""

from __future__ import annotations

import json
import random

import yaml

from hyperprompt.training import load_config, load_run_checkpoint, train
from hyperprompt.training.evaluate import evaluate_checkpoint


def write_user_task(directory):
    rng = random.Random(0)
    for split, size in (("train", 300), ("dev", 40)):
        with open(directory / f"parity_{split}.jsonl", "w") as f:
            for _ in range(size):
                bits = "".join(rng.choice("01") for _ in range(4))
                f.write(json.dumps({"bits": " ".join(bits), "label": bits.count("1") % 2}) + "\n")
    spec = {"name": "user/parity", "train": "parity_train.jsonl", "validation": "parity_dev.jsonl",
            "input_template": "parity: {bits}", "target_field": "label", "labels": {0: "even", 1: "odd"},
            "metric": ["accuracy", "f1"]}
    (directory / "parity.yaml").write_text(yaml.safe_dump(spec))
    return directory / "parity.yaml"


def test_user_task_trains_like_a_builtin_one(tmp_path, superglue_dir):
    spec = write_user_task(tmp_path)
    config = load_config(base={
        "model": "t5-tiny", "tokenizer": "byt5", "method": "hyperprompt-share",
        "method_settings": {"encoder_prompt_length": 4, "decoder_prompt_length": 2},
        "task_files": [str(spec)], "tasks": ["user/parity", "cb"], "data_dir": str(superglue_dir),
        "max_input_length": 48, "max_target_length": 8, "batch_size": 16, "max_steps": 30, "eval_every": 30,
        "save_every": 30, "log_every": 10, "optimizer": {"name": "adamw", "lr": 3e-3},
        "eval": {"max_examples_per_task": 20, "batch_size": 20}, "num_threads": 1,
    })
    out = tmp_path / "run"
    results = train(config, out)
    tasks = results["final"]["tasks"]
    assert list(tasks) == ["user/parity", "superglue/cb"]
    assert set(tasks["user/parity"]["metrics"]) == {"accuracy", "f1"}
    assert tasks["user/parity"]["num_examples"] == 20
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"]
    # the checkpoint knows the user task on its own: reload and re-evaluate in a fresh registry lookup
    model, _, run_config, _ = load_run_checkpoint(out / "final")
    assert model.config.task_names == ["user/parity", "superglue/cb"]
    scores = evaluate_checkpoint(out / "final", tasks=["user/parity"])
    assert scores["tasks"]["user/parity"]["metrics"] == tasks["user/parity"]["metrics"]
