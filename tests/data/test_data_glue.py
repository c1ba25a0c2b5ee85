"""GLUE / SuperGLUE tasks on the official files: sizes, formats, round trips, perfect scores."""

from __future__ import annotations

import json

import pytest

from hyperprompt.data import get_task, list_tasks
from hyperprompt.data.glue import SPEC_BY_NAME, stsb_target
from hyperprompt.data.glue_sources import find_task_file

# Official sizes (examples as the task yields them: MultiRC answers, ReCoRD queries;
# MNLI validation = matched 9,815 + mismatched 9,832).
OFFICIAL_SIZES = {
    ("glue/cola", "train"): 8551,
    ("glue/cola", "validation"): 1043,
    ("glue/sst2", "train"): 67349,
    ("glue/sst2", "validation"): 872,
    ("glue/mrpc", "train"): 3668,
    ("glue/mrpc", "validation"): 408,
    ("glue/qqp", "train"): 363846,
    ("glue/qqp", "validation"): 40430,
    ("glue/stsb", "train"): 5749,
    ("glue/stsb", "validation"): 1500,
    ("glue/mnli", "train"): 392702,
    ("glue/mnli", "validation"): 9815 + 9832,
    ("glue/mnli_matched", "validation"): 9815,
    ("glue/mnli_mismatched", "validation"): 9832,
    ("glue/qnli", "train"): 104743,
    ("glue/qnli", "validation"): 5463,
    ("glue/rte", "train"): 2490,
    ("glue/rte", "validation"): 277,
    ("glue/wnli", "train"): 635,
    ("glue/wnli", "validation"): 71,
    ("superglue/boolq", "train"): 9427,
    ("superglue/boolq", "validation"): 3270,
    ("superglue/cb", "train"): 250,
    ("superglue/cb", "validation"): 56,
    ("superglue/copa", "train"): 400,
    ("superglue/copa", "validation"): 100,
    ("superglue/multirc", "train"): 27243,
    ("superglue/multirc", "validation"): 4848,
    ("superglue/record", "train"): 100730,
    ("superglue/record", "validation"): 10000,
    ("superglue/rte", "train"): 2490,
    ("superglue/rte", "validation"): 277,
    ("superglue/wic", "train"): 5428,
    ("superglue/wic", "validation"): 638,
    ("superglue/wsc", "train"): 554,
    ("superglue/wsc", "validation"): 104,
    ("superglue/axb", "validation"): 1104,
    ("superglue/axg", "validation"): 356,
}
BUILTIN = [name for name in list_tasks() if name.split("/")[0] in ("glue", "superglue")]


def present(data_dir, name: str, split: str) -> bool:
    spec = SPEC_BY_NAME[name]
    try:
        for filename, _ in spec.files[split]:
            find_task_file(data_dir, spec, filename)
    except FileNotFoundError:
        return False
    return True


def _present_splits(data_dir):
    return [
        (name, split)
        for name in BUILTIN
        for split in SPEC_BY_NAME[name].files
        if present(data_dir, name, split)
    ]


def test_every_builtin_split_has_an_official_size():
    assert {(n, s) for n in BUILTIN for s in SPEC_BY_NAME[n].files} == set(OFFICIAL_SIZES)


def test_row_counts_equal_official_sizes(data_dir):
    checked = _present_splits(data_dir)
    # SOURCES.md: 29 task splits are present (QQP, MNLI, ReCoRD, BoolQ train and QNLI train are not).
    assert len(checked) >= 26, checked
    for name, split in checked:
        assert get_task(name, data_dir=data_dir).num_examples(split) == OFFICIAL_SIZES[name, split], (
            name,
            split,
        )


def test_multirc_passage_and_question_counts(data_dir):
    task = get_task("multirc", data_dir=data_dir)
    for split, (passages, questions) in {"train": (456, 5131), "validation": (83, 953)}.items():
        examples = task.load(split)
        assert len({ex["idx"]["paragraph"] for ex in examples}) == passages
        assert len({(ex["idx"]["paragraph"], ex["idx"]["question"]) for ex in examples}) == questions


