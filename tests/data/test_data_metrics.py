"""Metrics against independent scikit-learn / scipy references, on random predictions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from hyperprompt.data import benchmark_score, get_task, task_score
from hyperprompt.data import metrics as m


def random_label_texts(task, examples, rng, invalid_rate=0.1):
    """Random predictions: a random label name, or (sometimes) text that is no label."""
    texts = []
    for _ in examples:
        if rng.random() < invalid_rate:
            texts.append(rng.choice(["maybe", "", "True.", "entailment!"]))
        else:
            texts.append(task.label_names[rng.integers(len(task.label_names))])
    return texts


def as_ids(task, texts, wrong_for=None):
    """Class ids of texts; an invalid text becomes ``wrong_for(i)`` (the class the reference counts it as)."""
    ids = []
    for i, text in enumerate(texts):
        ids.append(task.label_names.index(text) if text in task.label_names else wrong_for(i))
    return ids


@pytest.mark.parametrize("name", ["glue/cola", "superglue/axb"])
def test_mcc(data_dir, name):
    rng = np.random.default_rng(0)
    task = get_task(name, data_dir=data_dir)
    examples = task.load("validation")
    gold = [ex["label"] for ex in examples]
    predictions = random_label_texts(task, examples, rng)
    expected = sklearn.metrics.matthews_corrcoef(gold, as_ids(task, predictions, lambda i: 1 - gold[i]))
    assert task.compute_metrics(predictions, examples) == pytest.approx({"mcc": 100 * expected})


def test_f1_and_accuracy_mrpc(data_dir):
    rng = np.random.default_rng(1)
    task = get_task("mrpc", data_dir=data_dir)
    examples = task.load("validation")
    gold = [ex["label"] for ex in examples]
    predictions = random_label_texts(task, examples, rng)
    flipped = as_ids(task, predictions, lambda i: 1 - gold[i])
    valid = [p in task.label_names for p in predictions]
    expected_accuracy = np.mean([v and f == g for v, f, g in zip(valid, flipped, gold, strict=True)])
    scores = task.compute_metrics(predictions, examples)
    assert scores == pytest.approx(
        {"f1": 100 * sklearn.metrics.f1_score(gold, flipped), "accuracy": 100 * expected_accuracy}
    )


def test_cb_macro_f1_and_accuracy(data_dir):
    rng = np.random.default_rng(2)
    task = get_task("cb", data_dir=data_dir)
    examples = task.load("train")
    gold = [ex["label"] for ex in examples]
    predictions = random_label_texts(task, examples, rng, invalid_rate=0.2)
    ids = as_ids(task, predictions, lambda i: -1)
    expected_f1 = sklearn.metrics.f1_score(gold, ids, labels=[0, 1, 2], average="macro")
    expected_accuracy = sklearn.metrics.accuracy_score(gold, ids)
    assert task.compute_metrics(predictions, examples) == pytest.approx(
        {"macro_f1": 100 * expected_f1, "accuracy": 100 * expected_accuracy}
    )


def test_stsb_pearson_spearman(data_dir):
    rng = np.random.default_rng(3)
    task = get_task("stsb", data_dir=data_dir)
    examples = task.load("validation")
    gold = np.array([ex["label"] for ex in examples])
    values = np.round(gold + rng.normal(0, 1.0, len(gold)), 1)
    predictions = [f"{v:.1f}" for v in values]
    for i in range(0, len(predictions), 10):  # every tenth output is not a number: scored as -1
        predictions[i], values[i] = "similar", -1.0
    scores = task.compute_metrics(predictions, examples)
    assert scores == pytest.approx(
        {
            "pearson": 100 * scipy.stats.pearsonr(values, gold)[0],
            "spearman": 100 * scipy.stats.spearmanr(values, gold)[0],
        }
    )


@pytest.mark.parametrize(
    "name", ["boolq", "copa", "superglue/rte", "glue/rte", "wic", "wsc", "qnli", "sst2", "wnli"]
)
def test_accuracy_tasks(data_dir, name):
    rng = np.random.default_rng(4)
    task = get_task(name, data_dir=data_dir)
    examples = task.load("validation")
    predictions = random_label_texts(task, examples, rng)
    ids = as_ids(task, predictions, lambda i: -1)
    expected = sklearn.metrics.accuracy_score([ex["label"] for ex in examples], ids)
    assert task.compute_metrics(predictions, examples) == pytest.approx({"accuracy": 100 * expected})


def test_multirc_groups_answers_by_question(data_dir):
    rng = np.random.default_rng(5)
    task = get_task("multirc", data_dir=data_dir)
    examples = task.load("validation")
    gold = [ex["label"] for ex in examples]
    # Mostly right, so that some questions are answered exactly.
    predictions = [
        ex["targets"] if rng.random() < 0.9 else rng.choice(["True", "False", "yes"]) for ex in examples
    ]
    flipped = as_ids(task, predictions, lambda i: 1 - gold[i])
    by_question: dict = {}
    for ex, prediction in zip(examples, predictions, strict=True):
        key = (ex["idx"]["paragraph"], ex["idx"]["question"])
        by_question.setdefault(key, []).append(prediction == ex["targets"])
    expected_em = np.mean([all(answers) for answers in by_question.values()])
    scores = task.compute_metrics(predictions, examples)
    assert scores == pytest.approx(
        {"f1a": 100 * sklearn.metrics.f1_score(gold, flipped), "exact_match": 100 * expected_em}
    )
    assert len(by_question) == 953 and 0 < scores["exact_match"] < 100


def test_multirc_exact_match_is_per_question_not_per_answer(data_dir):
    task = get_task("multirc", data_dir=data_dir)
    examples = task.load("validation")
    first_question = [ex for ex in examples if ex["idx"]["question"] == examples[0]["idx"]["question"]]
    predictions = [ex["targets"] for ex in first_question]
    predictions[0] = "not a label"  # one wrong answer spoils the whole question
    assert task.compute_metrics(predictions, first_question)["exact_match"] == 0.0


def test_axg_gender_parity(data_dir):
    task = get_task("axg", data_dir=data_dir)
    examples = task.load("validation")
    predictions = [ex["targets"] for ex in examples]
    predictions[0] = "entailment" if predictions[0] == "not_entailment" else "not_entailment"  # breaks pair 0
    predictions[2] = predictions[3] = "nonsense"  # invalid outputs never count as consistent
    scores = task.compute_metrics(predictions, examples)
    assert scores["gender_parity"] == pytest.approx(100 * (178 - 2) / 178)
    assert scores["accuracy"] == pytest.approx(100 * (356 - 3) / 356)


def test_invalid_outputs_are_counted_wrong(data_dir):
    for name in ["cb", "mrpc", "cola", "boolq", "multirc", "stsb"]:
        task = get_task(name, data_dir=data_dir)
        examples = task.load("validation")
        assert task.postprocess("definitely not a label") is None
        scores = task.compute_metrics(["definitely not a label"] * len(examples), examples)
        for metric, value in scores.items():
            if metric in ("accuracy", "exact_match", "f1", "f1a", "macro_f1"):
                assert value == 0.0, (name, metric)
            else:  # correlations: constant (invalid) predictions carry no information
                assert value <= 0.0, (name, metric)


def test_binary_helpers_match_sklearn_on_random_ids():
    rng = np.random.default_rng(6)
    gold = rng.integers(0, 2, 500).tolist()
    predictions = [None if rng.random() < 0.1 else int(rng.integers(0, 2)) for _ in gold]
    flipped = [1 - g if p is None else p for p, g in zip(predictions, gold, strict=True)]
    assert m.binary_f1(predictions, gold) == pytest.approx(100 * sklearn.metrics.f1_score(gold, flipped))
    assert m.matthews_corrcoef(predictions, gold) == pytest.approx(
        100 * sklearn.metrics.matthews_corrcoef(gold, flipped)
    )
    assert m.accuracy(predictions, gold) == pytest.approx(
        100 * np.mean([p is not None and p == g for p, g in zip(predictions, gold, strict=True)])
    )


def test_squad_normalisation_and_max_over_answers():
    assert m.normalize_answer("The  Barack-Obama!") == "barackobama"
    scores = m.squad_scores(["the cat", "dog house", "x"], [["Cat"], ["a dog", "house of dogs"], []])
    # "dog house" vs "a dog": P=1/2 R=1 -> 2/3; vs "house of dogs": P=1/2, R=1/3 -> 0.4; max 2/3.
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)


def test_undefined_correlation_is_zero_not_nan():
    assert m.pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0
    assert m.spearman([None, None], [1.0, 2.0]) == 0.0


def test_task_and_benchmark_scores():
    assert task_score({"f1": 90.0, "accuracy": 80.0}) == 85.0
    assert task_score({"accuracy_matched": 84.0, "accuracy_mismatched": 86.0}) == 85.0
    assert benchmark_score({"cb": 85.0, "copa": 75.0, "rte": 80.0}) == 80.0
    assert benchmark_score([50.0, 100.0]) == 75.0
    with pytest.raises(ValueError):
        task_score({})


def test_metric_length_mismatch_is_an_error(data_dir):
    task = get_task("cb", data_dir=data_dir)
    with pytest.raises(ValueError, match="2 predictions for 56 references"):
        task.compute_metrics(["entailment"] * 2, task.load("validation"))
