"""Training, evaluation and checkpoints: recipes (YAML) -> runs on accelerate -> run directories.

>>> from hyperprompt.training import load_config, train, load_run_checkpoint
>>> config = load_config("configs/tiny-superglue.yaml", ["max_steps=50"])
>>> results = train(config, "runs/tiny")                        # doctest: +SKIP
>>> model, tokenizer, config, path = load_run_checkpoint("runs/tiny/final")  # doctest: +SKIP

See docs/training.md.
"""

from hyperprompt.training.builder import build_model, build_tasks, build_tokenizer
from hyperprompt.training.checkpoint import CheckpointError, LoadedRun, load_run_checkpoint
from hyperprompt.training.config import ConfigError, TrainConfig, load_config
from hyperprompt.training.evaluate import evaluate_tasks, generate_texts
from hyperprompt.training.loop import NonFiniteLossError, RunDirError, TrainingInterrupted, train

__all__ = [
    "CheckpointError",
    "ConfigError",
    "LoadedRun",
    "NonFiniteLossError",
    "RunDirError",
    "TrainConfig",
    "TrainingInterrupted",
    "build_model",
    "build_tasks",
    "build_tokenizer",
    "evaluate_tasks",
    "generate_texts",
    "load_config",
    "load_run_checkpoint",
    "train",
]
