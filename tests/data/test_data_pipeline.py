"""Tokenisation (cache, truncation, EOS), collation, user tasks end to end, synthetic tasks, tokenizers."""

from __future__ import annotations

import itertools
import json
import logging

import numpy as np
import pytest
import torch
import yaml
from tokenizers import Regex, Tokenizer, normalizers
from transformers import PreTrainedTokenizerFast

from hyperprompt.data import (
    Mixture,
    MixtureBatches,
    Seq2SeqCollator,
    conflict_tasks,
    encode_task,
    eval_batches,
    get_task,
    list_tasks,
    load_task_spec,
    synthetic_tasks,
    train_tokenizer,
)
from hyperprompt.data.tokenize import _encode, splits_at_whitespace, tokenize_texts


def test_encode_appends_eos_and_counts_truncation(data_dir, byt5):
    task = get_task("cb", data_dir=data_dir)
    encoded = encode_task(task, "validation", byt5, max_input_length=64, max_target_length=8)
    examples = task.load("validation")
    assert len(encoded) == len(examples) == 56
    long_inputs = sum(len(ex["inputs"].encode()) > 63 for ex in examples)
    long_targets = sum(len(ex["targets"].encode()) > 7 for ex in examples)  # "entailment", "contradiction"
    assert encoded.num_truncated_inputs == long_inputs == 56
    assert encoded.num_truncated_targets == long_targets > 0
    for ex, ids, labels in zip(examples, encoded.input_ids, encoded.labels, strict=True):
        assert ids[-1] == byt5.eos_token_id and len(ids) <= 64
        assert labels[-1] == byt5.eos_token_id and len(labels) <= 8
        assert list(ids[:-1]) == byt5(ex["inputs"], add_special_tokens=False)["input_ids"][:63]
    short = encode_task(task, "validation", byt5, max_input_length=4096, max_target_length=32)
    assert short.num_truncated_inputs == short.num_truncated_targets == 0
    assert byt5.decode(short.labels[0], skip_special_tokens=True) == examples[0]["targets"]


