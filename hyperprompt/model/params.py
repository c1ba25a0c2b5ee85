"""Closed-form parameter accounting: how many parameters each method adds to a backbone.

Each method's formula lives in its own file and is registered with it; the formulas are checked
against counted module parameters in the tests, so ``hyperprompt params`` can report the paper's sizes
(up to T5-11B) from shapes alone.
"""

from __future__ import annotations

from hyperprompt.model.config import MethodConfig
from hyperprompt.model.layout import BackboneShape
from hyperprompt.model.registry import METHODS, RegistryView

#: ``{method name: formula(config, shape)}``, a view of the method registry
ADDED_PARAMETER_FORMULAS = RegistryView("added_parameters")

__all__ = ["ADDED_PARAMETER_FORMULAS", "BackboneShape", "added_parameters"]


def added_parameters(config: MethodConfig, shape: BackboneShape) -> int:
    """Added parameters of the method ``config.method`` on a backbone of ``shape``."""
    method = METHODS.get(config.method)
    if method is None:
        raise ValueError(f"no parameter formula for {config.method!r}; known: {', '.join(sorted(METHODS))}.")
    return method.added_parameters(config.for_stacks(shape.stacks), shape)
