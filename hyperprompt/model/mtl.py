"""Plain multi-task T5 (the paper's MTL baseline): one backbone for every task, no task conditioning.

:class:`~hyperprompt.model.base.MultiTaskT5` itself is the model (it adds nothing, so task ids are
validated and ignored) and :class:`~hyperprompt.model.config.MethodConfig` the config.
"""

from __future__ import annotations

from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.config import MethodConfig
from hyperprompt.model.layout import BackboneShape
from hyperprompt.model.registry import register_method


def mtl_added_parameters(config: MethodConfig, shape: BackboneShape) -> int:
    """MTL adds nothing."""
    return 0


register_method("mtl", MethodConfig, MultiTaskT5, mtl_added_parameters)