def test_tokenisation_cache_hits_and_invalidates(tmp_path, data_dir, small_tokenizer):
    task = get_task("copa", data_dir=data_dir)
    first = encode_task(task, "train", small_tokenizer, 32, 4, cache_dir=tmp_path)
    assert not first.from_cache and first.cache_path.is_file()
    second = encode_task(task, "train", small_tokenizer, 32, 4, cache_dir=tmp_path)
    assert second.from_cache and second.cache_path == first.cache_path
    assert second.num_truncated_inputs == first.num_truncated_inputs > 0
    assert all(np.array_equal(a, b) for a, b in zip(first.input_ids, second.input_ids, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(first.labels, second.labels, strict=True))
    other_lengths = encode_task(task, "train", small_tokenizer, 64, 4, cache_dir=tmp_path)
    assert not other_lengths.from_cache and other_lengths.cache_path != first.cache_path
    no_prefix = encode_task(
        get_task("copa", data_dir=data_dir, prefix=False), "train", small_tokenizer, 32, 4, tmp_path
    )
    assert not no_prefix.from_cache  # other inputs text, other key
    assert len(list(tmp_path.glob("*.npz"))) == 3


def test_cache_key_includes_the_tokenizer(tmp_path, data_dir, small_tokenizer, byt5):
    task = get_task("cb", data_dir=data_dir)
    encode_task(task, "validation", small_tokenizer, 32, 4, cache_dir=tmp_path)
    assert not encode_task(task, "validation", byt5, 32, 4, cache_dir=tmp_path).from_cache


def test_truncation_is_logged(data_dir, byt5, caplog):
    with caplog.at_level(logging.INFO, logger="hyperprompt.data.tokenize"):
        encode_task(get_task("cb", data_dir=data_dir), "validation", byt5, 64, 8)
    assert "56 inputs cut to 64 tokens" in caplog.text


def test_byt5_fast_path_equals_the_tokenizer(data_dir, byt5):
    texts = [ex["inputs"] for ex in get_task("wic", data_dir=data_dir).load("validation")[:200]]
    texts += ["naïve café – 東京", "an <extra_id_0> sentinel", "</s> inside"]
    fast = tokenize_texts(byt5, texts)
    slow = byt5(texts, add_special_tokens=False)["input_ids"]
    assert [list(ids) for ids in fast] == slow


@pytest.mark.parametrize("max_length", [16, 100, 512])
def test_cutting_long_texts_before_tokenising_changes_nothing(data_dir, byt5, small_tokenizer, max_length):
    texts = [ex["inputs"] for ex in get_task("multirc", data_dir=data_dir).load("validation")[:400]]
    texts += ["word " * 600, "x" * 3000, "tab\tseparated " * 300, "two  spaces   three " * 200, ""]
    # Also with T5's normaliser, which collapses runs of spaces.
    backend = Tokenizer.from_str(small_tokenizer.backend_tokenizer.to_str())
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    t5_like = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>")
    for tokenizer in (small_tokenizer, t5_like, byt5):
        assert splits_at_whitespace(tokenizer)
        cut, n_cut = _encode(tokenizer, texts, max_length)
        full, n_full = _encode(tokenizer, texts, max_length, cut_long_texts=False)
        assert n_cut == n_full
        assert all(np.array_equal(a, b) for a, b in zip(cut, full, strict=True))


def test_collator_pads_right_and_masks_labels():
    collator = Seq2SeqCollator(pad_token_id=0)
    batch = collator(
        [
            {"input_ids": [5, 6, 7, 1], "labels": [9, 1], "task_id": 2},
            {"input_ids": np.array([8, 1]), "labels": np.array([4, 4, 4, 1]), "task_id": 0},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1], [8, 1, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[9, 1, -100, -100], [4, 4, 4, 1]]
    assert batch["task_ids"].tolist() == [2, 0]
    assert all(t.dtype == torch.long for t in batch.values())
    padded = Seq2SeqCollator(pad_token_id=0, pad_to_multiple_of=8)([{"input_ids": [3, 1], "labels": [1]}])
    assert (
        padded["input_ids"].shape == (1, 8) and padded["labels"].shape == (1, 8) and "task_ids" not in padded
    )
    with pytest.raises(ValueError, match="task_id"):
        collator([{"input_ids": [1], "task_id": 0}, {"input_ids": [1]}])


def test_mixture_batches_have_the_sampled_tasks(data_dir, small_tokenizer):
    tasks = [get_task(name, data_dir=data_dir) for name in ("cb", "copa")]
    mixture = Mixture(tasks)
    encoded = [encode_task(t, "train", small_tokenizer, 64, 6) for t in tasks]
    sampler = mixture.sampler(batch_size=8, seed=0)
    expected = list(itertools.islice(mixture.sampler(batch_size=8, seed=0), 3))
    batches = list(itertools.islice(MixtureBatches(encoded, sampler, Seq2SeqCollator(0)), 3))
    for batch, pairs in zip(batches, expected, strict=True):
        assert batch["task_ids"].tolist() == [t for t, _ in pairs]
        for row, (task_id, index) in enumerate(pairs):
            ids = encoded[task_id].input_ids[index]
            assert batch["input_ids"][row, : len(ids)].tolist() == ids.tolist()
            assert batch["attention_mask"][row].sum() == len(ids)


def test_eval_batches_keep_order_and_references(data_dir, byt5):
    task = get_task("copa", data_dir=data_dir)
    encoded = encode_task(task, "validation", byt5, 256, 8)
    batches = list(eval_batches(encoded, task_id=3, batch_size=32, collator=Seq2SeqCollator(0)))
    assert [len(refs) for _, refs in batches] == [32, 32, 32, 4]
    assert [r["idx"] for _, refs in batches for r in refs] == list(range(100))
    assert all((b["task_ids"] == 3).all() for b, _ in batches)


def write_user_task(tmp_path, fmt="jsonl"):
    rows = [
        {"review": f"review number {i} was {'good' if i % 3 else 'bad'}", "stars": i % 3 != 0}
        for i in range(30)
    ]
    for split, part in (("train", rows[:24]), ("dev", rows[24:])):
        path = tmp_path / f"{split}.{fmt}"
        if fmt == "jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in part))
        else:
            path.write_text("review,stars\n" + "".join(f'"{r["review"]}",{r["stars"]}\n' for r in part))
    spec = {
        "name": "user/reviews",
        "train": f"train.{fmt}",
        "validation": f"dev.{fmt}",
        "input_template": "reviews: {review}",
        "target_field": "stars",
        "labels": {False: "negative", True: "positive"},
        "metric": ["accuracy", "f1"],
    }
    (tmp_path / "reviews.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "reviews.yaml"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_user_task_goes_through_the_same_path_as_a_builtin(tmp_path, data_dir, small_tokenizer, fmt):
    spec_path = write_user_task(tmp_path, fmt)
    task = load_task_spec(spec_path)
    assert "user/reviews" in list_tasks("user") and get_task("user/reviews") is task
    train = task.load("train")
    assert len(train) == 24 and train[0]["inputs"] == "reviews: review number 0 was bad"
    assert train[0]["targets"] == "negative" and train[1]["targets"] == "positive"
    assert task.label_names == ("negative", "positive") and task.metric_names == ("accuracy", "f1")
    validation = task.load("validation")
    assert task.compute_metrics([ex["targets"] for ex in validation], validation) == {
        "accuracy": 100.0,
        "f1": 100.0,
    }
    assert task.compute_metrics(["positive"] * 6, validation)["accuracy"] == pytest.approx(100 * 4 / 6)

    # Mixed with a built-in task: mixture -> tokenisation (cached) -> sampler -> collated batch.
    builtin = get_task("cb", data_dir=data_dir)
    mixture = Mixture([builtin, get_task("reviews")])
    encoded = [
        encode_task(t, "train", small_tokenizer, 48, 6, cache_dir=tmp_path / "cache") for t in mixture.tasks
    ]
    batches = MixtureBatches(encoded, mixture.sampler(batch_size=16, seed=0), Seq2SeqCollator(0))
    batch = next(iter(batches))
    assert batch["input_ids"].shape[0] == 16 and set(batch["task_ids"].tolist()) <= {0, 1}
    assert (batch["labels"] != -100).any()
    assert encode_task(task, "train", small_tokenizer, 48, 6, cache_dir=tmp_path / "cache").from_cache


def test_user_task_free_text_and_regression(tmp_path):
    (tmp_path / "data.jsonl").write_text(
        "".join(json.dumps({"a": i, "b": i + 1, "sum": str(2 * i + 1)}) + "\n" for i in range(5))
    )
    text_task = load_task_spec(
        {"name": "user/add", "train": str(tmp_path / "data.jsonl"), "input_template": "add {a} {b}",
         "target_field": "sum", "metric": "exact_match"},
        register=False,
    )  # fmt: skip
    examples = text_task.load("train")
    assert examples[2]["inputs"] == "add 2 3" and examples[2]["targets"] == "5"
    assert text_task.compute_metrics(["1", "3", "6", "7", " 9 "], examples) == {"exact_match": 80.0}
    numeric = load_task_spec(
        {"name": "user/add_score", "train": str(tmp_path / "data.jsonl"), "input_template": "add {a} {b}",
         "target_field": "sum", "metric": "pearson_spearman"},
        register=False,
    )  # fmt: skip
    scores = numeric.compute_metrics(["1", "3", "5", "7", "9.5"], numeric.load("train"))
    assert scores["spearman"] == pytest.approx(100.0) and 99 < scores["pearson"] < 100


def test_validation_can_be_split_into_validation_and_test(data_dir):
    full = get_task("multirc", data_dir=data_dir).load("validation")
    task = get_task("multirc", data_dir=data_dir, test_fraction=0.5, split_seed=1)
    assert task.splits == ("train", "validation", "test")
    validation, test = task.load("validation"), task.load("test")
    assert len(validation) + len(test) == len(full)
    paragraphs = lambda examples: {ex["idx"]["paragraph"] for ex in examples}  # noqa: E731
    assert not paragraphs(validation) & paragraphs(test)  # whole paragraphs (and questions) move together
    assert abs(len(paragraphs(test)) - 83 / 2) <= 1
    again = get_task("multirc", data_dir=data_dir, test_fraction=0.5, split_seed=1).load("test")
    assert again == test
    other = get_task("multirc", data_dir=data_dir, test_fraction=0.5, split_seed=2).load("test")
    assert other != test
    axg = get_task("axg", data_dir=data_dir, test_fraction=0.5)
    for split in ("validation", "test"):  # AX-g pairs stay together, so parity stays computable
        examples = axg.load(split)
        assert axg.compute_metrics([ex["targets"] for ex in examples], examples)["gender_parity"] == 100.0


def test_synthetic_tasks_conflict_and_carry_no_task_name():
    tasks = synthetic_tasks(seed=0)
    assert [t.name for t in tasks] == [
        "synthetic/first",
        "synthetic/last",
        "synthetic/reverse",
        "synthetic/max",
    ]
    assert [t.num_examples("train") for t in tasks] == [2000, 1000, 500, 250]
    first, last = tasks[0].load("train"), tasks[1].load("train")
    assert all(
        len(ex["inputs"]) <= 12 and len(ex["targets"].split()) <= 4 for t in tasks for ex in t.load("train")
    )
    assert all(
        set(ex["inputs"]) <= set("abcde ") for t in tasks for ex in t.load("validation")
    )  # no task name
    targets_by_input = {}
    for task in tasks:
        for ex in task.load("train"):
            targets_by_input.setdefault(ex["inputs"], set()).add(ex["targets"])
    assert any(len(targets) > 1 for targets in targets_by_input.values())  # same input, different targets
    assert synthetic_tasks(seed=0, register=False)[0].load("train") == first
    assert synthetic_tasks(seed=1, register=False)[0].load("train") != first
    for task in tasks:
        validation = task.load("validation")
        assert task.compute_metrics([ex["targets"] for ex in validation], validation) == {
            task.metric_names[0]: 100.0
        }
        assert task.compute_metrics(["?"] * len(validation), validation) == {task.metric_names[0]: 0.0}
    assert tasks[0].postprocess("c") == 2 and tasks[0].postprocess("z") is None
    assert [ex["targets"] for ex in last[:3]] == [ex["inputs"][-1] for ex in last[:3]]
    assert get_task("synthetic/first", prefix=True).load("train")[0]["inputs"].startswith("first ")


def test_conflict_tasks_share_inputs_with_different_targets():
    x, y = conflict_tasks(n_inputs=100, seed=3)
    x_train, y_train = x.load("train"), y.load("train")
    assert [ex["inputs"] for ex in x_train] == [ex["inputs"] for ex in y_train]
    assert len({ex["inputs"] for ex in x_train}) == 100
    assert all(a["targets"] != b["targets"] for a, b in zip(x_train, y_train, strict=True))
    assert not {ex["inputs"] for ex in x.load("validation")} & {ex["inputs"] for ex in x_train}
    assert x.compute_metrics([ex["targets"] for ex in y_train], x_train) == {"accuracy": 0.0}
    assert get_task("synthetic/conflict_last").name == "synthetic/conflict_last"


def test_trained_tokenizer_is_t5_compatible(tmp_path, small_tokenizer):
    from transformers import AutoTokenizer

    tok = small_tokenizer
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    ids = tok("cb hypothesis: the premise is true").input_ids
    assert ids[-1] == 1
    assert tok.decode(ids, skip_special_tokens=True) == "cb hypothesis: the premise is true"
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded("contradiction").input_ids == tok("contradiction").input_ids
    synthetic = train_tokenizer(
        [ex["inputs"] for t in synthetic_tasks(register=False) for ex in t.load("train")]
    )
    assert synthetic.decode(synthetic("b a c d").input_ids, skip_special_tokens=True) == "b a c d"
