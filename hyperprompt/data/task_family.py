"""A family of dozens of related, described tasks over letter strings, generated in code (issue 15).

Every task reads the same kind of input (``"c a h b e"``: five letters of ``a``-``h``) and says in a sentence
what it asks, so that a description-conditioned HyperPrompt-Global can be trained on some of them and asked
for the others from their descriptions alone. The tasks are built from parts:

- **selector x shift** (28): one letter -- the first, second, third, fourth or last, the largest or the
  smallest -- taken as it is, or moved one or two letters forward, or one back, in the alphabet (cyclically
  in ``a``-``h``): ``"the letter two after the third letter in the alphabet"``;
- **counts** (9): how many times a given letter appears, how many different letters there are;
- **sequences** (6): the letters reversed, sorted, all shifted, the first or last two.

:data:`HELD_OUT` are eight tasks whose parts all occur in training tasks (``third`` and ``next2`` are both
seen, ``third_next2`` is not): the zero-shot test of :mod:`benchmarks.described_tasks`. Tasks register as
``family/<name>``; everything is a deterministic function of the seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hyperprompt.data.synthetic import make_task
from hyperprompt.data.task import Task, register_task

ALPHABET = "abcdefgh"
LENGTH = 5

_SELECTORS: dict[str, tuple[str, Callable[[list[str]], str]]] = {
    "first": ("the first letter", lambda x: x[0]),
    "second": ("the second letter", lambda x: x[1]),
    "third": ("the third letter", lambda x: x[2]),
    "fourth": ("the fourth letter", lambda x: x[3]),
    "last": ("the last letter", lambda x: x[-1]),
    "largest": ("the alphabetically largest letter", max),
    "smallest": ("the alphabetically smallest letter", min),
}
#: suffix of the name -> (shift, how the description says it; ``{}`` is the selector's phrase)
_SHIFTS: dict[str, tuple[int, str]] = {
    "": (0, "{}"),
    "_next": (1, "the letter after {} in the alphabet"),
    "_next2": (2, "the letter two after {} in the alphabet"),
    "_prev": (-1, "the letter before {} in the alphabet"),
}
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five")


def _shift(letter: str, by: int) -> str:
    return ALPHABET[(ALPHABET.index(letter) + by) % len(ALPHABET)]


def _rules() -> dict[str, tuple[str, Callable[[list[str]], str], tuple[str, ...] | None]]:
    """``{name: (description, input letters -> target, label names or None for free text)}``."""
    rules: dict[str, tuple[str, Callable[[list[str]], str], tuple[str, ...] | None]] = {}
    for selector, (phrase, select) in _SELECTORS.items():
        for suffix, (by, template) in _SHIFTS.items():
            rules[selector + suffix] = (template.format(phrase).capitalize(),
                                        lambda x, select=select, by=by: _shift(select(x), by), tuple(ALPHABET))
    counts = tuple(str(n) for n in range(LENGTH + 1))
    for letter in ALPHABET:
        rules[f"count_{letter}"] = (f"How many times the letter {letter} appears",
                                    lambda x, letter=letter: str(x.count(letter)), counts)
    rules["distinct"] = ("How many different letters there are", lambda x: str(len(set(x))), counts)
    rules["reverse"] = ("The letters in reverse order", lambda x: " ".join(reversed(x)), None)
    rules["sort"] = ("The letters sorted alphabetically", lambda x: " ".join(sorted(x)), None)
    rules["shift_all"] = ("Every letter replaced by the letter after it in the alphabet",
                          lambda x: " ".join(_shift(c, 1) for c in x), None)
    rules["reverse_shift"] = ("The letters in reverse order, each replaced by the letter after it",
                              lambda x: " ".join(_shift(c, 1) for c in reversed(x)), None)
    rules["first_two"] = ("The first two letters", lambda x: " ".join(x[:2]), None)
    rules["last_two"] = ("The last two letters", lambda x: " ".join(x[-2:]), None)
    return rules


RULES = _rules()
TASK_NAMES: tuple[str, ...] = tuple(f"family/{name}" for name in RULES)
#: held out from training in the zero-shot benchmark: each combines parts seen in training tasks
HELD_OUT: tuple[str, ...] = tuple(f"family/{name}" for name in (
    "third_next2", "largest_prev", "second_next", "smallest_next2", "last_prev", "first_prev",
    "count_f", "fourth_next"))
TRAINING: tuple[str, ...] = tuple(name for name in TASK_NAMES if name not in HELD_OUT)


def family_tasks(names: Sequence[str] | None = None, *, train_size: int = 400, validation_size: int = 100,
                 seed: int = 0, register: bool = True) -> list[Task]:
    """The tasks ``names`` of the family (default: all of :data:`TASK_NAMES`), each with its description.

    Args:
        names: ``family/<rule>`` names (or bare rule names).
        train_size, validation_size: examples per split and task (inputs drawn independently per task).
        seed: everything is a deterministic function of the seed and the task's name.
        register: register the tasks (replacing earlier ones of the same names).
    """
    tasks = []
    for name in names or TASK_NAMES:
        rule_name = name.split("/", 1)[-1]
        if rule_name not in RULES:
            raise KeyError(f"unknown family task {name!r}; choose from {', '.join(TASK_NAMES)}")
        description, rule, labels = RULES[rule_name]
        splits = {}
        for split_index, (split, n) in enumerate((("train", train_size), ("validation", validation_size))):
            rng = np.random.default_rng([seed, *rule_name.encode(), split_index])
            codes = rng.integers(0, len(ALPHABET), size=(n, LENGTH))
            rows = [[ALPHABET[c] for c in row] for row in codes]
            splits[split] = [(" ".join(letters), rule(letters)) for letters in rows]
        task = make_task(f"family/{rule_name}", splits, labels, description=description)
        if register:
            register_task(task)
        tasks.append(task)
    return tasks


def _register_defaults() -> None:
    """``get_task("family/third")`` works before anyone calls :func:`family_tasks`."""
    for name in TASK_NAMES:

        def factory(data_dir: object = None, *, _name: str = name, **options: object) -> Task:
            return family_tasks([_name], register=False)[0].with_options(**options)

        register_task(factory, name=name)


_register_defaults()
