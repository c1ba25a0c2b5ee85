"""The hub source, offline: the same loading code pointed at local copies in the hub's layout.

The test writes ``<config>/<split>-00000-of-00001.parquet`` files with the hub's features
(ClassLabel labels, float32 STS-B scores, struct ``idx``) and a ``README.md`` listing the configs,
as on ``nyu-mll/glue`` and ``aps/super_glue``; ``get_task(name, hub_id=<that folder>)`` then goes
through ``datasets.load_dataset(hub_id, config, split=...)`` exactly as it would for the hub.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, Features, Value
from datasets import List as ListFeature

from hyperprompt.data import get_task
from hyperprompt.data.glue import SPEC_BY_NAME

S, I32 = Value("string"), Value("int32")


def label(name: str) -> ClassLabel:
    return ClassLabel(names=list(SPEC_BY_NAME[name].label_names))


# The hub's schema of each config (what datasets reports for nyu-mll/glue and aps/super_glue).
HUB_FEATURES = {
    "glue/stsb": {"sentence1": S, "sentence2": S, "label": Value("float32"), "idx": I32},
    "glue/rte": {"sentence1": S, "sentence2": S, "label": label("glue/rte"), "idx": I32},
    "glue/mnli": {"premise": S, "hypothesis": S, "label": label("glue/mnli"), "idx": I32},
    "superglue/cb": {"premise": S, "hypothesis": S, "idx": I32, "label": label("superglue/cb")},
    "superglue/copa": {
        "premise": S,
        "choice1": S,
        "choice2": S,
        "question": S,
        "idx": I32,
        "label": label("superglue/copa"),
    },
    "superglue/multirc": {
        "paragraph": S,
        "question": S,
        "answer": S,
        "idx": {"paragraph": I32, "question": I32, "answer": I32},
        "label": label("superglue/multirc"),
    },
    "superglue/wsc": {
        "text": S,
        "span1_index": I32,
        "span2_index": I32,
        "span1_text": S,
        "span2_text": S,
        "idx": I32,
        "label": label("superglue/wsc"),
    },
    "superglue/axb": {"sentence1": S, "sentence2": S, "idx": I32, "label": label("superglue/axb")},
    "superglue/record": {
        "passage": S,
        "query": S,
        "entities": ListFeature(S),
        "entity_spans": ListFeature({"text": S, "start": I32, "end": I32}),
        "answers": ListFeature(S),
        "idx": {"passage": I32, "query": I32},
    },
}


def hub_rows(examples: list[dict], features: dict) -> list[dict]:
    """Our examples back in the hub's schema (only the hub's columns)."""
    return [{key: ex[key] for key in features} for ex in examples]


def write_config(root: Path, config: str, splits: dict[str, list[dict]], features: dict) -> None:
    for split, rows in splits.items():
        path = root / config / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        Dataset.from_list(rows, features=Features(features)).to_parquet(str(path))


def write_readme(root: Path) -> None:
    lines = ["---", "configs:"]
    for config_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        lines += [f"- config_name: {config_dir.name}", "  data_files:"]
        for parquet in sorted(config_dir.glob("*.parquet")):
            split = parquet.name.split("-")[0]
            lines += [f"  - split: {split}", f"    path: {config_dir.name}/{split}-*"]
    (root / "README.md").write_text("\n".join(lines + ["---", ""]))


# Both splits of the small tasks (the train mapping is the same code for all), validation of the others.
SPLITS_WRITTEN = {
    "glue/stsb": ("validation",),
    "glue/rte": ("train", "validation"),
    "superglue/cb": ("train", "validation"),
    "superglue/copa": ("train", "validation"),
    "superglue/multirc": ("validation",),
    "superglue/wsc": ("train", "validation"),
}


@pytest.fixture(scope="module")
def hub_dirs(tmp_path_factory, data_dir, record_dir):
    """Local copies of nyu-mll/glue and aps/super_glue (a few configs) in the hub's layout."""
    root = tmp_path_factory.mktemp("hub")
    glue, superglue = root / "glue", root / "super_glue"
    for name, splits in SPLITS_WRITTEN.items():
        task, spec = get_task(name, data_dir=data_dir), SPEC_BY_NAME[name]
        rows = {
            hub: hub_rows(task.load(split), HUB_FEATURES[name])
            for split in splits
            for hub, _ in spec.hub_splits[split]
        }
        write_config(
            glue if spec.benchmark == "glue" else superglue, spec.hub_config, rows, HUB_FEATURES[name]
        )
    axb = get_task("axb", data_dir=data_dir).load("validation")
    write_config(
        superglue,
        "axb",
        {"test": hub_rows(axb, HUB_FEATURES["superglue/axb"])},
        HUB_FEATURES["superglue/axb"],
    )

    # ReCoRD: the hub stores entities as an unordered set.
    record = hub_rows(
        get_task("record", data_dir=record_dir).load("validation"), HUB_FEATURES["superglue/record"]
    )
    for row in record:
        random.Random(0).shuffle(row["entities"])
    write_config(superglue, "record", {"validation": record}, HUB_FEATURES["superglue/record"])

    # MNLI: matched and mismatched validation splits, typed by hand.
    def mnli(rows):
        return [{"premise": p, "hypothesis": h, "label": y, "idx": i} for i, (p, h, y) in enumerate(rows)]

    write_config(
        glue,
        "mnli",
        {
            "train": mnli([("p0", "h0", 0)]),
            "validation_matched": mnli([("p1", "h1", 1), ("p2", "h2", 0)]),
            "validation_mismatched": mnli([("p3", "h3", 2)]),
        },
        HUB_FEATURES["glue/mnli"],
    )
    # A config whose labels are in another order, and one without gold labels (a test split).
    write_config(superglue, "rte", {"validation": [{"premise": "p", "hypothesis": "h", "idx": 0, "label": 0}]},
                 {"premise": S, "hypothesis": S, "idx": I32, "label": ClassLabel(names=["not_entailment", "entailment"])})  # fmt: skip
    write_config(superglue, "boolq", {"validation": [{"question": "q", "passage": "p", "idx": 0, "label": -1}]},
                 {"question": S, "passage": S, "idx": I32, "label": label("superglue/boolq")})  # fmt: skip
    write_readme(glue)
    write_readme(superglue)
    return {"glue": str(glue), "superglue": str(superglue)}


