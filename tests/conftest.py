"""Shared test helpers: tiny random-init T5s built from configs (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HYPERPROMPT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared GLUE/SuperGLUE files are missing at {SHARED_DATA} (set HYPERPROMPT_SHARED_DATA)")
    return SHARED_DATA
