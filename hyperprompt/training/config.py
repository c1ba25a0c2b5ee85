"""Training recipes: a tree of dataclasses loaded from YAML, with ``--set a.b=c`` overrides.

A recipe is a YAML file whose keys are the fields below (nested sections are nested mappings)::

    model: t5-tiny
    method: hyperprompt-global
    tasks: [superglue/cb, superglue/copa]
    optimizer: {name: adafactor, lr: 1.0e-3}

Every key is checked: an unknown key is a :class:`ConfigError` that lists the valid keys of its
section (and the closest one), a value of the wrong type or outside its choices names the key and
what it expects. ``docs/training.md`` lists every key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

import hyperprompt.model  # noqa: F401  (registers the methods the `method` key may name)
from hyperprompt.errors import ConfigError
from hyperprompt.model.config import MethodConfig


def _choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


@dataclass
class MixtureConfig:
    """How tasks are sampled (T5's ``mixing_rate_num_examples``; the paper: proportional)."""

    rate: str = field(default="proportional", metadata=_choices("proportional", "temperature", "equal"))
    cap: int | None = None
    temperature: float = 1.0
    mixed: bool = True


@dataclass
class OptimizerConfig:
    """``adafactor`` (``transformers.Adafactor``) or ``adamw`` (torch).

    Adafactor's defaults are T5's fine-tuning (Mesh TensorFlow's ``AdafactorOptimizer``): the paper
    states Adafactor and a constant LR of 1e-3; the rest are T5's defaults, which the paper does not
    restate (``training/optim.py``).
    """

    name: str = field(default="adafactor", metadata=_choices("adafactor", "adamw"))
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    eps: float = 1e-8  # adamw
    scale_parameter: bool = True  # adafactor: step x max(1e-3, RMS(param)) (Mesh TF multiply_by_parameter_scale)
    relative_step: bool = False  # adafactor: its own step size min(1e-2, 1/sqrt(t)) instead of lr and schedule
    warmup_init: bool = False  # adafactor: with relative_step, min(1e-6 t, 1/sqrt(t))
    clip_threshold: float = 1.0  # adafactor's update clipping
    decay_rate: float = -0.8  # adafactor: second-moment decay 1 - t^decay_rate
    beta1: float | None = None  # adafactor momentum (None: none, as T5)


@dataclass
class ScheduleConfig:
    """Learning-rate schedule after ``warmup_steps`` of linear warm-up; decays reach ``min_lr_ratio * lr``."""

    name: str = field(default="constant", metadata=_choices("constant", "linear", "cosine"))
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0


@dataclass
class EvalConfig:
    """Evaluation: greedy (or beam) generation on each task's ``split``, official metrics."""

    split: str = "validation"
    max_examples_per_task: int | None = None  # None: the whole split
    batch_size: int = 64  # per process
    num_beams: int = 1
    max_new_tokens: int | None = None  # None: max_target_length


@dataclass
class TrainConfig:
    """A training recipe. ``docs/training.md`` describes each key."""

    model: str = "t5-tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    tokenizer_vocab_size: int = 2000
    method: str = "hyperprompt-global"
    method_settings: dict[str, Any] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=list)
    task_files: list[str] = field(default_factory=list)
    data_dir: str | None = None
    task_prefix: bool | None = None  # None: each task's default (GLUE/SuperGLUE: prefixed)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    max_input_length: int = 512
    max_target_length: int = 32
    batch_size: int = 128
    gradient_accumulation_steps: int = 1
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    max_grad_norm: float | None = None
    max_steps: int = 1000
    eval_every: int | None = None
    save_every: int = 1000
    keep_last: int = 2
    log_every: int = 50
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    precision: str = field(default="no", metadata=_choices("no", "bf16", "fp16"))
    gradient_checkpointing: bool = False
    find_unused_parameters: bool = False
    cache_dir: str | None = None
    num_threads: int | None = None  # torch CPU threads (None: torch's default)

    def validate(self) -> TrainConfig:
        """Check values that types alone do not (ranges, the method and its settings)."""
        positive = ["tokenizer_vocab_size", "max_input_length", "max_target_length", "batch_size",
                    "gradient_accumulation_steps", "max_steps", "save_every", "log_every",
                    "eval.batch_size", "eval.num_beams"]
        for key in positive:
            if _get(self, key) < 1:
                raise ConfigError(f"config key '{key}': must be a positive integer, got {_get(self, key)!r}")
        for key in ("eval_every", "num_threads", "eval.max_examples_per_task", "eval.max_new_tokens", "mixture.cap"):
            if _get(self, key) is not None and _get(self, key) < 1:
                raise ConfigError(f"config key '{key}': must be a positive integer or null, got {_get(self, key)!r}")
        if self.keep_last < 1:
            raise ConfigError(f"config key 'keep_last': must be at least 1, got {self.keep_last!r}")
        if self.optimizer.lr <= 0:
            raise ConfigError(f"config key 'optimizer.lr': must be positive, got {self.optimizer.lr!r}")
        if self.schedule.warmup_steps < 0:
            raise ConfigError(f"config key 'schedule.warmup_steps': must be >= 0, got {self.schedule.warmup_steps!r}")
        if self.optimizer.warmup_init and not self.optimizer.relative_step:
            raise ConfigError("config key 'optimizer.warmup_init': needs optimizer.relative_step: true "
                              "(it warms up Adafactor's relative step size)")
        if self.optimizer.clip_threshold <= 0:
            raise ConfigError(f"config key 'optimizer.clip_threshold': must be positive, got {self.optimizer.clip_threshold!r}")
        if self.optimizer.decay_rate >= 0:
            raise ConfigError(f"config key 'optimizer.decay_rate': must be negative (decay 1 - t^decay_rate), "
                              f"got {self.optimizer.decay_rate!r}")
        if self.optimizer.beta1 is not None and not 0 <= self.optimizer.beta1 < 1:
            raise ConfigError(f"config key 'optimizer.beta1': must be in [0, 1) or null, got {self.optimizer.beta1!r}")
        if len(self.optimizer.betas) != 2:
            raise ConfigError(f"config key 'optimizer.betas': expected two numbers, got {self.optimizer.betas!r}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ConfigError(f"config key 'max_grad_norm': must be positive or null, got {self.max_grad_norm!r}")
        if self.mixture.temperature <= 0:
            raise ConfigError(f"config key 'mixture.temperature': must be positive, got {self.mixture.temperature!r}")
        if not self.tasks:
            raise ConfigError("config key 'tasks': give at least one task name (e.g. [superglue/cb, superglue/copa]).")
        if self.method not in MethodConfig.registry:
            raise ConfigError(f"config key 'method': {self.method!r} is not one of "
                              f"{', '.join(map(repr, sorted(MethodConfig.registry)))}")
        reserved = sorted({"method", "task_names", "task_descriptions", "description_dim", "task_groups"}
                          & set(self.method_settings))
        if reserved:
            raise ConfigError(f"config key 'method_settings': {reserved} are set from 'method' and 'tasks' (the "
                              "tasks' descriptions, their encoder's width), not here")
        try:
            self.method_config(self.tasks)
        except ValueError as error:
            raise ConfigError(f"config key 'method_settings': {error}") from None
        return self

    @property
    def generation_length(self) -> int:
        """Tokens to generate at evaluation: ``eval.max_new_tokens``, else ``max_target_length``."""
        return self.eval.max_new_tokens or self.max_target_length

    def method_config(self, task_names: list[str], descriptions: list[str | None] | None = None) -> MethodConfig:
        """The model's method config for ``task_names`` (in task-id order). ``descriptions``: the tasks'
        descriptions, read by ``task_conditioning: description`` (``None``: placeholders, to check the other
        settings before the tasks are built)."""
        data = {"method": self.method, "task_names": list(task_names), **self.method_settings}
        if data.get("task_conditioning") == "description":
            if descriptions is None:
                descriptions = [f"(the description of {name})" for name in task_names]
            missing = [name for name, text in zip(task_names, descriptions, strict=True) if not text]
            if missing:
                raise ValueError(f"task_conditioning: description makes each task's prompts from its description, "
                                 f"and {missing} have none: add 'description:' to their task spec (built-in "
                                 "GLUE / SuperGLUE and synthetic tasks have one)")
            data["task_descriptions"] = list(descriptions)
        return MethodConfig.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build and validate a config from nested plain data (the parsed YAML)."""
        return _build(cls, data, "").validate()


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> TrainConfig:
    """Load a YAML recipe (or start from ``base``), apply ``KEY=VALUE`` overrides, validate.

    Args:
        path: the YAML file (``None``: only ``base`` and the overrides).
        overrides: ``["optimizer.lr=3e-4", "tasks=[cb,copa]"]``; values are parsed as YAML.
        base: a mapping to start from instead of (or under) the file.
    """
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a recipe is a mapping of keys to values, got {type(loaded).__name__}")
        data.update(loaded)
    for item in overrides or []:
        apply_override(data, item)
    return TrainConfig.from_dict(data)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``data[a][b] = value`` for ``item = "a.b=value"`` (the value parsed as YAML)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optimizer.lr=3e-4")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    *parents, last = key.split(".")
    node = data
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            section = ".".join(parents[: depth + 1])
            raise ConfigError(f"--set {item!r}: '{section}' is not a section")
        node = child
    node[last] = value


# --- checking plain data against the dataclasses ------------------------------------------------

def _get(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def _build(cls: type, data: Any, prefix: str) -> Any:
    where = f"'{prefix.rstrip('.')}'" if prefix else "the top level"
    if not isinstance(data, dict):
        raise ConfigError(f"config key {where}: expected a mapping of keys, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            if not prefix and key == "compare":
                hint = (" (a comparison recipe: run `hyperprompt compare` on it, or `hyperprompt compare ... --methods "
                        "M --seeds 1` for one of its runs)")
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}. Valid keys at {where}: {', '.join(fields)}")
        kwargs[key] = _convert(value, hints[key], f"{prefix}{key}", fields[key].metadata.get("choices"))
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, key: str, choices: tuple[str, ...] | None = None) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key, choices)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if origin is list:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        return [_convert(item, args[0], f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = str(value)
            if choices and value not in choices:
                raise ConfigError(f"config key '{key}': {value!r} is not one of {', '.join(map(repr, choices))}")
            return value
    else:
        return value
    raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
