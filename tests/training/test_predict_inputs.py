"""`predict`'s inputs: raw examples (with or without a label) become exactly the training inputs."""

from __future__ import annotations

import pytest

from hyperprompt.data import get_task
from hyperprompt.training.predict import input_text


@pytest.mark.parametrize("name", ["cb", "copa", "wsc", "wic", "multirc"])
def test_raw_superglue_examples_give_the_training_inputs(name, superglue_dir):
    task = get_task(name, data_dir=superglue_dir)
    for example in task.load("validation")[:5]:
        raw = {k: v for k, v in example.items() if k not in ("inputs", "targets", "task")}
        assert input_text(task, raw) == example["inputs"]
        unlabelled = {k: v for k, v in raw.items() if k != "label"}
        assert input_text(task, unlabelled) == example["inputs"]


def test_official_label_names_and_ready_inputs():
    task = get_task("cb")
    assert input_text(task, {"premise": "P.", "hypothesis": "H.", "label": "neutral"}) == "cb hypothesis: H. premise: P."
    assert input_text(task, {"inputs": "anything"}) == "anything"
    assert input_text(get_task("synthetic/first"), {"text": "a b c d"}) == "a b c d"


def test_a_missing_input_field_is_named():
    with pytest.raises(ValueError, match=r"superglue/cb: the example lacks the input field\(s\) \['hypothesis'\]"):
        input_text(get_task("cb"), {"premise": "P."})
    with pytest.raises(ValueError, match="'inputs' must be a string"):
        input_text(get_task("cb"), {"inputs": 3})
