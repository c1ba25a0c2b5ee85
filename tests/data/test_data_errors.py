"""Bad input gives clear errors (file:line), or is skipped and counted when asked; nothing is dropped."""

from __future__ import annotations

import json
import logging
import re

import pytest

from hyperprompt.data import DataFormatError, get_task, load_task_spec


def write_cb(tmp_path, lines: list[str]):
    folder = tmp_path / "CB"
    folder.mkdir(exist_ok=True)
    path = folder / "train.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOOD = json.dumps({"premise": "p", "hypothesis": "h", "label": "neutral", "idx": 0})


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = write_cb(tmp_path, [GOOD, GOOD, '{"premise": "p", "hypothesis": ', GOOD])
    with pytest.raises(DataFormatError, match=re.escape(f"{path}:3: invalid JSON")) as error:
        get_task("cb", data_dir=tmp_path).load("train")
    assert error.value.path == str(path) and error.value.line == 3


def test_skip_counts_and_reports_malformed_rows(tmp_path, caplog):
    unknown_label = json.dumps({"premise": "p", "hypothesis": "h", "label": "maybe", "idx": 3})
    write_cb(tmp_path, [GOOD, "not json", GOOD, unknown_label, "[1, 2]"])
    task = get_task("cb", data_dir=tmp_path, on_error="skip")
    with caplog.at_level(logging.WARNING):
        examples = task.load("train")
    assert len(examples) == 2
    assert task.skipped["train"] == 3
    assert "skipped 3 malformed row(s)" in caplog.text and "train.jsonl:2" in caplog.text


def test_missing_field_and_unknown_label(tmp_path):
    path = write_cb(tmp_path, [GOOD, json.dumps({"premise": "p", "label": "neutral", "idx": 1})])
    with pytest.raises(DataFormatError, match=re.escape(f"{path}:2: missing field 'hypothesis'")):
        get_task("cb", data_dir=tmp_path).load("train")
    write_cb(tmp_path, [json.dumps({"premise": "p", "hypothesis": "h", "label": "neutrall", "idx": 1})])
    with pytest.raises(
        DataFormatError, match=r"train.jsonl:1: unknown label 'neutrall'; expected 'entailment'"
    ):
        get_task("cb", data_dir=tmp_path).load("train")


def test_bad_glue_rows(tmp_path):
    folder = tmp_path / "glue" / "RTE"
    folder.mkdir(parents=True)
    (folder / "dev.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\n2\ta\tb\tyes\n"
    )
    with pytest.raises(DataFormatError, match=r"dev.tsv:3: expected 4 columns"):
        get_task("glue/rte", data_dir=tmp_path).load("validation")
    task = get_task("glue/rte", data_dir=tmp_path, on_error="skip")
    assert len(task.load("validation")) == 1 and task.skipped["validation"] == 2


def test_stsb_score_must_be_a_number(tmp_path):
    folder = tmp_path / "STS-B"
    folder.mkdir()
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    (folder / "dev.tsv").write_text(header + "0\tg\tf\ty\t0\tn\tn\ta\tb\tfive\n")
    with pytest.raises(DataFormatError, match=r"dev.tsv:2: label must be a number, got 'five'"):
        get_task("stsb", data_dir=tmp_path).load("validation")


def test_empty_file(tmp_path):
    path = write_cb(tmp_path, [])
    with pytest.raises(ValueError, match=re.escape(f"{path}: file is empty")):
        get_task("cb", data_dir=tmp_path).load("train")


def test_all_rows_bad_is_an_error_even_when_skipping(tmp_path):
    write_cb(tmp_path, ["nope", "nope"])
    with pytest.raises(ValueError, match="no usable examples"):
        get_task("cb", data_dir=tmp_path, on_error="skip").load("train")


def test_missing_files_name_the_path_tried(tmp_path, data_dir):
    with pytest.raises(
        FileNotFoundError, match=re.escape(str(data_dir / "superglue" / "BoolQ" / "train.jsonl"))
    ):
        get_task("boolq", data_dir=data_dir).load("train")
    with pytest.raises(FileNotFoundError, match=r"no folder 'ReCoRD'.*DIR/ReCoRD/train.jsonl"):
        get_task("record", data_dir=data_dir).load("train")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        get_task("cb", data_dir=tmp_path / "nowhere").load("train")


