"""Fixtures of the data tests: the official GLUE / SuperGLUE files and small offline tokenizers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("HYPERPROMPT_SHARED_DATA", REPO_ROOT / ".." / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The official files (../shared/data next to the repository, or $HYPERPROMPT_SHARED_DATA)."""
    if not (SHARED_DATA / "superglue").is_dir() or not (SHARED_DATA / "glue").is_dir():
        pytest.fail(
            f"the official GLUE/SuperGLUE files are missing at {SHARED_DATA} (set HYPERPROMPT_SHARED_DATA)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def byt5():
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()


@pytest.fixture(scope="session")
def small_tokenizer(data_dir):
    """A tokenizer trained on a little SuperGLUE text (no download)."""
    from hyperprompt.data import get_task, train_tokenizer

    examples = get_task("cb", data_dir=data_dir).load("train") + get_task("copa", data_dir=data_dir).load(
        "train"
    )
    return train_tokenizer([t for ex in examples for t in (ex["inputs"], ex["targets"])], vocab_size=600)


def _record_row(idx: int, passage: str, entities: list[str], queries: list[tuple[str, list[str]]]) -> dict:
    """A row in the official ReCoRD jsonl schema (entity spans with inclusive ends)."""
    spans = [{"start": passage.index(e), "end": passage.index(e) + len(e) - 1} for e in entities]
    qas = [
        {
            "query": query,
            "answers": [
                {"start": passage.index(a), "end": passage.index(a) + len(a) - 1, "text": a} for a in answers
            ],
            "idx": 10 * idx + i,
        }
        for i, (query, answers) in enumerate(queries)
    ]
    return {"source": "Daily mail", "passage": {"text": passage, "entities": spans}, "qas": qas, "idx": idx}


@pytest.fixture(scope="session")
def record_dir(tmp_path_factory) -> Path:
    """A folder with ReCoRD/val.jsonl: 2 passages, 3 queries in the official schema (ReCoRD is not in
    ../shared/data)."""
    rows = [
        _record_row(
            0,
            "The penguin and the pigeon met a potato.\n@highlight\nBirds meet food",
            ["penguin", "pigeon", "potato"],
            [("A @placeholder is a bird.", ["penguin", "pigeon"])],
        ),
        _record_row(
            1,
            "Barack Obama visited Paris. Obama liked France.",
            ["Barack Obama", "Paris", "Obama", "France"],
            [
                ("@placeholder visited a city.", ["Barack Obama", "Obama"]),
                ("He liked @placeholder.", ["France"]),
            ],
        ),
    ]
    folder = tmp_path_factory.mktemp("record")
    (folder / "ReCoRD").mkdir()
    (folder / "ReCoRD" / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder
