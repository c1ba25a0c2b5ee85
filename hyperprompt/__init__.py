"""hyperprompt: multi-task fine-tuning of T5 with HyperPrompt (He et al., ICML 2022).

The model classes are imported lazily, so ``import hyperprompt.data`` does not load transformers' T5.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "HyperPromptConfig": "hyperprompt.model",
    "HyperPromptModel": "hyperprompt.model",
    "MethodConfig": "hyperprompt.model",
    "MultiTaskT5": "hyperprompt.model",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hyperprompt' has no attribute {name!r}")
