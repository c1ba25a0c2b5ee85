"""Reading GLUE / SuperGLUE data into records of the Hugging Face hub's schema.

Two sources, one result: the official release files (GLUE ``.tsv``, SuperGLUE ``.jsonl``, found under
a ``data_dir``) and the hub (``datasets.load_dataset``) both give records with the hub's fields,
``label`` a class id (a float for STS-B), MultiRC flattened to one record per answer and ReCoRD to
one record per query. Task definitions (formats, metrics) are in :mod:`hyperprompt.data.glue`.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hyperprompt.data.sources import (
    OnError,
    Record,
    RowError,
    convert_rows,
    int_field,
    iter_glue_tsv,
    iter_jsonl,
    load_hub_split,
    text_field,
)
from hyperprompt.errors import InputError, MissingFileError

if TYPE_CHECKING:
    from hyperprompt.data.glue import BuiltinSpec

_BOOL = ("False", "True")


def parse_label(value: Any, kind: str, label_names: tuple[str, ...] | None) -> int | float:
    """An official label as the hub stores it: a class id, or a float for STS-B."""
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise RowError(f"label must be a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise RowError(f"label must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise RowError(f"label must be a finite number, got {value!r}")
        return number
    assert label_names is not None
    if kind == "name" and isinstance(value, str) and value in label_names:
        return label_names.index(value)
    if kind == "bool" and isinstance(value, bool):
        return int(value)
    if kind == "index" and not isinstance(value, bool):
        if isinstance(value, int) and 0 <= value < len(label_names):
            return value
        if isinstance(value, str) and value.strip() in {str(i) for i in range(len(label_names))}:
            return int(value)
    expected = {
        "name": " or ".join(repr(n) for n in label_names),
        "bool": "true or false",
        "index": " or ".join(str(i) for i in range(len(label_names))),
    }[kind]
    raise RowError(f"unknown label {value!r}; expected {expected}")


# GLUE: (column names of a header-less file, {record field: column}, label column).
_GLUE_COLUMNS: dict[str, tuple[tuple[str, ...] | None, dict[str, str], str]] = {
    "cola": (("source", "label", "original_mark", "sentence"), {"sentence": "sentence"}, "label"),
    "sst2": (None, {"sentence": "sentence"}, "label"),
    "mrpc": (None, {"sentence1": "#1 String", "sentence2": "#2 String"}, "Quality"),
    "qqp": (None, {"question1": "question1", "question2": "question2"}, "is_duplicate"),
    "stsb": (None, {"sentence1": "sentence1", "sentence2": "sentence2"}, "score"),
    "mnli": (None, {"premise": "sentence1", "hypothesis": "sentence2"}, "gold_label"),
    "qnli": (None, {"question": "question", "sentence": "sentence"}, "label"),
    "rte": (None, {"sentence1": "sentence1", "sentence2": "sentence2"}, "label"),
    "wnli": (None, {"sentence1": "sentence1", "sentence2": "sentence2"}, "label"),
}


def _glue_converter(spec: BuiltinSpec) -> tuple[tuple[str, ...] | None, Callable[[dict, int], Record]]:
    columns, fields, label_column = _GLUE_COLUMNS[spec.hub_config]

    def convert(row: dict, position: int) -> Record:
        record: Record = {field: text_field(row, column) for field, column in fields.items()}
        record["label"] = parse_label(text_field(row, label_column), spec.label_kind, spec.label_names)
        record["idx"] = position  # the hub's idx is the row's position in the file
        return record

    return columns, convert


def fix_wsc_spans(record: Record) -> Record:
    """The hub's ``wsc.fixed`` correction of span texts that are not substrings of the text
    (case of the first word, a trailing ``.``, a newline), applied in place."""

    def fix(key: str) -> None:
        span, index = record[f"{key}_text"], record[f"{key}_index"]
        if span in record["text"] or span in ("Kamenev and Zinoviev", "Kamenev, Zinoviev, and Stalin"):
            return
        if "theyscold" in span:  # mirrors the hub's fix, which only moves the index
            record["span2_index"] = 10
        words = record["text"].split()
        if not 0 <= index < len(words):
            raise RowError(f"{key}_index {index} is outside the text ({len(words)} words)")
        span = (span[0].lower() if words[index][0].islower() else span[0].upper()) + span[1:]
        span = span.rstrip(".").replace("\n", " ")
        if span not in record["text"]:
            raise RowError(f"{key}_text {record[f'{key}_text']!r} does not occur in the text")
        record[f"{key}_text"] = span

    fix("span1")
    fix("span2")
    return record


def _superglue_converter(spec: BuiltinSpec) -> Callable[[dict, int], Record | list[Record]]:
    config = spec.hub_config
    if config == "multirc":
        return _multirc_records
    if config == "record":
        return _record_records

    def convert(row: dict, position: int) -> Record:
        record: Record = {k: v for k, v in row.items() if k not in ("target", "label")}
        if config == "wsc.fixed":
            target = row.get("target")
            if not isinstance(target, dict):
                raise RowError("missing field 'target' (the WSC spans)")
            record["text"] = text_field(row, "text")
            for key in ("span1_text", "span2_text"):
                record[key] = text_field(target, key)
            for key in ("span1_index", "span2_index"):
                record[key] = int_field(target, key)
            fix_wsc_spans(record)
        else:
            for field in spec.record_fields:
                record[field] = text_field(row, field)
        if config == "wic":
            for key in ("start1", "start2", "end1", "end2"):
                record[key] = int_field(row, key)
        if "label" not in row:
            raise RowError("missing field 'label'")
        record["label"] = parse_label(row["label"], spec.label_kind, spec.label_names)
        record["idx"] = int_field(row, "idx")
        return record

    return convert


def _multirc_records(row: dict, position: int) -> list[Record]:
    """One record per answer, as on the hub: paragraph, question, answer, label, idx{...}."""
    passage = row.get("passage")
    if not isinstance(passage, dict) or not isinstance(passage.get("questions"), list):
        raise RowError("expected 'passage' with 'text' and a list of 'questions'")
    paragraph, paragraph_idx = text_field(passage, "text"), int_field(row, "idx")
    records = []
    for question in passage["questions"]:
        if not isinstance(question, dict) or not isinstance(question.get("answers"), list):
            raise RowError("every question needs 'question', 'idx' and a list of 'answers'")
        for answer in question["answers"]:
            if not isinstance(answer, dict) or "label" not in answer:
                raise RowError("every answer needs 'text', 'idx' and 'label'")
            records.append(
                {
                    "paragraph": paragraph,
                    "question": text_field(question, "question"),
                    "answer": text_field(answer, "text"),
                    "label": parse_label(answer["label"], "index", _BOOL),
                    "idx": {
                        "paragraph": paragraph_idx,
                        "question": int_field(question, "idx"),
                        "answer": int_field(answer, "idx"),
                    },
                }
            )
    return records


def _record_records(row: dict, position: int) -> list[Record]:
    """One record per query, as on the hub: passage, query, entities, entity_spans, answers, idx{...}.

    Entity spans in the official file have inclusive ends.
    """
    passage = row.get("passage")
    if not isinstance(passage, dict) or not isinstance(passage.get("entities"), list):
        raise RowError("expected 'passage' with 'text' and a list of 'entities'")
    if not isinstance(row.get("qas"), list):
        raise RowError("missing field 'qas' (the queries)")
    text, passage_idx = text_field(passage, "text"), int_field(row, "idx")
    spans = []
    for entity in passage["entities"]:
        start, end = int_field(entity, "start"), int_field(entity, "end")
        spans.append({"text": text[start : end + 1], "start": start, "end": end + 1})
    spans.sort(key=lambda span: span["start"])
    records = []
    for qa in row["qas"]:
        if not isinstance(qa, dict) or not isinstance(qa.get("answers", []), list):
            raise RowError("every query needs 'query', 'idx' and a list of 'answers'")
        records.append(
            {
                "passage": text,
                "query": text_field(qa, "query"),
                "entities": sorted({span["text"] for span in spans}),
                "entity_spans": spans,
                "answers": sorted({text_field(a, "text") for a in qa.get("answers", [])}),
                "idx": {"passage": passage_idx, "query": int_field(qa, "idx")},
            }
        )
    return records


_BENCHMARK_FOLDERS = {
    "glue": ("glue", "glue_data", "GLUE"),
    "superglue": ("superglue", "super_glue", "SuperGLUE"),
}


def find_task_file(data_dir: str | Path, spec: BuiltinSpec, filename: str) -> Path:
    """The official file ``filename`` of a task under ``data_dir``.

    ``data_dir`` may hold the task folders (``DIR/CB/train.jsonl``) or a folder per benchmark
    (``DIR/superglue/CB/train.jsonl``).
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise MissingFileError(f"data_dir {root} is not a directory")
    candidates = [root / folder / spec.folder for folder in _BENCHMARK_FOLDERS[spec.benchmark]]
    candidates.append(root / spec.folder)
    kind = "GLUE .tsv" if spec.benchmark == "glue" else "SuperGLUE .jsonl"
    for task_dir in candidates:
        if task_dir.is_dir():
            path = task_dir / filename
            if not path.is_file():
                raise MissingFileError(
                    f"{path}: not found. {spec.name} expects the official {kind} file {filename!r} "
                    f"in {task_dir} (files there: {sorted(p.name for p in task_dir.iterdir())})"
                )
            return path
    tried = ", ".join(str(c) for c in candidates)
    raise MissingFileError(
        f"{spec.name}: no folder {spec.folder!r} under {root} (tried {tried}). Expected the official "
        f"{kind} release layout: DIR/{spec.folder}/{filename} or DIR/{spec.benchmark}/{spec.folder}/{filename}"
    )


