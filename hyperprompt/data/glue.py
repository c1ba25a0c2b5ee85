"""GLUE and SuperGLUE tasks in T5's text-to-text format, with the benchmarks' official metrics.

Formats follow T5 (``t5/data/glue_utils.py``, ``t5/data/preprocessors.py``): the task name, then
``field: value`` for each input field (sorted by field name unless T5 fixes an order), and the label
name as the target::

    cb hypothesis: the language was peeled down premise: It was a complex language. ...  ->  entailment
    stsb sentence1: A plane is taking off. sentence2: An air plane is taking off.          ->  5.0
    wsc text: * Mark * told Pete many lies about himself, ... # He # should have been ...  ->  False

Data comes from the Hugging Face hub (``nyu-mll/glue``, ``aps/super_glue``) or, with ``data_dir``,
from the official release files (GLUE ``.tsv``, SuperGLUE ``.jsonl``). Both are turned into the same
records (the hub's schema, ``label`` a class id), so the rest of the pipeline cannot tell them apart.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperprompt.data import metrics as m
from hyperprompt.data.glue_sources import hub_source, local_source
from hyperprompt.data.sources import OnError, Record
from hyperprompt.data.task import Example, Task, register_task
from hyperprompt.errors import InputError

GLUE_HUB_ID = "nyu-mll/glue"
SUPERGLUE_HUB_ID = "aps/super_glue"
# Bump when any preprocessing below changes: it is part of the tokenisation cache key.
PREPROCESSOR_VERSION = "1"

# The tasks each benchmark's score averages (and the paper trains on: its Section 4.1).
# GLUE leaves out WNLI, as T5 and the paper do; SuperGLUE leaves out the diagnostics AX-b / AX-g.
BENCHMARK_TASKS: dict[str, tuple[str, ...]] = {
    "glue": (
        "glue/cola",
        "glue/sst2",
        "glue/mrpc",
        "glue/qqp",
        "glue/stsb",
        "glue/mnli",
        "glue/qnli",
        "glue/rte",
    ),
    "superglue": (
        "superglue/boolq",
        "superglue/cb",
        "superglue/copa",
        "superglue/multirc",
        "superglue/record",
        "superglue/rte",
        "superglue/wic",
        "superglue/wsc",
    ),
}

# Where a split lives: (official file name or hub split name, MNLI subset or None).
SplitFiles = Mapping[str, tuple[tuple[str, str | None], ...]]


@dataclass(frozen=True)
class BuiltinSpec:
    """Everything that differs between built-in tasks."""

    name: str  # canonical name, "glue/cola"
    hub_config: str  # config on the hub, "cola"
    folder: str  # folder of the official release, "CoLA"
    files: SplitFiles  # split -> official files
    hub_splits: SplitFiles  # split -> hub splits
    text_prefix: str  # T5's task prefix, "cola"
    features: tuple[str, ...]  # the input fields, in T5's order
    label_names: tuple[str, ...] | None
    label_kind: str  # how the official file writes labels: "index", "name", "bool" or "float"
    metric: str  # key of METRICS
    format: str = "glue"  # key of PREPROCESSORS
    renamed: Mapping[str, str] | None = None  # input field -> record field, when they differ (AX-b)

    @property
    def record_fields(self) -> tuple[str, ...]:
        """The record fields the input fields come from."""
        return tuple((self.renamed or {}).get(field, field) for field in self.features)

    @property
    def benchmark(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def config(self) -> str:
        return self.name.split("/", 1)[1]


_TRAIN_DEV = {"train": (("train.tsv", None),), "validation": (("dev.tsv", None),)}
_TRAIN_VAL = {"train": (("train.jsonl", None),), "validation": (("val.jsonl", None),)}
_HUB = {"train": (("train", None),), "validation": (("validation", None),)}
_NLI = ("entailment", "not_entailment")
_BOOL = ("False", "True")


def _builtin(benchmark: str, default_files: Any, config, folder, features, labels, kind, metric, **kw) -> BuiltinSpec:
    return BuiltinSpec(
        **{"files": default_files, "hub_splits": _HUB, "text_prefix": config, "hub_config": config, **kw},
        name=f"{benchmark}/{config}",
        folder=folder,
        features=features,
        label_names=labels,
        label_kind=kind,
        metric=metric,
    )


def _glue(*args, **kw) -> BuiltinSpec:
    return _builtin("glue", _TRAIN_DEV, *args, **kw)


def _superglue(*args, **kw) -> BuiltinSpec:
    return _builtin("superglue", _TRAIN_VAL, *args, **kw)


_MNLI_LABELS = ("entailment", "neutral", "contradiction")
_MNLI_DEV = (("dev_matched.tsv", "matched"), ("dev_mismatched.tsv", "mismatched"))
_MNLI_HUB = (("validation_matched", "matched"), ("validation_mismatched", "mismatched"))
_MNLI_FEATURES = ("hypothesis", "premise")

SPECS: tuple[BuiltinSpec, ...] = (
    _glue("cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"), "index", "mcc"),
    _glue("sst2", "SST-2", ("sentence",), ("negative", "positive"), "index", "accuracy"),
    _glue(
        "mrpc", "MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "index", "f1_accuracy"
    ),
    _glue("qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate"), "index", "f1_accuracy"),
    _glue("stsb", "STS-B", ("sentence1", "sentence2"), None, "float", "pearson_spearman", format="stsb"),
    _glue(
        "mnli",
        "MNLI",
        _MNLI_FEATURES,
        _MNLI_LABELS,
        "name",
        "mnli",
        files={"train": (("train.tsv", None),), "validation": _MNLI_DEV},
        hub_splits={"train": (("train", None),), "validation": _MNLI_HUB},
    ),
    _glue(
        "mnli_matched",
        "MNLI",
        _MNLI_FEATURES,
        _MNLI_LABELS,
        "name",
        "accuracy",
        text_prefix="mnli",
        hub_config="mnli",
        files={"validation": _MNLI_DEV[:1]},
        hub_splits={"validation": _MNLI_HUB[:1]},
    ),
    _glue(
        "mnli_mismatched",
        "MNLI",
        _MNLI_FEATURES,
        _MNLI_LABELS,
        "name",
        "accuracy",
        text_prefix="mnli",
        hub_config="mnli",
        files={"validation": _MNLI_DEV[1:]},
        hub_splits={"validation": _MNLI_HUB[1:]},
    ),
    _glue("qnli", "QNLI", ("question", "sentence"), _NLI, "name", "accuracy"),
    _glue("rte", "RTE", ("sentence1", "sentence2"), _NLI, "name", "accuracy"),
    _glue("wnli", "WNLI", ("sentence1", "sentence2"), ("not_entailment", "entailment"), "index", "accuracy"),
    _superglue("boolq", "BoolQ", ("passage", "question"), _BOOL, "bool", "accuracy"),
    _superglue(
        "cb", "CB", ("hypothesis", "premise"), ("entailment", "contradiction", "neutral"), "name", "cb"
    ),
    _superglue(
        "copa",
        "COPA",
        ("choice1", "choice2", "premise", "question"),
        ("choice1", "choice2"),
        "index",
        "accuracy",
    ),
    _superglue(
        "multirc", "MultiRC", ("question", "answer", "paragraph"), _BOOL, "index", "multirc", format="multirc"
    ),
    _superglue(
        "record", "ReCoRD", ("query", "entities", "passage"), None, "answers", "record", format="record"
    ),
    _superglue("rte", "RTE", ("hypothesis", "premise"), _NLI, "name", "accuracy"),
    _superglue("wic", "WiC", ("sentence1", "sentence2", "word"), _BOOL, "bool", "accuracy"),
    _superglue("wsc", "WSC", ("text",), _BOOL, "bool", "accuracy", hub_config="wsc.fixed", format="wsc"),
    # The diagnostics are cast as RTE, as T5 does (AX-b's sentence1/2 read as premise/hypothesis);
    # the hub has them as a (labelled) "test" split.
    _superglue(
        "axb",
        "AX-b",
        ("hypothesis", "premise"),
        _NLI,
        "name",
        "mcc",
        text_prefix="rte",
        renamed={"hypothesis": "sentence2", "premise": "sentence1"},
        files={"validation": (("AX-b.jsonl", None),)},
        hub_splits={"validation": (("test", None),)},
    ),
    _superglue(
        "axg",
        "AX-g",
        ("hypothesis", "premise"),
        _NLI,
        "name",
        "axg",
        text_prefix="rte",
        files={"validation": (("AX-g.jsonl", None),)},
        hub_splits={"validation": (("test", None),)},
    ),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}

#: what each task asks, in a sentence: the text a description-conditioned HyperPrompt-Global encodes
#: (``task_conditioning: description``); paraphrased from the benchmarks' papers
DESCRIPTIONS: dict[str, str] = {
    "glue/cola": "Is this English sentence grammatically acceptable?",
    "glue/sst2": "Is the sentiment of this movie review sentence positive or negative?",
    "glue/mrpc": "Are these two news sentences paraphrases of each other?",
    "glue/qqp": "Do these two questions ask the same thing?",
    "glue/stsb": "How similar in meaning are these two sentences, on a scale from 0 to 5?",
    "glue/mnli": "Does the premise entail, contradict or leave neutral the hypothesis?",
    "glue/mnli_matched": "Does the premise entail, contradict or leave neutral the hypothesis, in a seen genre?",
    "glue/mnli_mismatched": "Does the premise entail, contradict or leave neutral the hypothesis, in an unseen genre?",
    "glue/qnli": "Does the sentence contain the answer to the question?",
    "glue/rte": "Does the first sentence entail the second?",
    "glue/wnli": "Is the sentence with the pronoun replaced entailed by the original sentence?",
    "superglue/boolq": "Answer the yes or no question about the passage.",
    "superglue/cb": "Does the premise entail, contradict or leave neutral the embedded clause?",
    "superglue/copa": "Which of two alternatives is the more plausible cause or effect of the premise?",
    "superglue/multirc": "Is this answer to the question about the paragraph true?",
    "superglue/record": "Which entity fills the blank in the query about the news passage?",
    "superglue/rte": "Does the premise entail the hypothesis?",
    "superglue/wic": "Is the word used with the same meaning in both sentences?",
    "superglue/wsc": "Does the pronoun refer to the marked noun phrase?",
    "superglue/axb": "Does the first sentence entail the second, for a diagnostic linguistic phenomenon?",
    "superglue/axg": "Does the premise entail the hypothesis, with gendered pronouns swapped?",
}


# ----------------------------------------------------------------------------------------------
# Preprocessors: record -> (inputs without the task prefix, targets).


def _glue_text(spec: BuiltinSpec) -> Callable[[Record], tuple[str, str]]:
    assert spec.label_names is not None
    label_names = spec.label_names

    pairs = tuple(zip(spec.features, spec.record_fields, strict=True))

    def preprocess(record: Record) -> tuple[str, str]:
        inputs = " ".join(f"{name}: {record[field]}" for name, field in pairs)
        return inputs, label_names[record["label"]]

    return preprocess


def _multirc_text(spec: BuiltinSpec) -> Callable[[Record], tuple[str, str]]:
    glue_text = _glue_text(spec)

    def preprocess(record: Record) -> tuple[str, str]:
        inputs, targets = glue_text(record)
        inputs = re.sub("<(/)?b>", "", inputs.replace("<br>", " "))  # T5 drops the HTML markup
        return inputs, targets

    return preprocess


def stsb_target(score: float) -> str:
    """T5's STS-B target: the score rounded to the nearest 0.2 (ties to even), one decimal."""
    return f"{round(score * 5) / 5:.1f}"


