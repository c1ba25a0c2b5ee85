"""Helpers for the training tests: tiny recipes, subprocess runs of the CLI, saved weights."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("HYPERPROMPT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

#: A recipe small enough to train in seconds on one core: synthetic tasks, ByT5 bytes, t5-tiny.
SYNTHETIC_RECIPE: dict[str, Any] = {
    "model": "t5-tiny",
    "tokenizer": "byt5",
    "method": "hyperprompt-global",
    "method_settings": {"encoder_prompt_length": 3, "decoder_prompt_length": 2},
    "tasks": ["synthetic/first", "synthetic/last", "synthetic/reverse", "synthetic/max"],
    "max_input_length": 16,
    "max_target_length": 8,
    "batch_size": 16,
    "optimizer": {"name": "adamw", "lr": 3.0e-3},
    "max_steps": 8,
    "save_every": 8,
    "log_every": 1,
    "eval": {"max_examples_per_task": 12, "batch_size": 8},
    "num_threads": 1,
}


def write_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def cli_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def cli(*args: str | Path) -> list[str]:
    """The command line of ``hyperprompt ARGS`` in a fresh interpreter."""
    return [sys.executable, "-m", "hyperprompt.cli.main", *map(str, args)]


def run_cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), env=cli_env(), capture_output=True, text=True, timeout=timeout)


def model_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """Every saved tensor of a model directory (backbone + added weights)."""
    weights = load_file(str(model_dir / "model" / "backbone" / "model.safetensors"))
    added = model_dir / "model" / "method_weights.safetensors"
    if added.is_file():
        weights.update({f"added.{k}": v for k, v in load_file(str(added)).items()})
    return weights


def batch_for(task_ids: list[int]) -> dict[str, torch.Tensor]:
    """A fixed random t5-tiny batch (vocab 384) of 7 input and 3 decoder tokens with these task ids."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 200, (len(task_ids), 7), generator=generator)
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids),
                decoder_input_ids=torch.randint(3, 200, (len(task_ids), 3), generator=generator),
                task_ids=torch.tensor(task_ids))


def jsonl(path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def superglue_dir() -> Path:
    path = SHARED_DATA / "superglue"
    if not path.is_dir():
        pytest.fail(f"the shared SuperGLUE files are missing at {path} (set HYPERPROMPT_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def tools() -> types.SimpleNamespace:
    """The helpers above (test modules cannot import conftest under --import-mode=importlib)."""
    return types.SimpleNamespace(
        SYNTHETIC_RECIPE=SYNTHETIC_RECIPE, write_recipe=write_recipe, cli=cli, cli_env=cli_env, run_cli=run_cli,
        model_weights=model_weights, jsonl=jsonl, batch_for=batch_for,
    )
