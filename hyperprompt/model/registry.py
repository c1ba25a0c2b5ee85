"""One registration per method (peft's ``register_peft_method`` idea).

A method is one file holding its config dataclass, its module(s) and its parameter formula, ending in
one line::

    register_method("adapter", AdapterConfig, AdapterModel, adapter_added_parameters)

The name is what recipes, ``method_config.json`` and result tables say. Several names may share classes
when a config field tells them apart; ``settings`` are then the fields the name fixes
(``hyperprompt-share`` fixes ``variant="share"``), and a config that contradicts them is an error.

``MethodConfig.registry``, ``MultiTaskT5.registry`` and ``ADDED_PARAMETER_FORMULAS`` are read-only views
of the one table :data:`METHODS`, by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hyperprompt.model.base import MultiTaskT5
    from hyperprompt.model.config import MethodConfig
    from hyperprompt.model.layout import BackboneShape


@dataclass(frozen=True)
class Method:
    """A registered method.

    Attributes:
        name: the method's name (``method:`` in recipes and in ``method_config.json``).
        config_cls: its dataclass config (a :class:`~hyperprompt.model.config.MethodConfig`).
        model_cls: its :class:`~hyperprompt.model.base.MultiTaskT5` subclass.
        added_parameters: ``formula(config, shape) -> int``, the parameters it adds to a backbone of
            :class:`~hyperprompt.model.layout.BackboneShape` ``shape`` (tested against counted modules).
        settings: config fields the name fixes (empty unless names share a config class).
    """

    name: str
    config_cls: type[MethodConfig]
    model_cls: type[MultiTaskT5]
    added_parameters: Callable[[Any, BackboneShape], int]
    settings: Mapping[str, Any] = field(default_factory=dict)


#: every registered method, by name
METHODS: dict[str, Method] = {}


def register_method(
    name: str,
    config_cls: type[MethodConfig],
    model_cls: type[MultiTaskT5],
    added_parameters: Callable[[Any, BackboneShape], int],
    **settings: Any,
) -> Method:
    """Register a method under ``name`` (see the module docstring). Registering the same method twice
    is a no-op; another method under a taken name is an error."""
    method = Method(name, config_cls, model_cls, added_parameters, dict(settings))
    if METHODS.get(name, method) != method:
        raise ValueError(f"method {name!r} is already registered (to {METHODS[name].model_cls.__name__}).")
    declared = getattr(config_cls, "method", None)  # a property when names share the class
    if not settings and isinstance(declared, str) and declared != name:
        raise ValueError(f"{config_cls.__name__}.method is {declared!r}, not {name!r}: give the method its own "
                         "config class (a dataclass deriving from MethodConfig with method = "
                         f"{name!r}).")
    METHODS[name] = method
    return method


def method_named(name: str) -> Method:
    """The registered method ``name``; a ValueError lists the known ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}.")
    return METHODS[name]


class RegistryView(Mapping[str, Any]):
    """A read-only ``{name: attribute}`` view of :data:`METHODS` (e.g. ``{name: model_cls}``)."""

    def __init__(self, attribute: str):
        self._attribute = attribute

    def __getitem__(self, name: str) -> Any:
        return getattr(METHODS[name], self._attribute)

    def __iter__(self) -> Iterator[str]:
        return iter(METHODS)

    def __len__(self) -> int:
        return len(METHODS)

    def __repr__(self) -> str:
        return f"RegistryView({self._attribute!r}: {sorted(METHODS)})"
