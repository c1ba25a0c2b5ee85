"""Official GLUE / SuperGLUE metrics on a 0-100 scale, robust to invalid model outputs.

Every function takes *postprocessed* predictions (a class id, a float, a text; ``None`` for an
output that is not a valid label) and gold values, and returns a float in 0-100 (correlations in
-100..100). The math is scikit-learn's / scipy's; what is added is the handling of invalid outputs,
which the benchmarks (made for classifiers) never had to define. Following T5
(``t5/evaluation/metrics.py``), an invalid output is always counted wrong:

- accuracy, exact match: never equal to the gold value;
- binary F1 and MCC: replaced by the opposite of the gold class (T5's ``f1_score_with_invalid``);
- multi-class macro F1: a class outside ``labels``, so it lowers the gold class's recall only;
- Pearson / Spearman: replaced by ``INVALID_FLOAT`` = -1.0 (T5's ``string_to_float`` default);
- gender parity: a pair with an invalid output does not count as consistent.

A correlation that is undefined (constant predictions) is reported as 0.0, the value scikit-learn
uses for an undefined MCC, so that scores stay comparable numbers.
"""

from __future__ import annotations

import collections
import math
import re
import string
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.stats
import sklearn.metrics

from hyperprompt.errors import InputError

INVALID_FLOAT = -1.0


def _class_ids(predictions: Sequence[int | None], invalid: int = -1) -> np.ndarray:
    return np.array([invalid if p is None else p for p in predictions], dtype=np.int64)


def accuracy(predictions: Sequence[Any], gold: Sequence[Any]) -> float:
    """Percentage of predictions equal to the gold value (``None`` is never equal)."""
    _check_lengths(predictions, gold)
    return 100.0 * float(np.mean([p is not None and p == g for p, g in zip(predictions, gold, strict=True)]))


def _flip_invalid(predictions: Sequence[int | None], gold: Sequence[int]) -> np.ndarray:
    """Binary predictions with every invalid one replaced by the wrong class."""
    gold_array = np.asarray(gold, dtype=np.int64)
    pred = _class_ids(predictions)
    invalid = (pred != 0) & (pred != 1)
    pred[invalid] = 1 - gold_array[invalid]
    return pred


def binary_f1(predictions: Sequence[int | None], gold: Sequence[int]) -> float:
    """F1 of class 1 (MRPC ``equivalent``, QQP ``duplicate``, MultiRC ``True``)."""
    _check_lengths(predictions, gold)
    return 100.0 * float(sklearn.metrics.f1_score(gold, _flip_invalid(predictions, gold), zero_division=0.0))


def matthews_corrcoef(predictions: Sequence[int | None], gold: Sequence[int]) -> float:
    """Matthews correlation (CoLA, AX-b), binary; invalid outputs take the wrong class."""
    _check_lengths(predictions, gold)
    return 100.0 * float(sklearn.metrics.matthews_corrcoef(gold, _flip_invalid(predictions, gold)))


def macro_f1(predictions: Sequence[int | None], gold: Sequence[int], num_classes: int) -> float:
    """Unweighted mean of per-class F1 over classes ``0..num_classes-1`` (CB)."""
    _check_lengths(predictions, gold)
    return 100.0 * float(
        sklearn.metrics.f1_score(
            gold, _class_ids(predictions), labels=list(range(num_classes)), average="macro", zero_division=0.0
        )
    )


def _correlation(kind: str, predictions: Sequence[float | None], gold: Sequence[float]) -> float:
    _check_lengths(predictions, gold)
    pred = np.array([INVALID_FLOAT if p is None else p for p in predictions], dtype=np.float64)
    gold_array = np.asarray(gold, dtype=np.float64)
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(gold_array) == 0:
        return 0.0
    fn = scipy.stats.pearsonr if kind == "pearson" else scipy.stats.spearmanr
    value = float(fn(pred, gold_array)[0])
    return 0.0 if math.isnan(value) else 100.0 * value