def local_source(spec: BuiltinSpec, data_dir: str | Path, on_error: OnError, skipped: collections.Counter):
    def read(split: str) -> list[Record]:
        records: list[Record] = []
        for filename, subset in spec.files[split]:
            path = find_task_file(data_dir, spec, filename)
            if spec.benchmark == "glue":
                columns, convert = _glue_converter(spec)
                rows = iter_glue_tsv(path, columns)
            else:
                rows, convert = iter_jsonl(path), _superglue_converter(spec)
            part = convert_rows(path, rows, convert, on_error=on_error, skipped=skipped, counter_key=split)
            records.extend({**r, "subset": subset} if subset else r for r in part)
        return records

    return read


def hub_source(spec: BuiltinSpec, hub_id: str):
    def read(split: str) -> list[Record]:
        records: list[Record] = []
        for hub_split, subset in spec.hub_splits[split]:
            rows, features = load_hub_split(hub_id, spec.hub_config, hub_split)
            where = f"{hub_id} ({spec.hub_config}, {hub_split})"
            hub_labels = getattr(features.get("label"), "names", None)
            if (
                spec.label_names is not None
                and hub_labels is not None
                and tuple(hub_labels) != spec.label_names
            ):
                raise InputError(f"{where} has labels {hub_labels}, expected {list(spec.label_names)}")
            if any(row.get("label") == -1 for row in rows):
                raise InputError(f"{where} has examples without a gold label (-1): not usable as {split}")
            for row in rows:
                record = dict(row)
                if (
                    spec.label_kind == "float"
                ):  # float32 on the hub: the shortest decimal, 3.8 not 3.799999952
                    record["label"] = float(str(np.float32(record["label"])))
                if spec.format == "record":
                    record["entities"] = sorted(set(record["entities"]))
                    record["answers"] = sorted(set(record["answers"]))
                records.append({**record, "subset": subset} if subset else record)
        return records

    return read
