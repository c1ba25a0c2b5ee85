"""Predictions for raw examples: record -> model input text -> generated text -> label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from hyperprompt.data import Task
from hyperprompt.model import MultiTaskT5
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
            raise ValueError(f"'inputs' must be a string, got {record['inputs']!r}")
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
            raise ValueError(f"{task.name}: cannot build the input from the fields {sorted(record)} ({error!r}); "
                             "give the task's input fields or an 'inputs' string") from None
        texts.append(inputs)
        missing |= probe.missing
    if texts[0] != texts[1]:
        raise ValueError(f"{task.name}: the example lacks the input field(s) {sorted(missing)}; "
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