def pearson(predictions: Sequence[float | None], gold: Sequence[float]) -> float:
    """Pearson correlation x 100 (STS-B)."""
    return _correlation("pearson", predictions, gold)


def spearman(predictions: Sequence[float | None], gold: Sequence[float]) -> float:
    """Spearman rank correlation x 100 (STS-B)."""
    return _correlation("spearman", predictions, gold)


def exact_match_per_group(
    predictions: Sequence[int | None], gold: Sequence[int], groups: Sequence[Hashable]
) -> float:
    """Percentage of groups whose every prediction is right (MultiRC EM: a group is a question)."""
    _check_lengths(predictions, gold)
    _check_lengths(groups, gold)
    all_right: dict[Hashable, bool] = {}
    for p, g, group in zip(predictions, gold, groups, strict=True):
        all_right[group] = all_right.get(group, True) and p is not None and p == g
    return 100.0 * float(np.mean(list(all_right.values())))


def gender_parity(predictions: Sequence[int | None], pairs: Sequence[Hashable]) -> float:
    """Percentage of AX-g minimal pairs (same hypothesis, premise differing in the pronoun's gender)
    that get the same valid prediction. ``pairs`` gives each example's pair id; every pair must be complete.
    """
    _check_lengths(predictions, pairs)
    grouped: dict[Hashable, list[int | None]] = collections.defaultdict(list)
    for p, pair in zip(predictions, pairs, strict=True):
        grouped[pair].append(p)
    incomplete = [pair for pair, members in grouped.items() if len(members) != 2]
    if incomplete:
        raise InputError(
            f"gender parity needs both examples of every pair; incomplete pairs: {incomplete[:5]}"
        )
    same = [a is not None and a == b for a, b in grouped.values()]
    return 100.0 * float(np.mean(same))


# ----------------------------------------------------------------------------------------------
# SQuAD-style answer scoring (ReCoRD), as in the official ReCoRD / SQuAD v1.1 evaluation scripts.


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, squeeze whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _token_f1(prediction: str, answer: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    answer_tokens = normalize_answer(answer).split()
    common = collections.Counter(pred_tokens) & collections.Counter(answer_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(answer_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str | None], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """Token F1 and exact match, each the max over an example's gold answers, averaged x 100.

    An example without gold answers scores 0.
    """
    _check_lengths(predictions, answers)
    f1, em = [], []
    for prediction, golds in zip(predictions, answers, strict=True):
        if prediction is None or not golds:
            f1.append(0.0)
            em.append(0.0)
            continue
        f1.append(max(_token_f1(prediction, a) for a in golds))
        em.append(max(float(normalize_answer(prediction) == normalize_answer(a)) for a in golds))
    return {"f1": 100.0 * float(np.mean(f1)), "exact_match": 100.0 * float(np.mean(em))}


# ----------------------------------------------------------------------------------------------
# Aggregation.


def task_score(metrics: Mapping[str, float]) -> float:
    """A task's score: the unweighted mean of its metrics (the GLUE / SuperGLUE leaderboard rule).

    E.g. MRPC = (F1 + accuracy) / 2, STS-B = (Pearson + Spearman) / 2, MNLI = (matched + mismatched) / 2.
    """
    if not metrics:
        raise InputError("task_score needs at least one metric")
    return float(np.mean([float(v) for v in metrics.values()]))


def benchmark_score(per_task_scores: Mapping[str, float] | Sequence[float]) -> float:
    """A benchmark's score: the unweighted mean over tasks of each task's :func:`task_score`."""
    values = list(per_task_scores.values()) if isinstance(per_task_scores, Mapping) else list(per_task_scores)
    if not values:
        raise InputError("benchmark_score needs at least one task score")
    return float(np.mean([float(v) for v in values]))


def _check_lengths(predictions: Sequence, gold: Sequence) -> None:
    if len(predictions) != len(gold):
        raise InputError(f"got {len(predictions)} predictions for {len(gold)} references")
    if len(gold) == 0:
        raise InputError("cannot compute a metric on zero examples")