def _stsb_text(spec: BuiltinSpec) -> Callable[[Record], tuple[str, str]]:
    def preprocess(record: Record) -> tuple[str, str]:
        return f"sentence1: {record['sentence1']} sentence2: {record['sentence2']}", stsb_target(
            record["label"]
        )

    return preprocess


def _mark_span(text: str, span: str, word_index: int, mark: str) -> str:
    """Surround ``span`` starting at word ``word_index`` with ``mark`` (unchanged if it is not there)."""
    pattern = rf"^((?:\S+\s){{{word_index}}})({re.escape(span)})"
    return re.sub(pattern, lambda mo: f"{mo.group(1)}{mark} {mo.group(2)} {mark}", text, count=1)


def wsc_marked_text(record: Record) -> str:
    """T5's WSC text: the noun phrase (span 1) between ``*``, the pronoun (span 2) between ``#``."""
    text = _mark_span(record["text"], record["span1_text"], record["span1_index"], "*")
    span2_index = record["span2_index"] + (2 if record["span1_index"] < record["span2_index"] else 0)
    return _mark_span(text, record["span2_text"], span2_index, "#")


def _wsc_text(spec: BuiltinSpec) -> Callable[[Record], tuple[str, str]]:
    def preprocess(record: Record) -> tuple[str, str]:
        return f"text: {wsc_marked_text(record)}", _BOOL[record["label"]]

    return preprocess


