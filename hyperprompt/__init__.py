"""hyperprompt: multi-task fine-tuning of T5 with HyperPrompt (He et al., ICML 2022)."""

from hyperprompt.model import HyperPromptConfig, HyperPromptModel, MethodConfig, MultiTaskT5

__version__ = "0.1.0"

__all__ = ["HyperPromptConfig", "HyperPromptModel", "MethodConfig", "MultiTaskT5", "__version__"]
