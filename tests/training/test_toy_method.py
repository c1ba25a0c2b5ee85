"""A new method is one file and one registration line: a toy method defined here alone trains, saves,
loads and evaluates through the ordinary recipe path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from hyperprompt.model import METHODS, MethodConfig, MultiTaskT5, register_method
from hyperprompt.model.params import BackboneShape, added_parameters
from hyperprompt.training import load_config, load_run_checkpoint, train


@dataclass
class TaskBiasConfig(MethodConfig):
    """The config class names the method (what ``method_config.json`` and result tables say)."""

    init_std: float = 0.02

    method: ClassVar[str] = "task-bias"


class TaskBiasModel(MultiTaskT5):
    """A learned vector per task, added to every encoder input embedding."""

    config: TaskBiasConfig

    def build(self) -> None:
        self.task_bias = nn.Parameter(torch.randn(self.config.num_tasks, self.layout.d_model) * self.config.init_std)

    def per_task_parameters(self) -> dict[str, nn.Parameter]:
        return {"task_bias": self.task_bias}

    def conditioning_inputs(self, task_ids: torch.Tensor, inputs: dict[str, Any]) -> dict[str, Any]:
        if inputs.get("encoder_outputs") is not None:  # generate() ran the (conditioned) encoder already
            return inputs
        inputs = dict(inputs)
        embeds = self.base.get_input_embeddings()(inputs.pop("input_ids"))
        return {**inputs, "inputs_embeds": embeds + self.task_bias[task_ids][:, None, :].to(embeds.dtype)}


@pytest.fixture
def task_bias_method():
    register_method("task-bias", TaskBiasConfig, TaskBiasModel, lambda config, shape: config.num_tasks * shape.d_model)
    yield
    del METHODS["task-bias"]


def test_a_method_defined_in_one_file_trains_saves_and_loads(task_bias_method, tools, tmp_path):
    recipe = {**tools.SYNTHETIC_RECIPE, "method": "task-bias", "method_settings": {"init_std": 0.1},
              "model_overrides": {"dropout_rate": 0.0}, "max_steps": 3, "save_every": 3,
              "eval": {"max_examples_per_task": 4}}
    train(load_config(base=recipe), tmp_path / "run")
    losses = [r["loss"] for r in tools.jsonl(tmp_path / "run" / "train_log.jsonl")]
    assert len(losses) == 3 and all(loss > 0 for loss in losses)

    model, _, config, _ = load_run_checkpoint(tmp_path / "run" / "final")
    assert type(model) is TaskBiasModel and config.method == "task-bias" and model.config.init_std == 0.1
    assert model.num_added_parameters() == added_parameters(model.config, BackboneShape.from_config(model.base.config))
    ids = torch.randint(3, 200, (2, 6))
    with torch.no_grad():
        per_task = [model(input_ids=ids, decoder_input_ids=ids[:, :2], task_ids=[task, task]).logits
                    for task in (0, 1)]
    assert not torch.equal(per_task[0], per_task[1])  # the trained biases condition the model
