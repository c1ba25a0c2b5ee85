"""Predictions for raw examples: record -> model input text -> generated text -> label."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

from transformers import PreTrainedTokenizerBase

from hyperprompt.data import Task
from hyperprompt.errors import InputError
from hyperprompt.model import MultiTaskT5
from hyperprompt.training.checkpoint import LoadedRun
from hyperprompt.training.evaluate import encode_texts, generate_texts


class _Record(dict):
    """A record that answers ``fill`` for a missing field and remembers which were asked for."""

    def __init__(self, data: dict[str, Any], fill: str):
        super().__init__(data)
        self.fill, self.missing = fill, set()

    def __missing__(self, key: str) -> str:
        self.missing.add(key)
        return self.fill


def input_text(task: Task, record: dict[str, Any]) -> str:
    """The model input for ``record``: its ``inputs`` field if present, else the task's preprocessing
    of the raw fields (Hugging Face schema, as ``task.load`` returns them). Fields that only shape the
    target (the label) may be missing; a missing input field is an error that names it."""
    if "inputs" in record:
        if not isinstance(record["inputs"], str):
            raise InputError(f"'inputs' must be a string, got {record['inputs']!r}")
        return record["inputs"]
    filled = dict(record)
    label, names = filled.get("label"), task.label_names
    if names is not None and isinstance(label, str) and label in names:
        filled["label"] = names.index(label)  # an official file's label name
    elif names is not None and not (isinstance(label, int) and 0 <= label < len(names)):
        filled["label"] = 0  # the label only shapes the target, which is not used here
    elif names is None and not isinstance(label, int | float):
        filled["label"] = 0.0
    filled.setdefault("answers", [])
    # Format twice with different fillers for missing fields: if the input text changes, an input
    # field is missing (preprocessors may read optional fields with defaults, so a KeyError is not enough).
    texts, missing = [], set()
    for fill in ("", "\u2063"):
        probe = _Record(filled, fill)
        try:
            inputs, _ = task.format_record(probe)
        except (KeyError, TypeError, IndexError, ValueError) as error:
            raise InputError(f"{task.name}: cannot build the input from the fields {sorted(record)} ({error!r}); "
                             "give the task's input fields or an 'inputs' string") from None
        texts.append(inputs)
        missing |= probe.missing
    if texts[0] != texts[1]:
        raise InputError(f"{task.name}: the example lacks the input field(s) {sorted(missing)}; "
                         "give the task's input fields or an 'inputs' string")
    return texts[0]


def predict_records(
    model: MultiTaskT5,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    records: Sequence[dict[str, Any]],
    *,
    max_input_length: int,
    max_new_tokens: int,
    batch_size: int = 64,
    num_beams: int = 1,
) -> list[dict[str, Any]]:
    """Each record plus ``prediction`` (the generated text), ``label`` (its postprocessed value: a
    class id, a number or text; ``None`` if invalid) and, for classification tasks, ``label_name``.
    A gold ``label`` in the input is kept as ``gold_label``."""
    texts = [input_text(task, record) for record in records]
    input_ids = encode_texts(tokenizer, texts, max_input_length)
    task_id = model.config.task_id(task.name)
    predictions = generate_texts(model, tokenizer, input_ids, [task_id] * len(texts), batch_size=batch_size,
                                 max_new_tokens=max_new_tokens, num_beams=num_beams)
    rows = []
    for record, prediction in zip(records, predictions, strict=True):
        row = dict(record)
        if "label" in row:
            row["gold_label"] = row.pop("label")
        value = task.postprocess(prediction)
        row.update(prediction=prediction, label=value)
        if task.label_names is not None:
            row["label_name"] = task.label_names[value] if isinstance(value, int) else None
        rows.append(row)
    return rows


def iter_records(lines: Iterable[bytes | str], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` of a JSON-lines stream; a line that is not UTF-8, not JSON or not an object
    is an InputError naming ``name`` and the line. Blank lines are skipped."""
    for number, line in enumerate(lines, 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InputError(f"{name} line {number}: not valid UTF-8 (byte {error.start}: "
                                 f"{line[error.start:error.start + 1]!r}); save the file as UTF-8") from None
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{name} line {number}: not JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{name} line {number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def predict_stream(run: LoadedRun, task_name: str, source: IO[bytes] | Iterable[bytes | str], name: str,
                   sink: IO[str], *, batch_size: int = 64, num_beams: int | None = None,
                   chunk_size: int | None = None) -> int:
    """Predict every record of the JSON-lines ``source`` (named ``name`` in messages) with the saved model
    ``run`` and write one JSON line per record to ``sink``, in input order, a chunk at a time (memory stays
    flat; a kill keeps what was written). Returns the number of records."""
    (task,) = run.tasks([task_name], for_prediction=True)
    config = run.config
    chunk_size = chunk_size or 8 * batch_size
    written = 0

    def flush(chunk: list[tuple[int, dict[str, Any]]]) -> None:
        for number, record in chunk:  # check every record of the chunk before generating
            try:
                input_text(task, record)
            except InputError as error:
                raise InputError(f"{name} line {number}: {error}") from None
        rows = predict_records(run.model, run.tokenizer, task, [record for _, record in chunk],
                               max_input_length=config.max_input_length, max_new_tokens=config.generation_length,
                               batch_size=batch_size, num_beams=num_beams or config.eval.num_beams)
        sink.writelines(json.dumps(row) + "\n" for row in rows)
        sink.flush()

    chunk: list[tuple[int, dict[str, Any]]] = []
    for item in iter_records(source, name):
        chunk.append(item)
        if len(chunk) == chunk_size:
            flush(chunk)
            written += len(chunk)
            chunk = []
    if chunk:
        flush(chunk)
        written += len(chunk)
    return written
