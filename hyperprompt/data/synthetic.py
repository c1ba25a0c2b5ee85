"""Small synthetic multi-task suites, generated in code, for demos and tests.

Inputs are short strings of letters separated by spaces (``"b a c d"``) and carry no task name
(``prefix=False`` by default). Some tasks *conflict*: the same input text has different targets
under different tasks, so a model that is not told the task cannot solve them all.

- :func:`synthetic_tasks`: four tasks of different sizes -- ``first`` (2000 training examples: the
  first letter), ``last`` (1000: the last letter), ``reverse`` (500: the letters reversed),
  ``max`` (250: the alphabetically largest letter). ``first``, ``last`` and ``max`` conflict.
- :func:`conflict_tasks`: two tasks over the *same* inputs whose first and last letters differ:
  ``conflict_first`` (target: the first letter) and ``conflict_last`` (the last letter).

They are ordinary :class:`~hyperprompt.data.Task` objects registered as ``synthetic/<name>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hyperprompt.data import metrics as m
from hyperprompt.data.task import Example, Task, register_task
from hyperprompt.errors import InputError

Rule = Callable[[list[str]], str]
RULES: dict[str, Rule] = {
    "first": lambda letters: letters[0],
    "last": lambda letters: letters[-1],
    "reverse": lambda letters: " ".join(reversed(letters)),
    "max": lambda letters: max(letters),
}
DEFAULT_SIZES = {"first": 2000, "last": 1000, "reverse": 500, "max": 250}
DESCRIPTIONS = {"first": "The first letter", "last": "The last letter", "reverse": "The letters in reverse order",
                "max": "The alphabetically largest letter"}


def make_task(
    name: str,
    splits: Mapping[str, Sequence[tuple[str, str]]],
    label_names: Sequence[str] | None,
    *,
    prefix: bool = False,
    description: str | None = None,
) -> Task:
    """A task over in-memory ``(inputs, targets)`` pairs per split.

    With ``label_names`` targets are classes (metric: accuracy); without, free text (exact match).
    The text prefix (used only with ``prefix=True``) is the name after ``synthetic/``; ``description``
    says what the task asks (:attr:`Task.description`).
    """
    labels = tuple(label_names) if label_names is not None else None

    def source(split: str) -> list[dict[str, Any]]:
        records = []
        for i, (text, target) in enumerate(splits[split]):
            record: dict[str, Any] = {"text": text, "target": target, "idx": i}
            if labels is not None:
                record["label"] = labels.index(target)
            records.append(record)
        return records

    def postprocess(text: str) -> Any:
        text = text.strip()
        if labels is None:
            return text
        return labels.index(text) if text in labels else None

    metric = "accuracy" if labels is not None else "exact_match"

    def compute(values: list, references: list[Example]) -> dict[str, float]:
        gold = [r["label"] if labels is not None else r["target"] for r in references]
        return {metric: m.accuracy(values, gold)}

    return Task(
        name,
        source=source,
        preprocess=lambda record: (record["text"], record["target"]),
        postprocess=postprocess,
        metrics=compute,
        metric_names=(metric,),
        splits=tuple(splits),
        label_names=labels,
        text_prefix=name.split("/", 1)[-1],
        prefix=prefix,
        description=description,
    )


def _random_letters(rng: np.random.Generator, n: int, length: int, alphabet: str) -> list[list[str]]:
    codes = rng.integers(0, len(alphabet), size=(n, length))
    return [[alphabet[c] for c in row] for row in codes]


def synthetic_tasks(
    seed: int = 0,
    *,
    sizes: Mapping[str, int] | None = None,
    validation_size: int = 200,
    length: int = 4,
    alphabet: str = "abcde",
    prefix: bool = False,
    register: bool = True,
) -> list[Task]:
    """Tasks ``synthetic/<rule>`` for each rule in ``sizes`` (default :data:`DEFAULT_SIZES`).

    Args:
        seed: everything is a deterministic function of the seed.
        sizes: training examples per task, keyed by rule (``first``, ``last``, ``reverse``, ``max``).
        validation_size: validation examples per task.
        length: letters per input (inputs are ``2 * length - 1`` characters).
        alphabet: the letters.
        prefix: put the task name in front of the inputs (the MTL-with-prefix baseline).
        register: register the tasks (replacing earlier ones of the same names).
    """
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    tasks = []
    for task_index, (rule_name, n_train) in enumerate(sizes.items()):
        if rule_name not in RULES:
            raise InputError(f"unknown synthetic rule {rule_name!r}; choose from {sorted(RULES)}")
        rule = RULES[rule_name]
        splits = {}
        for split_index, (split, n) in enumerate((("train", n_train), ("validation", validation_size))):
            rng = np.random.default_rng([seed, task_index, split_index])
            splits[split] = [
                (" ".join(letters), rule(letters)) for letters in _random_letters(rng, n, length, alphabet)
            ]
        label_names = None if rule_name == "reverse" else tuple(alphabet)
        task = make_task(f"synthetic/{rule_name}", splits, label_names, prefix=prefix,
                         description=DESCRIPTIONS[rule_name])
        if register:
            register_task(task)
        tasks.append(task)
    return tasks


def conflict_tasks(
    n_inputs: int = 256,
    seed: int = 0,
    *,
    validation_inputs: int | None = None,
    length: int = 4,
    alphabet: str = "abcdef",
    prefix: bool = False,
    register: bool = True,
) -> list[Task]:
    """Two tasks over the same ``n_inputs`` distinct inputs with conflicting targets.

    ``synthetic/conflict_first`` labels an input with its first letter, ``synthetic/conflict_last``
    with its last; every input's first and last letters differ, so the two targets always differ
    and a model must use the task id to get above chance on both. The validation inputs
    (``n_inputs // 4`` by default) are distinct from the training ones and shared by both tasks.
    """
    n_validation = n_inputs // 4 if validation_inputs is None else validation_inputs
    needed = n_inputs + n_validation
    possible = len(alphabet) ** (length - 2) * len(alphabet) * (len(alphabet) - 1)
    if needed > possible:
        raise InputError(
            f"{needed} distinct inputs asked for, only {possible} exist; use a longer length or alphabet"
        )
    rng = np.random.default_rng([seed, 1234])
    seen: dict[str, list[str]] = {}
    while len(seen) < needed:
        for letters in _random_letters(rng, needed, length, alphabet):
            if letters[0] != letters[-1] and len(seen) < needed:
                seen.setdefault(" ".join(letters), letters)
    inputs = list(seen.values())
    train, validation = inputs[:n_inputs], inputs[n_inputs:]
    tasks = []
    for rule_name in ("first", "last"):
        rule = RULES[rule_name]
        splits = {
            "train": [(" ".join(letters), rule(letters)) for letters in train],
            "validation": [(" ".join(letters), rule(letters)) for letters in validation],
        }
        task = make_task(f"synthetic/conflict_{rule_name}", splits, tuple(alphabet), prefix=prefix,
                         description=f"{DESCRIPTIONS[rule_name]}, where the first and last letters differ")
        if register:
            register_task(task)
        tasks.append(task)
    return tasks


def _register_defaults() -> None:
    """Make ``get_task("synthetic/first")`` etc. work before anyone calls the builders."""
    for index, rule_name in enumerate(DEFAULT_SIZES):

        def suite_factory(data_dir: Any = None, *, _index: int = index, **options: Any) -> Task:
            return synthetic_tasks(register=False)[_index].with_options(**options)

        register_task(suite_factory, name=f"synthetic/{rule_name}")
    for index, rule_name in enumerate(("first", "last")):

        def conflict_factory(data_dir: Any = None, *, _index: int = index, **options: Any) -> Task:
            return conflict_tasks(register=False)[_index].with_options(**options)

        register_task(conflict_factory, name=f"synthetic/conflict_{rule_name}")


_register_defaults()