def _gold(task, example):
    """What the target should postprocess to."""
    if task.name == "glue/stsb":
        return round(example["label"] * 5) / 5
    if task.name == "superglue/record":
        return example["answers"][0]
    return example["label"]


def test_round_trip_and_perfect_predictions_score_100(data_dir):
    for name, split in _present_splits(data_dir):
        task = get_task(name, data_dir=data_dir)
        examples = task.load(split)
        for example in examples:
            assert task.postprocess(example["targets"]) == pytest.approx(_gold(task, example)), (
                name,
                example,
            )
            assert example["task"] == name and example["inputs"].strip()
        # STS-B targets are rounded to 0.2; a perfect prediction is the gold score itself.
        perfect = [repr(ex["label"]) if name == "glue/stsb" else ex["targets"] for ex in examples]
        scores = task.compute_metrics(perfect, examples)
        assert set(scores) <= set(task.metric_names)
        assert scores == pytest.approx(dict.fromkeys(scores, 100.0)), (name, split, scores)


def test_t5_formats(data_dir):
    cb = get_task("superglue/cb", data_dir=data_dir).load("train")[0]
    assert cb["inputs"] == (
        "cb hypothesis: the language was peeled down premise: It was a complex language. "
        "Not written down but handed down. One might say it was peeled down."
    )
    assert cb["targets"] == "entailment" and cb["label"] == 0 and cb["idx"] == 0
    copa = get_task("copa", data_dir=data_dir).load("validation")[0]
    assert copa["inputs"] == (
        "copa choice1: The toilet filled with water. choice2: Water flowed from the spout. "
        "premise: The man turned on the faucet. question: effect"
    )
    assert copa["targets"] == "choice2"
    glue_rte = get_task("glue/rte", data_dir=data_dir).load("train")[0]
    assert glue_rte["inputs"] == (
        "rte sentence1: No Weapons of Mass Destruction Found in Iraq Yet. "
        "sentence2: Weapons of Mass Destruction Found in Iraq."
    )
    assert glue_rte["targets"] == "not_entailment"
    superglue_rte = get_task("superglue/rte", data_dir=data_dir).load("train")[0]
    assert superglue_rte["inputs"].startswith(
        "rte hypothesis: Weapons of Mass Destruction Found in Iraq. premise: No"
    )
    wic = get_task("wic", data_dir=data_dir).load("train")[1]
    assert wic["inputs"] == "wic sentence1: Approach a task. sentence2: To approach the city. word: approach"
    assert wic["targets"] == "False"
    multirc = get_task("multirc", data_dir=data_dir).load("validation")[0]
    assert multirc["inputs"].startswith(
        "multirc question: Would the mass of a baseball affect how much force you have to use to pick it up? "
        "answer: No paragraph: What causes a change in motion?"
    )
    assert multirc["idx"] == {"paragraph": 0, "question": 0, "answer": 0}
    wsc = get_task("wsc", data_dir=data_dir).load("train")[0]
    assert wsc["inputs"] == (
        "wsc text: * Mark * told Pete many lies about himself, which Pete included in his book. "
        "# He # should have been more skeptical."
    )
    axb = get_task("axb", data_dir=data_dir).load("validation")[0]
    assert axb["inputs"] == "rte hypothesis: The cat did not sit on the mat. premise: The cat sat on the mat."
    assert axb["idx"] == 0 and axb["targets"] == "not_entailment"
    sst2 = get_task("sst2", data_dir=data_dir).load("validation")[0]
    assert (
        sst2["inputs"] == "sst2 sentence: it 's a charming and often affecting journey . "
    )  # official trailing space
    mrpc = get_task("mrpc", data_dir=data_dir).load("train")[0]  # the file starts with a BOM
    assert mrpc["targets"] == "equivalent" and mrpc["inputs"].startswith("mrpc sentence1: Amrozi accused")
    cola = get_task("cola", data_dir=data_dir).load("validation")
    assert cola[-1]["inputs"].startswith("cola sentence: ")  # the last row has no newline


def test_prefix_can_be_dropped(data_dir):
    example = get_task("cb", data_dir=data_dir, prefix=False).load("train")[0]
    assert example["inputs"].startswith("hypothesis: the language was peeled down premise:")


