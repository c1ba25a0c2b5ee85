"""Bad input and faults (issue 14's audit): each test reproduces one defect the audit found.

Nothing outside the run directory is written, a mismatched resume refuses, bad numbers are refused
with a message naming the option, NaN recovery works, stale files are cleaned.
"""

from __future__ import annotations

import json

import pytest
import yaml

from hyperprompt.data import load_task_spec
from hyperprompt.data.task import check_task_name
from hyperprompt.training.checkpoint import child_path


def _user_task(directory, name: str):
    rows = [{"text": f"{i} {'a' * (i % 3)}", "label": i % 2} for i in range(40)]
    (directory / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"name": name, "train": "rows.jsonl", "validation": "rows.jsonl", "input_template": "x: {text}",
            "target_field": "label", "labels": ["even", "odd"]}
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("name", ["/some/dir", "user/../../../victim", "../victim", "user/..", "a/b/c",
                                  ".hidden", "user/.x", "User/Caps", "user/a b", "user\\..\\x"])
def test_a_task_name_that_could_leave_the_run_directory_is_refused(tmp_path, name):
    spec = _user_task(tmp_path, name)
    with pytest.raises(ValueError, match=r"is not a valid task name.*user/sentiment"):
        load_task_spec(spec, register=False)


@pytest.mark.parametrize("name", ["user/sentiment", "glue/mnli_matched", "superglue/cb", "mytask", "user/v1.2-x"])
def test_ordinary_task_names_pass(name):
    assert check_task_name(name) == name


def test_child_path_stays_inside(tmp_path):
    assert child_path(tmp_path, "user/a") == tmp_path / "user/a"
    for bad in ("/etc", "../x", "a/../../x", "."):
        with pytest.raises(ValueError, match="outside"):
            child_path(tmp_path, bad)


def test_train_with_an_escaping_task_name_writes_nothing_outside(tmp_path, tools):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    data = tmp_path / "data"
    data.mkdir()
    spec = _user_task(data, "user/../../../victim")
    recipe = {**tools.SYNTHETIC_RECIPE, "tasks": ["user/../../../victim", "synthetic/first"],
              "task_files": [str(spec)], "max_steps": 2, "save_every": 2}
    run_dir = tmp_path / "deep" / "er" / "run"
    result = tools.run_cli("train", tools.write_recipe(tmp_path / "r.yaml", recipe), "--out", run_dir)
    assert result.returncode != 0
    assert "is not a valid task name" in result.stderr
    assert "Traceback" not in result.stderr
    assert (victim / "precious.txt").read_text() == "keep me"
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")}
    assert {p for p in written if not p.startswith(("deep/er/run", "data"))} == {"r.yaml", "victim", "victim/precious.txt",
                                                                           "deep", "deep/er"}
