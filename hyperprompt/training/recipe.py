"""A recipe resolved once: what a run, an evaluation or a prediction reads, never re-validated or swapped.

:func:`resolve` turns a validated :class:`TrainConfig` into a :class:`Recipe`: user task specs registered,
tasks built in task-id order (the mixture and the model's ``task_names`` follow this one order), names made
canonical (``cb`` -> ``superglue/cb``), paths made absolute, and the method config built once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperprompt.data import Task
from hyperprompt.errors import ConfigError
from hyperprompt.model.config import MethodConfig
from hyperprompt.training.builder import build_tasks
from hyperprompt.training.config import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """A resolved recipe.

    Attributes:
        config: the recipe as saved in a run (``config.yaml``, ``run_config.yaml``): canonical task names in
            task-id order, absolute paths.
        tasks: the tasks, in task-id order.
        method: the model's method config (``task_names`` = the tasks' names).
    """

    config: TrainConfig
    tasks: tuple[Task, ...]
    method: MethodConfig

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]

    def user_task_specs(self) -> list[dict[str, Any]]:
        """The specs of the user-defined tasks (formatting, labels, metrics; no file paths), saved with each
        model so that ``predict`` formats raw records as training did from the model folder alone."""
        return [dict(task.spec) for task in self.tasks if task.spec is not None]


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else path


def resolve(config: TrainConfig, data_dir: str | Path | None = None) -> Recipe:
    """Resolve ``config`` (see the module docstring). Raises ConfigError / MissingFileError / InputError for
    bad tasks, data folders or method settings."""
    tasks = build_tasks(config, data_dir=data_dir)
    names = [task.name for task in tasks]
    model, tokenizer = config.model, config.tokenizer
    if Path(model).expanduser().is_dir():
        model = _absolute(model)
    if tokenizer and Path(tokenizer).expanduser().is_dir():
        tokenizer = _absolute(tokenizer)
    resolved = dataclasses.replace(
        config, tasks=names, data_dir=_absolute(str(data_dir) if data_dir else config.data_dir),
        cache_dir=_absolute(config.cache_dir), task_files=[_absolute(p) for p in config.task_files],
        model=model, tokenizer=tokenizer)
    try:
        method = resolved.method_config(names, [task.description for task in tasks])
    except ValueError as error:
        raise ConfigError(f"config key 'method_settings': {error}") from None
    encoder = getattr(method, "description_encoder", None)
    if encoder and Path(encoder).expanduser().is_dir():  # a local sentence encoder: found from any directory later
        method = dataclasses.replace(method, description_encoder=_absolute(encoder))
    return Recipe(resolved, tuple(tasks), method)