@pytest.fixture(autouse=True)
def _offline_datasets_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


@pytest.mark.parametrize(
    "name",
    [
        "glue/stsb",
        "glue/rte",
        "superglue/cb",
        "superglue/copa",
        "superglue/multirc",
        "superglue/wsc",
        "superglue/axb",
    ],
)
def test_hub_layout_gives_the_same_examples_as_the_official_files(hub_dirs, data_dir, name):
    hub_task = get_task(name, hub_id=hub_dirs[SPEC_BY_NAME[name].benchmark])
    file_task = get_task(name, data_dir=data_dir)
    columns = set(HUB_FEATURES[name]) | {"inputs", "targets", "task"}
    for split in SPLITS_WRITTEN.get(name, ("validation",)):
        from_hub = [{k: ex[k] for k in columns} for ex in hub_task.load(split)]
        from_files = [{k: ex[k] for k in columns} for ex in file_task.load(split)]
        if name == "glue/stsb":  # the hub stores scores as float32 (e.g. 2.1111112 for 2.11111111111111)
            assert [ex.pop("label") for ex in from_hub] == pytest.approx(
                [ex.pop("label") for ex in from_files]
            )
        assert from_hub == from_files
        assert isinstance(hub_task.load(split)[0]["label"], float if name == "glue/stsb" else int)


def test_hub_stsb_scores_come_back_as_the_file_decimals(hub_dirs, data_dir):
    example = get_task("stsb", hub_id=hub_dirs["glue"]).load("validation")[1]
    assert example["label"] == 4.75 and example["targets"] == "4.8"


def test_hub_record_and_mnli(hub_dirs):
    record = get_task("record", hub_id=hub_dirs["superglue"]).load("validation")
    assert record[0]["inputs"].startswith(
        "record query: A @placeholder is a bird. entities: penguin, pigeon, potato"
    )
    assert record[2]["idx"] == {"passage": 1, "query": 11} and record[1]["answers"] == [
        "Barack Obama",
        "Obama",
    ]
    mnli = get_task("mnli", hub_id=hub_dirs["glue"])
    validation = mnli.load("validation")
    assert [(ex["inputs"], ex["targets"], ex["subset"]) for ex in validation] == [
        ("mnli hypothesis: h1 premise: p1", "neutral", "matched"),
        ("mnli hypothesis: h2 premise: p2", "entailment", "matched"),
        ("mnli hypothesis: h3 premise: p3", "contradiction", "mismatched"),
    ]
    assert mnli.compute_metrics(["neutral", "neutral", "contradiction"], validation) == {
        "accuracy_matched": 50.0,
        "accuracy_mismatched": 100.0,
    }


def test_hub_labels_are_checked(hub_dirs):
    with pytest.raises(ValueError, match=r"has labels \['not_entailment', 'entailment'\], expected"):
        get_task("superglue/rte", hub_id=hub_dirs["superglue"]).load("validation")
    with pytest.raises(ValueError, match="without a gold label"):
        get_task("boolq", hub_id=hub_dirs["superglue"]).load("validation")


def test_unreachable_hub_gives_a_helpful_error(tmp_path):
    missing = str(tmp_path / "no_such_copy")
    with pytest.raises(RuntimeError, match=rf"split 'train' of config 'cb' of '{missing}'.*pass data_dir="):
        get_task("cb", hub_id=missing).load("train")
