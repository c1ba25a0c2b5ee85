"""Method configurations, saved as JSON next to the weights (peft's `*_config.json` idea).

Every task-conditioning method has a dataclass config deriving from :class:`MethodConfig`, defined in
the method's own file and registered with it (:func:`~hyperprompt.model.registry.register_method`).
The paper leaves several details open; each one is a field with a documented default
(see ``docs/method.md``). The mixins here hold what several configs share.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hyperprompt.model.layout import STACKS
from hyperprompt.model.registry import METHODS, RegistryView, method_named

APPLY_TO_CHOICES = ("both", "encoder", "decoder")


@dataclass
class MethodConfig:
    """Fields shared by every multi-task method.

    Attributes:
        task_names: the tasks, in task-id order (``task_ids`` index this list).
        freeze_backbone: train only the task-conditioned parameters (the paper tunes everything).
        task_groups: how many tasks the model had when trained, then how many each ``add-task`` added, in
            task-id order (``None``: one group, every task). Inference computes each group's task tables
            (:meth:`MultiTaskT5.task_tables`: HyperPrompt's prompts, HyperFormer++'s generated adapters)
            together, with the shapes it had when the group was added: a BLAS
            matmul's rows can depend on how many rows it has, so tables over all tasks at once would change
            an old task's outputs in the last bits once a task is added.
    """

    task_names: list[str] = field(default_factory=list)
    freeze_backbone: bool = False
    task_groups: list[int] | None = None

    method: ClassVar[str] = "mtl"
    #: fields added after models of this method were first saved, with the value that reproduces what a
    #: ``method_config.json`` without them meant (applied when loading a saved model)
    saved_defaults: ClassVar[dict[str, Any]] = {}
    #: ``{method name: config class}``, a view of the method registry
    registry: ClassVar[RegistryView] = RegistryView("config_cls")

    def __post_init__(self) -> None:
        if not self.task_names:
            raise ValueError("task_names is empty: give the list of task names, in task-id order.")
        if len(set(self.task_names)) != len(self.task_names):
            dupes = sorted({t for t in self.task_names if self.task_names.count(t) > 1})
            raise ValueError(f"task_names has duplicates: {dupes}.")
        self.task_names = list(self.task_names)
        if self.task_groups is not None:
            self.task_groups = [int(n) for n in self.task_groups]
            if sum(self.task_groups) != self.num_tasks or min(self.task_groups) < 1:
                raise ValueError(f"task_groups={self.task_groups} must be positive counts adding up to the "
                                 f"{self.num_tasks} tasks (or null).")

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def task_id(self, name: str) -> int:
        """The task id of ``name``; a ValueError suggests the closest names otherwise."""
        try:
            return self.task_names.index(name)
        except ValueError:
            close = difflib.get_close_matches(name, self.task_names, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(self.task_names)}.") from None

    @property
    def label(self) -> str:
        """The method and its distinguishing settings, for results tables (subclasses add settings)."""
        return self.method

    def with_new_tasks(self, names: list[str], descriptions: list[str | None],
                       direct_prompts: bool = False, input_prompts: bool = False) -> MethodConfig:
        """This config with the tasks ``names`` appended (task ids ``T, T+1, ...``); ``descriptions`` are
        theirs (``None`` where a task has none), for methods that read them. ``direct_prompts``: learn the new
        tasks' prompts directly; ``input_prompts``: give them soft input tokens (HyperPrompt only)."""
        if direct_prompts:
            raise ValueError(f"{self.method} has no generated prompts to replace by directly learned ones")
        if input_prompts:
            raise ValueError(f"soft input tokens for a new task are a HyperPrompt option; {self.method} has its own "
                             "per-task rows (train them)")
        return dataclasses.replace(self, task_names=[*self.task_names, *names], task_groups=self.groups_with(len(names)))

    def groups_with(self, count: int) -> list[int]:
        """:attr:`task_groups` after adding ``count`` tasks."""
        return [*(self.task_groups or [self.num_tasks]), count]

    def task_id_groups(self) -> list[tuple[int, int]]:
        """The task-id ranges ``(start, stop)`` of :attr:`task_groups`."""
        spans, start = [], 0
        for count in self.task_groups or [self.num_tasks]:
            spans.append((start, start + count))
            start += count
        return spans

    def to_dict(self) -> dict[str, Any]:
        data = {"method": self.method, **dataclasses.asdict(self)}
        if data["task_groups"] is None:  # as files written before it existed: one group
            del data["task_groups"]
        return data

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MethodConfig:
        """Build the config of the method named in ``data["method"]`` (or of ``cls``). A field that the
        method's name fixes (``variant`` of ``hyperprompt-share``) may be repeated, not contradicted."""
        data = dict(data)
        name = data.pop("method", cls.method)
        method = method_named(name)
        known = {f.name for f in dataclasses.fields(method.config_cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown key(s) {unknown} for method {name!r}; valid keys: {', '.join(sorted(known))}."
            )
        for key, value in method.settings.items():
            if key in data and data[key] != value:
                matching = [m.name for m in METHODS.values()
                            if m.config_cls is method.config_cls and m.settings.get(key) == data[key]]
                hint = f"name method {matching[0]!r} for {key}={data[key]!r}, or " if matching else ""
                raise ValueError(f"method {name!r} means {key}={value!r}, but {key}={data[key]!r} was given: "
                                 f"{hint}drop {key!r}.")
            data[key] = value
        return method.config_cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> MethodConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def for_stacks(self, stacks: tuple[str, ...]) -> MethodConfig:
        """This config on a backbone that has only ``stacks`` (a decoder-only LM: ``("decoder",)``):
        ``apply_to: both`` becomes the one stack there is; naming a missing stack is an error."""
        apply_to = getattr(self, "apply_to", None)
        if apply_to is None or set(stacks) == set(STACKS):
            return self
        if apply_to == "both":
            return dataclasses.replace(self, apply_to=stacks[0])
        if apply_to not in stacks:
            raise ValueError(f"apply_to={apply_to!r}, but the backbone has only the {' and '.join(stacks)} stack; "
                             f"use apply_to: {stacks[0]} (or both).")
        return self


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise a ValueError naming ``key`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{key}={value!r} is not valid; choose one of {', '.join(map(repr, choices))}.")


def check_positive(config: Any, *keys: str) -> None:
    """Raise a ValueError naming the first of ``keys`` whose value is not a positive integer."""
    for key in keys:
        if int(getattr(config, key)) < 1:
            raise ValueError(f"{key}={getattr(config, key)!r} must be a positive integer.")


class BottleneckMixin:
    """For configs with a ``bottleneck_dim`` field (``None``: d_model // 32, at least 1)."""

    bottleneck_dim: int | None

    def check_bottleneck(self) -> None:
        if self.bottleneck_dim is not None and self.bottleneck_dim < 1:
            raise ValueError(f"bottleneck_dim={self.bottleneck_dim!r} must be a positive integer or null.")

    def resolved_bottleneck(self, d_model: int) -> int:
        """The bottleneck width on a backbone of width ``d_model``."""
        return self.bottleneck_dim if self.bottleneck_dim is not None else max(1, d_model // 32)


class PromptedStacksMixin:
    """For configs with ``encoder_prompt_length``, ``decoder_prompt_length`` and ``apply_to`` fields
    (methods that prepend key/value prompts in self-attention)."""

    encoder_prompt_length: int
    decoder_prompt_length: int
    apply_to: str

    def check_prompted_stacks(self) -> None:
        check_choice("apply_to", self.apply_to, APPLY_TO_CHOICES)
        check_positive(self, "encoder_prompt_length", "decoder_prompt_length")

    def uses_encoder(self) -> bool:
        return self.apply_to in ("both", "encoder")

    def uses_decoder(self) -> bool:
        return self.apply_to in ("both", "decoder")

    def prompt_lengths(self) -> dict[str, int]:
        """``{stack: l}`` for the prompted stacks, in stack order."""
        lengths = {"encoder": self.encoder_prompt_length, "decoder": self.decoder_prompt_length}
        used = STACKS if self.apply_to == "both" else (self.apply_to,)
        return {stack: lengths[stack] for stack in used}
