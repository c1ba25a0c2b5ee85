"""User-defined tasks: a ``.jsonl`` / ``.csv`` / ``.tsv`` file per split plus a small YAML or JSON spec.

A user adds a task without writing Python::

    # sentiment.yaml (paths are relative to this file)
    name: user/sentiment
    train: sentiment_train.jsonl
    validation: sentiment_dev.jsonl
    input_template: "sentiment review: {text}"
    target_field: label
    labels: {0: negative, 1: positive}   # or a list [negative, positive], or leave out for free text
    metric: [accuracy, f1]               # accuracy | f1 | macro_f1 | mcc | pearson_spearman | exact_match

``load_task_spec("sentiment.yaml")`` returns a :class:`~hyperprompt.data.Task` and registers it, so
``get_task("user/sentiment")`` and mixtures, tokenisation and collation treat it like a built-in task.
"""

from __future__ import annotations

import collections
import json
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from hyperprompt.data import metrics as m
from hyperprompt.data.glue import float_postprocessor
from hyperprompt.data.sources import OnError, Record, RowError, convert_rows, iter_table
from hyperprompt.data.task import Example, Task, check_task_name, register_task
from hyperprompt.errors import InputError, MissingFileError

METRIC_NAMES = {
    "accuracy": ("accuracy",),
    "f1": ("f1",),
    "macro_f1": ("macro_f1",),
    "mcc": ("mcc",),
    "pearson_spearman": ("pearson", "spearman"),
    "exact_match": ("exact_match",),
}
_SPEC_KEYS = {
    "name",
    "train",
    "validation",
    "test",
    "input_template",
    "target_field",
    "labels",
    "metric",
    "version",
    "description",
}

#: the spec keys that say how a record is formatted and scored (saved with a model; the file keys are not)
_FORMAT_KEYS = ("name", "input_template", "target_field", "labels", "metric", "version", "description")


