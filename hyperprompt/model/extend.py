"""New tasks for a trained model: the same model with more task ids, every old weight kept.

A method declares its per-task parameters (:meth:`MultiTaskT5.per_task_parameters`: first dimension = task
id). :func:`with_new_tasks` builds the model for ``task_names + new``, copies every added weight, and gives
each per-task parameter new rows at the end (:meth:`MultiTaskT5.new_task_rows`: by default :func:`mean_task_rows`, the mean of the old rows, an
"average task" to start from; a description-conditioned HyperPrompt-Global encodes the new description).
Everything else -- backbone, hypernetworks, shared MLPs -- is the same tensor values, so every old task's
outputs are unchanged, bit for bit, whatever the new rows become.

:func:`train_only_new_rows` then makes only (some of) those new rows trainable: the other parameters are
frozen and a gradient hook zeroes the old rows' gradients (with Adam(W) and no weight decay, a zero gradient
leaves a row exactly where it is).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hyperprompt.model.base import MultiTaskT5, mean_task_rows


def with_new_tasks(model: MultiTaskT5, new_task_names: Sequence[str],
                   descriptions: Sequence[str | None] | None = None, direct_prompts: bool = False,
                   input_prompts: bool = False, mean_rows: Sequence[str] = ()) -> MultiTaskT5:
    """``model`` with ``new_task_names`` appended to its tasks (task ids ``T, T+1, ...``); the backbone is
    shared with ``model`` (not copied). ``descriptions``: the new tasks' descriptions (a
    description-conditioned HyperPrompt-Global needs them). ``direct_prompts``: the new tasks' prompts are
    stored tables, learned directly (HyperPrompt; :attr:`HyperPromptConfig.direct_prompt_tasks`).
    ``input_prompts``: the new tasks also get soft input tokens (:attr:`HyperPromptConfig.input_prompt_tasks`).
    ``mean_rows``: per-task parameters whose new rows start as the mean of the old rows whatever the method's own
    start (``hyperprompt.description_embedding``: a described task from the average description, not its own).
    Raises ValueError for a name the model already has, a missing description, or an unknown ``mean_rows`` name."""
    old = model.config.task_names
    names = list(new_task_names)
    clash = sorted(set(old) & set(names))
    if clash:
        raise ValueError(f"the model already has task(s) {clash}; give the new task another name")
    per_task = set(model.per_task_parameters())
    unknown = sorted(set(mean_rows) - per_task)
    if unknown:
        raise ValueError(f"mean_rows {unknown} are not per-task parameters of {type(model).__name__}; it has "
                         f"{sorted(per_task)}")
    config = model.config.with_new_tasks(names, list(descriptions) if descriptions is not None else [None] * len(names),
                                         direct_prompts=direct_prompts, input_prompts=input_prompts)
    extended = type(model)(model.base, config)
    weights = {}
    for name, tensor in model.added_state_dict().items():
        if name in per_task:
            start = mean_task_rows(tensor, len(names)) if name in mean_rows else \
                extended.new_task_rows(name, tensor, names)
            tensor = torch.cat([tensor, start], dim=0)
        weights[name] = tensor
    extended.load_state_dict(weights, strict=False)
    extended.train(model.training)
    return extended


def train_only_new_rows(model: MultiTaskT5, first_new_task: int, parameter_names: Sequence[str]) -> list[nn.Parameter]:
    """Freeze ``model`` except the rows ``first_new_task:`` of the per-task parameters ``parameter_names``
    (keys of :meth:`~MultiTaskT5.per_task_parameters`); return those parameters (for the optimizer)."""
    per_task = model.per_task_parameters()
    unknown = sorted(set(parameter_names) - set(per_task))
    if unknown:
        raise ValueError(f"{unknown} are not per-task parameters of {type(model).__name__}; it has {sorted(per_task)}")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    trained = []
    for name in parameter_names:
        parameter = per_task[name]
        parameter.requires_grad_(True)
        keep = torch.zeros(parameter.shape[0], *([1] * (parameter.dim() - 1)), dtype=parameter.dtype,
                           device=parameter.device)
        keep[first_new_task:] = 1
        parameter.register_hook(lambda grad, keep=keep: grad * keep)
        trained.append(parameter)
    return trained
