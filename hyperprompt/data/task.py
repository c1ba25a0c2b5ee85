"""A task (seqio's ``Task`` without TensorFlow) and the registry of tasks by name.

A task is *source + preprocessor + postprocessor + metrics*:

- the **source** reads a split as raw records (Hugging Face schema: ``label`` is a class id);
- the **preprocessor** turns a record into ``inputs`` / ``targets`` text, T5 style;
- the **postprocessor** turns generated text back into a label (``None`` when it is not one);
- the **metrics** compare postprocessed predictions with the gold records.

``task.load(split)`` returns examples as plain dicts:
``{"inputs": str, "targets": str, "task": name, "idx": ..., **raw fields}``.
"""

from __future__ import annotations

import collections
import copy
import difflib
import math
import random
import re
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from hyperprompt.errors import InputError

Example = dict[str, Any]
Source = Callable[[str], list[Example]]
Preprocessor = Callable[[Example], tuple[str, str]]
Postprocessor = Callable[[str], Any]
MetricFn = Callable[[list[Any], list[Example]], dict[str, float]]


class Task:
    """One dataset in text-to-text form.

    Args:
        name: canonical name, e.g. ``"superglue/cb"``.
        source: ``split -> list of raw records``; called once per split (results are kept).
        preprocess: ``record -> (inputs without the task prefix, targets)``.
        postprocess: ``generated text -> label``; returns ``None`` for text that is not a valid output.
        metrics: ``(postprocessed predictions, gold examples) -> {metric: value}`` on a 0-100 scale.
        metric_names: the keys ``metrics`` returns.
        splits: the splits the source provides (``"train"``, ``"validation"``).
        label_names: the classes, in class-id order (``None`` for regression / span tasks).
        text_prefix: the T5 task prefix put in front of ``inputs`` (``"cb"``, ``"rte"``), if any.
        prefix: whether to put ``text_prefix`` in front of ``inputs``.
        test_fraction: if set, hold out this fraction of the validation split as a ``"test"`` split
            for model selection (deterministic in ``split_seed``; whole groups move together).
        split_seed: the seed of that hold-out.
        group_key: ``example -> group`` that must not be split apart by the hold-out
            (a MultiRC paragraph, an AX-g pair); ``None`` treats every example alone.
        version: bump when the preprocessing changes; part of the tokenisation cache key.
        description: what the task asks, in a sentence (``"the third letter"``): the text from which a
            description-conditioned HyperPrompt-Global makes the task's embedding; ``None`` if none.
        skipped: a counter of malformed rows skipped per split (shared with the source).
    """

    def __init__(
        self,
        name: str,
        *,
        source: Source,
        preprocess: Preprocessor,
        postprocess: Postprocessor,
        metrics: MetricFn,
        metric_names: Sequence[str],
        splits: Sequence[str] = ("train", "validation"),
        label_names: Sequence[str] | None = None,
        text_prefix: str | None = None,
        prefix: bool = True,
        test_fraction: float | None = None,
        split_seed: int = 0,
        group_key: Callable[[Example], Hashable] | None = None,
        version: str = "1",
        skipped: collections.Counter | None = None,
        spec: dict[str, Any] | None = None,
        description: str | None = None,
    ):
        self.name = check_task_name(name)
        self.spec = spec  # a user task's spec without file paths (saved with models; None for built-in tasks)
        self._source = source
        self._preprocess = preprocess
        self._postprocess = postprocess
        self._metrics = metrics
        self.metric_names = tuple(metric_names)
        self._source_splits = tuple(splits)
        self.label_names = tuple(label_names) if label_names is not None else None
        self.text_prefix = text_prefix
        self.prefix = prefix
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.group_key = group_key
        self.version = version
        self.description = description
        self.skipped: collections.Counter = skipped if skipped is not None else collections.Counter()
        self._loaded: dict[str, list[Example]] = {}
        self._check_test_fraction()

    def _check_test_fraction(self) -> None:
        if self.test_fraction is None:
            return
        if not 0.0 < self.test_fraction < 1.0:
            raise InputError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if "validation" not in self._source_splits or "test" in self._source_splits:
            raise InputError(f"{self.name}: test_fraction needs a validation split and no test split")

    def __repr__(self) -> str:
        return f"Task({self.name!r}, splits={self.splits}, metrics={self.metric_names})"

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits :meth:`load` accepts."""
        return self._source_splits + (("test",) if self.test_fraction else ())

    def with_options(self, **options: Any) -> Task:
        """A copy with other ``prefix`` / ``test_fraction`` / ``split_seed`` (nothing loaded yet)."""
        allowed = {"prefix", "test_fraction", "split_seed"}
        unknown = set(options) - allowed
        if unknown:
            raise TypeError(f"{self.name}: unknown option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        if not options:
            return self
        task = copy.copy(self)
        for key, value in options.items():
            setattr(task, key, value)
        task._loaded = {}
        task._check_test_fraction()
        return task

    # ------------------------------------------------------------------------------------------
    # Data.

    def load(self, split: str) -> list[Example]:
        """The examples of ``split`` (a new list; the dicts are shared, do not modify them)."""
        if split not in self.splits:
            raise InputError(f"{self.name} has no split {split!r}; it has {list(self.splits)}")
        if split not in self._loaded:
            if self.test_fraction and split in ("validation", "test"):
                validation, test = self._hold_out(self._examples("validation"))
                self._loaded["validation"], self._loaded["test"] = validation, test
            else:
                self._loaded[split] = self._examples(split)
        return list(self._loaded[split])

    def num_examples(self, split: str) -> int:
        """``len(task.load(split))``."""
        return len(self.load(split))

    def format_record(self, record: dict[str, Any]) -> tuple[str, Any]:
        """One raw record (official field names) -> ``(inputs, targets)`` text, with the task prefix
        when enabled: what :meth:`load` does to every record of a split."""
        inputs, targets = self._preprocess(record)
        prefix = f"{self.text_prefix} " if self.prefix and self.text_prefix else ""
        return prefix + inputs, targets

    def _examples(self, split: str) -> list[Example]:
        examples = []
        for record in self._source(split):
            inputs, targets = self.format_record(record)
            example = {"inputs": inputs, "targets": targets, "task": self.name}
            example.update((key, value) for key, value in record.items() if key not in example)
            examples.append(example)
        return examples

    def _hold_out(self, examples: list[Example]) -> tuple[list[Example], list[Example]]:
        """Split validation examples into (validation, test), moving whole groups."""
        keys = [self.group_key(ex) if self.group_key else i for i, ex in enumerate(examples)]
        groups = list(dict.fromkeys(keys))  # first-appearance order
        random.Random(self.split_seed).shuffle(groups)
        assert self.test_fraction is not None
        n_test = min(len(groups) - 1, max(1, math.floor(len(groups) * self.test_fraction + 0.5)))
        test_groups = set(groups[:n_test])
        validation = [ex for ex, key in zip(examples, keys, strict=True) if key not in test_groups]
        test = [ex for ex, key in zip(examples, keys, strict=True) if key in test_groups]
        return validation, test

    # ------------------------------------------------------------------------------------------
    # Evaluation.

    def postprocess(self, text: str) -> Any:
        """Generated text -> label (class id, float or answer text); ``None`` if not a valid output."""
        return self._postprocess(text)

    def compute_metrics(self, predictions: Sequence[str], references: Sequence[Example]) -> dict[str, float]:
        """Score generated texts against gold examples (from :meth:`load`), each metric in 0-100.

        Args:
            predictions: the generated texts, one per reference.
            references: the gold examples, in the same order.
        """
        if len(predictions) != len(references):
            raise InputError(
                f"{self.name}: got {len(predictions)} predictions for {len(references)} references"
            )
        if not references:
            raise InputError(f"{self.name}: cannot compute metrics on zero examples")
        values = [self.postprocess(p) for p in predictions]
        return self._metrics(values, list(references))


# ----------------------------------------------------------------------------------------------
# The registry.

#: What a task name may look like: ``benchmark/task`` or ``task``, lowercase, no ``..`` and no leading dot.
#: Names become folder names (``best/<name>/``), so nothing else may reach a path.
TASK_NAME_PATTERN = re.compile(r"^[a-z0-9_][a-z0-9_-]*(/[a-z0-9_][a-z0-9_.-]*)?$")


def check_task_name(name: Any, where: str = "task name") -> str:
    """``name`` if it is a valid task name, else a ValueError that says what is allowed."""
    if not isinstance(name, str) or not TASK_NAME_PATTERN.match(name) or ".." in name:
        raise InputError(
            f"{where}: {name!r} is not a valid task name: use lowercase letters, digits, '_' and '-', optionally "
            "'benchmark/' before it (e.g. 'user/sentiment'); no '..', no leading '.' or '/', at most one '/' "
            "(the name becomes a folder under the run directory)")
    return name


TaskFactory = Callable[..., Task]
_FACTORIES: dict[str, TaskFactory] = {}
_BENCHMARK_OF: dict[str, str] = {}


def register_task(
    task: Task | TaskFactory, *, name: str | None = None, benchmark: str | None = None, overwrite: bool = True
) -> None:
    """Make a task available to :func:`get_task` and :func:`list_tasks`.

    Args:
        task: a :class:`Task` (``get_task`` returns it, or a copy when given options), or a factory
            ``(data_dir=None, **options) -> Task`` (how built-in tasks are registered).
        name: the registry name; defaults to ``task.name``.
        benchmark: the group ``list_tasks(benchmark=...)`` filters on; defaults to the part of the
            name before ``/`` (``"user"`` when there is none).
        overwrite: replace a task registered under the same name; ``False`` raises instead.
    """
    if isinstance(task, Task):
        instance = task
        name = name or instance.name

        def factory(data_dir: Any = None, **options: Any) -> Task:
            # A registered task carries its own files: data_dir does not apply to it.
            return instance.with_options(**options)

        entry: TaskFactory = factory
    else:
        if name is None:
            raise InputError("register_task needs name=... for a factory")
        entry = task
    check_task_name(name)
    if not overwrite and name in _FACTORIES:
        raise InputError(f"a task named {name!r} is already registered")
    _FACTORIES[name] = entry
    _BENCHMARK_OF[name] = benchmark or (name.split("/", 1)[0] if "/" in name else "user")


def list_tasks(benchmark: str | None = None) -> list[str]:
    """Registered task names in registration order, optionally of one benchmark
    (``"glue"``, ``"superglue"``, ``"synthetic"``, ``"user"``)."""
    if benchmark is None:
        return list(_FACTORIES)
    key = _normalize(benchmark)
    return [name for name in _FACTORIES if _BENCHMARK_OF[name] == key]


def _normalize(name: str) -> str:
    name = name.strip().lower().replace("super_glue", "superglue")
    if "/" in name:
        head, tail = name.split("/", 1)
        return f"{head}/{tail.replace('-', '')}"
    return name.replace("-", "")


def resolve_task_name(name: str) -> str:
    """The canonical name for ``name`` (a canonical name or an unambiguous short alias)."""
    key = _normalize(name)
    canonical = {_normalize(n): n for n in _FACTORIES}
    if key in canonical:
        return canonical[key]
    matches = [n for n in _FACTORIES if "/" in n and _normalize(n).split("/", 1)[1] == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise InputError(f"task name {name!r} is ambiguous: use one of {matches}")
    choices = list(_FACTORIES) + sorted({n.split("/", 1)[1] for n in _FACTORIES if "/" in n})
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise InputError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(_FACTORIES)}")


def get_task(name: str, data_dir: Any = None, **options: Any) -> Task:
    """The task called ``name``.

    Args:
        name: a canonical name (``"superglue/cb"``) or an unambiguous alias (``"cb"``).
        data_dir: directory of the official files (``None``: the Hugging Face hub). Ignored by tasks
            that carry their own data (user and synthetic tasks).
        **options: ``prefix`` (bool, default True), ``test_fraction``, ``split_seed``, and for
            built-in tasks ``hub_id`` (another hub id or a local copy in the hub's layout) and
            ``on_error`` (``"raise"`` or ``"skip"``).
    """
    return _FACTORIES[resolve_task_name(name)](data_dir=data_dir, **options)