def test_data_dir_may_be_the_benchmark_folder(data_dir):
    assert len(get_task("cb", data_dir=data_dir / "superglue").load("validation")) == 56
    assert len(get_task("glue/rte", data_dir=data_dir / "glue").load("validation")) == 277


def test_unknown_and_ambiguous_task_names():
    with pytest.raises(ValueError, match=r"unknown task 'coppa'\. Did you mean 'copa'\?"):
        get_task("coppa")
    with pytest.raises(ValueError, match=r"unknown task 'superglue/wsx'\. Did you mean 'superglue/wsc'\?"):
        get_task("superglue/wsx")
    with pytest.raises(ValueError, match=r"ambiguous: use one of \['glue/rte', 'superglue/rte'\]"):
        get_task("rte")
    assert get_task("SST-2").name == "glue/sst2" and get_task("super_glue/AX-b").name == "superglue/axb"


def test_unknown_split_and_option(data_dir):
    with pytest.raises(ValueError, match=r"superglue/axb has no split 'train'"):
        get_task("axb", data_dir=data_dir).load("train")
    with pytest.raises(TypeError):
        get_task("cb", data_dir=data_dir, prefx=False)
    with pytest.raises(ValueError, match="test_fraction must be in"):
        get_task("cb", data_dir=data_dir, test_fraction=1.5)
    with pytest.raises(ValueError, match="on_error"):
        get_task("cb", data_dir=data_dir, on_error="ignore")


def test_user_spec_errors(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"text": "a", "label": "x"}) + "\n" + json.dumps({"label": "y"}) + "\n")
    spec = {"name": "user/t", "train": str(data), "input_template": "t: {text}", "target_field": "label"}
    with pytest.raises(DataFormatError, match=re.escape(f"{data}:2: missing field 'text'")):
        load_task_spec(spec, register=False).load("train")
    with pytest.raises(
        DataFormatError, match=r"data.jsonl:1: unknown label 'x'; expected one of \['y', 'z'\]"
    ):
        load_task_spec({**spec, "labels": ["y", "z"]}, register=False).load("train")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['input'\]"):
        load_task_spec({**spec, "input": "x"}, register=False)
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        load_task_spec({**spec, "metric": "bleu"}, register=False)
    with pytest.raises(ValueError, match="'f1' needs exactly two labels"):
        load_task_spec({**spec, "metric": "f1"}, register=False)
    with pytest.raises(FileNotFoundError, match="missing.jsonl: not found"):
        load_task_spec({**spec, "train": str(tmp_path / "missing.jsonl")}, register=False)
    with pytest.raises(ValueError, match="needs a validation split"):
        load_task_spec(spec, register=False).with_options(test_fraction=0.5)  # it has a train file only
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        load_task_spec(tmp_path / "bad.yaml")


def test_malformed_csv_row_names_its_line(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text('text,label\n"multi\nline",y\nshort\n"ok",y\n')
    spec = {"name": "user/c", "train": str(data), "input_template": "{text}", "target_field": "label"}
    with pytest.raises(DataFormatError, match=re.escape(f"{data}:4: expected 2 columns")):
        load_task_spec(spec, register=False).load("train")
    task = load_task_spec(spec, register=False, on_error="skip")
    assert [ex["inputs"] for ex in task.load("train")] == ["multi\nline", "ok"] and task.skipped["train"] == 1


def test_unterminated_quote_in_csv_stops_with_an_error_even_when_skipping(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text('text,label\n"ok",y\n"never closed,y\n"lost",y\n')
    spec = {"name": "user/q", "train": str(data), "input_template": "{text}", "target_field": "label"}
    with pytest.raises(DataFormatError, match=r"data.csv:\d+: unreadable row"):
        load_task_spec(spec, register=False, on_error="skip").load("train")
