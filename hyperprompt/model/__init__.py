"""Task-conditioned T5 models: HyperPrompt and the baselines, behind one interface."""

from hyperprompt.model.adapters import AdapterConfig, AdapterModel
from hyperprompt.model.attention import ATTENTION_NAME, register_attention
from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.config import HyperPromptConfig, MethodConfig
from hyperprompt.model.hyperformer import HyperFormerConfig, HyperFormerModel
from hyperprompt.model.hyperprompt import HyperPromptGenerator, HyperPromptModel
from hyperprompt.model.prefix_tuning import PrefixTuningConfig, PrefixTuningModel
from hyperprompt.model.prompt_tuning import PromptTuningConfig, PromptTuningModel

MultiTaskT5.registry.setdefault("mtl", MultiTaskT5)

__all__ = [
    "ATTENTION_NAME",
    "AdapterConfig",
    "AdapterModel",
    "HyperFormerConfig",
    "HyperFormerModel",
    "HyperPromptConfig",
    "HyperPromptGenerator",
    "HyperPromptModel",
    "MethodConfig",
    "MultiTaskT5",
    "PrefixTuningConfig",
    "PrefixTuningModel",
    "PromptTuningConfig",
    "PromptTuningModel",
    "register_attention",
]