def _record_text(spec: BuiltinSpec) -> Callable[[Record], tuple[str, str]]:
    def preprocess(record: Record) -> tuple[str, str]:
        passage = re.sub(r"(\.|\?|\!|\"|\')\n@highlight\n", r"\1 ", record["passage"])
        passage = re.sub(r"\n@highlight\n", ". ", passage)
        inputs = f"query: {record['query']} entities: {', '.join(record['entities'])} passage: {passage}"
        if not record["answers"]:
            raise InputError(f"superglue/record: query {record['idx']} has no gold answer")
        return inputs, record["answers"][0]

    return preprocess


PREPROCESSORS = {
    "glue": _glue_text,
    "multirc": _multirc_text,
    "stsb": _stsb_text,
    "wsc": _wsc_text,
    "record": _record_text,
}


# ----------------------------------------------------------------------------------------------
# Postprocessors and metrics.


def label_postprocessor(label_names: tuple[str, ...]) -> Callable[[str], int | None]:
    """Generated text -> class id, ``None`` if the text is not one of ``label_names``."""
    index = {name: i for i, name in enumerate(label_names)}
    return lambda text: index.get(text.strip())


def float_postprocessor(text: str) -> float | None:
    """Generated text -> float, ``None`` if it is not a finite number."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def answer_postprocessor(text: str) -> str:
    """Generated text -> answer text (ReCoRD: any text is an answer, scored against the gold ones)."""
    return text.strip()


def _labels(refs: list[Example]) -> list:
    return [r["label"] for r in refs]


def _mnli_metrics(values: list, refs: list[Example]) -> dict[str, float]:
    scores = {}
    for subset in ("matched", "mismatched"):
        chosen = [i for i, r in enumerate(refs) if r.get("subset") == subset]
        if chosen:
            scores[f"accuracy_{subset}"] = m.accuracy(
                [values[i] for i in chosen], [refs[i]["label"] for i in chosen]
            )
    if len(scores) == 0:
        raise InputError(
            "glue/mnli references need the 'subset' field (matched / mismatched) of validation examples"
        )
    return scores


MetricTable = dict[str, tuple[tuple[str, ...], Callable[[list, list[Example]], dict[str, float]]]]
METRICS: MetricTable = {
    "accuracy": (("accuracy",), lambda v, r: {"accuracy": m.accuracy(v, _labels(r))}),
    "mcc": (("mcc",), lambda v, r: {"mcc": m.matthews_corrcoef(v, _labels(r))}),
    "f1_accuracy": (
        ("f1", "accuracy"),
        lambda v, r: {"f1": m.binary_f1(v, _labels(r)), "accuracy": m.accuracy(v, _labels(r))},
    ),
    "pearson_spearman": (
        ("pearson", "spearman"),
        lambda v, r: {"pearson": m.pearson(v, _labels(r)), "spearman": m.spearman(v, _labels(r))},
    ),
    "cb": (
        ("macro_f1", "accuracy"),
        lambda v, r: {
            "macro_f1": m.macro_f1(v, _labels(r), num_classes=3),
            "accuracy": m.accuracy(v, _labels(r)),
        },
    ),
    "multirc": (
        ("f1a", "exact_match"),
        lambda v, r: {
            "f1a": m.binary_f1(v, _labels(r)),
            "exact_match": m.exact_match_per_group(
                v, _labels(r), [(x["idx"]["paragraph"], x["idx"]["question"]) for x in r]
            ),
        },
    ),
    "record": (("f1", "exact_match"), lambda v, r: m.squad_scores(v, [x["answers"] for x in r])),
    "axg": (
        ("gender_parity", "accuracy"),
        lambda v, r: {
            "gender_parity": m.gender_parity(v, [x["idx"] // 2 for x in r]),
            "accuracy": m.accuracy(v, _labels(r)),
        },
    ),
    "mnli": (("accuracy_matched", "accuracy_mismatched"), _mnli_metrics),
}

# Examples the validation / test hold-out must keep together.
_GROUP_KEYS: dict[str, Callable[[Example], Any]] = {
    "superglue/multirc": lambda ex: ex["idx"]["paragraph"],
    "superglue/record": lambda ex: ex["idx"]["passage"],
    "superglue/axg": lambda ex: ex["idx"] // 2,  # AX-g pairs are consecutive examples
}


def make_builtin_task(
    name: str,
    data_dir: str | Path | None = None,
    *,
    prefix: bool = True,
    hub_id: str | None = None,
    on_error: OnError = "raise",
    test_fraction: float | None = None,
    split_seed: int = 0,
) -> Task:
    """Build the GLUE / SuperGLUE task ``name`` (canonical). See :func:`hyperprompt.data.get_task`."""
    spec = SPEC_BY_NAME[name]
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    skipped: collections.Counter = collections.Counter()
    if data_dir is not None:
        if hub_id is not None:
            raise InputError("pass data_dir (official files) or hub_id (hub layout), not both")
        source = local_source(spec, data_dir, on_error, skipped)
    else:
        default_hub = GLUE_HUB_ID if spec.benchmark == "glue" else SUPERGLUE_HUB_ID
        source = hub_source(spec, hub_id or default_hub)
    if spec.format == "stsb":
        postprocess: Callable[[str], Any] = float_postprocessor
    elif spec.format == "record":
        postprocess = answer_postprocessor
    else:
        assert spec.label_names is not None
        postprocess = label_postprocessor(spec.label_names)
    metric_names, metric_fn = METRICS[spec.metric]
    return Task(
        spec.name,
        source=source,
        preprocess=PREPROCESSORS[spec.format](spec),
        postprocess=postprocess,
        metrics=metric_fn,
        metric_names=metric_names,
        splits=tuple(spec.files),
        label_names=spec.label_names,
        text_prefix=spec.text_prefix,
        prefix=prefix,
        test_fraction=test_fraction,
        split_seed=split_seed,
        group_key=_GROUP_KEYS.get(spec.name),
        version=PREPROCESSOR_VERSION,
        skipped=skipped,
        description=DESCRIPTIONS.get(spec.name),
    )


def _register_builtins() -> None:
    for spec in SPECS:

        def factory(data_dir: str | Path | None = None, *, _name: str = spec.name, **options: Any) -> Task:
            return make_builtin_task(_name, data_dir, **options)

        register_task(factory, name=spec.name)


_register_builtins()
