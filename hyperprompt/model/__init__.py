"""Task-conditioned T5 models: HyperPrompt and the baselines, behind one interface."""

from hyperprompt.model.attention import ATTENTION_NAME, register_attention
from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.config import HyperPromptConfig, MethodConfig
from hyperprompt.model.hyperprompt import HyperPromptGenerator, HyperPromptModel

MultiTaskT5.registry.setdefault("mtl", MultiTaskT5)

__all__ = [
    "ATTENTION_NAME",
    "HyperPromptConfig",
    "HyperPromptGenerator",
    "HyperPromptModel",
    "MethodConfig",
    "MultiTaskT5",
    "register_attention",
]