def _read_spec(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        spec = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise InputError(
            f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {e}"
        ) from None
    if not isinstance(spec, dict):
        raise InputError(f"{path}: a task spec must be a mapping of keys ({', '.join(sorted(_SPEC_KEYS))})")
    return spec


def _template_fields(template: str, where: str) -> list[str]:
    try:
        return [field for _, field, _, _ in string.Formatter().parse(template) if field]
    except ValueError as e:
        raise InputError(f"{where}: bad input_template {template!r}: {e}") from None


def load_task_spec(
    spec: str | Path | Mapping[str, Any], *, register: bool = True, on_error: OnError = "raise",
    require_files: bool = True,
) -> Task:
    """Build (and by default register) a task from a YAML / JSON spec file or a dict.

    Args:
        spec: path of the spec, or the spec itself (then relative data paths are relative to the
            working directory).
        register: register the task under its ``name`` (replacing one of that name).
        on_error: ``"raise"`` on a malformed data row (message ``file:line: ...``) or ``"skip"`` it
            and count it in ``task.skipped``.
        require_files: ``False`` accepts a spec without data files (a task saved with a model: it
            formats records for ``predict`` but has no splits to load).

    Spec keys: ``name``; ``train`` / ``validation`` / ``test`` data files (at least one);
    ``input_template`` (``str.format`` fields name row fields, e.g. ``"nli premise: {premise}"``);
    ``target_field``; optional ``labels`` (a list of target texts, or a mapping raw value -> target
    text; then ``targets`` must be one of them); ``metric``: one name or a list (default ``accuracy``);
    optional ``version`` (bump it when you change the data in place, for the tokenisation cache);
    optional ``description``: what the task asks, in a sentence (needed by a description-conditioned
    HyperPrompt-Global, ``task_conditioning: description``).
    """
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    if isinstance(spec, Mapping):
        where, base_dir, raw = "task spec", Path.cwd(), dict(spec)
    else:
        spec_path = Path(spec)
        where, base_dir, raw = str(spec_path), spec_path.parent, _read_spec(spec_path)

    unknown = set(raw) - _SPEC_KEYS
    if unknown:
        raise InputError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}")
    for key in ("name", "input_template", "target_field"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise InputError(f"{where}: {key!r} is required and must be text")
    name, template, target_field = raw["name"], raw["input_template"], raw["target_field"]
    check_task_name(name, f"{where}: 'name'")
    _template_fields(template, where)
    files = {split: base_dir / raw[split] for split in ("train", "validation", "test") if raw.get(split)}
    if not files and require_files:
        raise InputError(f"{where}: give at least one data file: train, validation or test")
    for split, path in files.items():
        if not path.is_file():
            raise MissingFileError(f"{path}: not found ({split} file of task {name!r}, from {where})")

    label_map, label_names = _labels(raw.get("labels"), where)
    metrics = raw.get("metric", "accuracy")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    for metric in metrics:
        if metric not in METRIC_NAMES:
            raise InputError(f"{where}: unknown metric {metric!r}; choose from {sorted(METRIC_NAMES)}")
        if metric in ("f1", "mcc") and (label_names is None or len(label_names) != 2):
            raise InputError(
                f"{where}: metric {metric!r} needs exactly two labels (the second is the positive one)"
            )
        if metric == "macro_f1" and label_names is None:
            raise InputError(f"{where}: metric 'macro_f1' needs labels")
        if metric == "pearson_spearman" and label_names is not None:
            raise InputError(f"{where}: metric 'pearson_spearman' needs numeric targets, not labels")
    numeric = "pearson_spearman" in metrics

    def convert(row: dict, position: int) -> Record:
        try:
            inputs = template.format_map(row)
        except KeyError as e:
            raise RowError(f"missing field {e} (used by input_template)") from None
        except (IndexError, ValueError, AttributeError, TypeError) as e:
            raise RowError(f"cannot fill input_template: {e}") from None
        if target_field not in row or row[target_field] is None:
            raise RowError(f"missing field {target_field!r} (the target_field)")
        value = row[target_field]
        if label_map is not None:
            if str(value) not in label_map:
                raise RowError(f"unknown label {value!r}; expected one of {list(label_map)}")
            targets = label_map[str(value)]
        else:
            targets = str(value).strip()
            if not targets:
                raise RowError(f"empty target in field {target_field!r}")
            if numeric and float_postprocessor(targets) is None:
                raise RowError(f"target {value!r} is not a number (metric pearson_spearman)")
        return {**row, "inputs": inputs, "targets": targets, "idx": row.get("idx", position)}

    skipped: collections.Counter = collections.Counter()

    def source(split: str) -> list[Record]:
        path = files[split]
        return convert_rows(
            path, iter_table(path), convert, on_error=on_error, skipped=skipped, counter_key=split
        )

    postprocess = _postprocessor(label_names, numeric)
    task = Task(
        name,
        source=source,
        # inputs from the raw fields (so that predict formats a raw record as training did); the target
        # was checked and mapped through the labels when the row was read
        preprocess=lambda record: (template.format_map(record), record.get("targets", "")),
        postprocess=postprocess,
        metrics=_metric_fn(metrics, label_names, postprocess),
        metric_names=[n for metric in metrics for n in METRIC_NAMES[metric]],
        splits=tuple(files),
        label_names=label_names,
        version=str(raw.get("version", "1")),
        skipped=skipped,
        spec={key: raw[key] for key in _FORMAT_KEYS if key in raw},
        description=_description(raw.get("description"), where),
    )
    if register:
        register_task(task)
    return task


def _description(description: Any, where: str) -> str | None:
    """The spec's ``description`` (what the task asks, in a sentence), checked."""
    if description is None:
        return None
    if not isinstance(description, str) or not description.strip():
        raise InputError(f"{where}: 'description' must be a non-empty sentence saying what the task asks, "
                         f"got {description!r}")
    return description.strip()


def _labels(labels: Any, where: str) -> tuple[dict[str, str] | None, tuple[str, ...] | None]:
    """``labels`` as (raw value text -> target text, target texts in class-id order)."""
    if labels is None:
        return None, None
    if isinstance(labels, Mapping):
        label_map = {str(raw): str(text) for raw, text in labels.items()}
    elif isinstance(labels, list | tuple):
        label_map = {str(text): str(text) for text in labels}
    else:
        raise InputError(f"{where}: 'labels' must be a list or a mapping, got {type(labels).__name__}")
    names = tuple(dict.fromkeys(label_map.values()))
    if len(names) < 2:
        raise InputError(f"{where}: 'labels' needs at least two different labels")
    return label_map, names


def _postprocessor(label_names: tuple[str, ...] | None, numeric: bool) -> Callable[[str], Any]:
    if label_names is not None:
        index = {name: i for i, name in enumerate(label_names)}
        return lambda text: index.get(text.strip())
    if numeric:
        return float_postprocessor
    return lambda text: text.strip()


def _metric_fn(
    metrics: list[str], label_names: tuple[str, ...] | None, postprocess: Callable[[str], Any]
) -> Callable[[list, list[Example]], dict[str, float]]:
    def compute(values: list, references: list[Example]) -> dict[str, float]:
        gold = [postprocess(r["targets"]) for r in references]  # always valid: checked when loading
        scores: dict[str, float] = {}
        for metric in metrics:
            if metric in ("accuracy", "exact_match"):
                scores[metric] = m.accuracy(values, gold)
            elif metric == "f1":
                scores["f1"] = m.binary_f1(values, gold)
            elif metric == "mcc":
                scores["mcc"] = m.matthews_corrcoef(values, gold)
            elif metric == "macro_f1":
                assert label_names is not None
                scores["macro_f1"] = m.macro_f1(values, gold, num_classes=len(label_names))
            elif metric == "pearson_spearman":
                scores["pearson"] = m.pearson(values, gold)
                scores["spearman"] = m.spearman(values, gold)
        return scores

    return compute