def test_stsb_targets_round_to_point_two_like_t5():
    assert [stsb_target(x) for x in (1.8, 5.0, 0.0, 3.33, 4.75, 2.5, 0.1)] == [
        "1.8",
        "5.0",
        "0.0",
        "3.4",
        "4.8",
        "2.4",  # 12.5 rounds half to even, as tf.round
        "0.0",
    ]


def test_wsc_marks_spans_like_t5(tmp_path):
    folder = tmp_path / "WSC"
    folder.mkdir()
    row = {
        "text": "This is a test sentence .",
        "target": {"span1_index": 3, "span1_text": "test", "span2_index": 0, "span2_text": "This"},
        "idx": 0,
        "label": False,
    }
    lowercase_span = {
        **row,
        "idx": 1,
        "target": {**row["target"], "span2_text": "this"},
    }  # fixed as wsc.fixed
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in (row, lowercase_span)) + "\n")
    examples = get_task("wsc", data_dir=tmp_path).load("train")
    assert [ex["inputs"] for ex in examples] == ["wsc text: # This # is a * test * sentence ."] * 2
    assert examples[1]["span2_text"] == "This" and examples[0]["targets"] == "False"


def test_mnli_validation_concatenates_matched_and_mismatched(tmp_path):
    folder = tmp_path / "glue" / "MNLI"
    folder.mkdir(parents=True)
    header = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label\n"
    rows = {
        "dev_matched.tsv": [("p1", "h1", "neutral"), ("p2", "h2", "entailment")],
        "dev_mismatched.tsv": [("p3", "h3", "contradiction")],
    }
    for filename, lines in rows.items():
        body = "".join(f"{i}\t0\t0\tfiction\t{p}\t{h}\t{y}\t{y}\n" for i, (p, h, y) in enumerate(lines))
        (folder / filename).write_text(header + body)
    task = get_task("mnli", data_dir=tmp_path)
    examples = task.load("validation")
    assert [ex["subset"] for ex in examples] == ["matched", "matched", "mismatched"]
    assert examples[0]["inputs"] == "mnli hypothesis: h1 premise: p1" and examples[0]["targets"] == "neutral"
    scores = task.compute_metrics(["neutral", "contradiction", "contradiction"], examples)
    assert scores == {"accuracy_matched": 50.0, "accuracy_mismatched": 100.0}
    matched = get_task("glue/mnli_matched", data_dir=tmp_path)
    assert len(matched.load("validation")) == 2 and matched.metric_names == ("accuracy",)


def test_qqp_from_official_tsv(tmp_path):
    folder = tmp_path / "QQP"
    folder.mkdir()
    (folder / "dev.tsv").write_text(
        'id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n7\t1\t2\tWhy "so"?\tWhy so?\t1\n'
    )
    (example,) = get_task("qqp", data_dir=tmp_path).load("validation")
    assert example["inputs"] == 'qqp question1: Why "so"? question2: Why so?'
    assert example["targets"] == "duplicate" and example["idx"] == 0


def test_record_format_and_metrics(record_dir):
    task = get_task("record", data_dir=record_dir)
    examples = task.load("validation")
    assert len(examples) == 3  # one example per query
    assert examples[0]["inputs"] == (
        "record query: A @placeholder is a bird. entities: penguin, pigeon, potato "
        "passage: The penguin and the pigeon met a potato. Birds meet food"
    )
    assert examples[0]["targets"] == "penguin" and examples[0]["answers"] == ["penguin", "pigeon"]
    assert examples[1]["entities"] == ["Barack Obama", "France", "Obama", "Paris"]
    assert examples[2]["idx"] == {"passage": 1, "query": 11}
    # Max over answers: "pigeon" is the second answer; "Obama" matches one answer exactly;
    # "the France" normalises to "france".
    assert task.compute_metrics(["pigeon", "Obama", "the France"], examples) == {
        "f1": 100.0,
        "exact_match": 100.0,
    }
    scores = task.compute_metrics(["a potato", "Barack", "Paris"], examples)
    assert scores["exact_match"] == 0.0
    # "Barack" has F1 0 against "Obama" and 2/3 against "Barack Obama": the max counts.
    assert scores["f1"] == pytest.approx(100 * (0 + 2 / 3 + 0) / 3)
