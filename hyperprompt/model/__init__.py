"""Task-conditioned T5 models: HyperPrompt and the baselines, behind one interface.

One file per method (config, modules, parameter formula, one ``register_method`` line); importing this
package registers them all.
"""

from hyperprompt.model import causal_lm, mtl  # noqa: F401  (register the decoder-only family and "mtl")
from hyperprompt.model.adapters import AdapterConfig, AdapterModel
from hyperprompt.model.attention import ATTENTION_NAME, register_attention
from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.config import MethodConfig
from hyperprompt.model.hyperformer import HyperFormerConfig, HyperFormerModel
from hyperprompt.model.hyperprompt import HyperPromptConfig, HyperPromptGenerator, HyperPromptModel
from hyperprompt.model.layout import BackboneLayout, BackboneShape
from hyperprompt.model.prefix_tuning import PrefixTuningConfig, PrefixTuningModel
from hyperprompt.model.prompt_tuning import PromptTuningConfig, PromptTuningModel
from hyperprompt.model.registry import METHODS, register_method

__all__ = [
    "ATTENTION_NAME",
    "METHODS",
    "AdapterConfig",
    "AdapterModel",
    "BackboneLayout",
    "BackboneShape",
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
    "register_method",
]
