"""Small helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import logging
import sys


def add_logging_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (tokenisation, caches, ...)")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr,
                        level=logging.INFO if verbose else logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bars


def fail(message: str, code: int = 1) -> int:
    """Print ``error: message`` to stderr and return the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


def training_error_code(error: Exception) -> int | None:
    """The exit code of an error that ``train`` / ``compare`` report in one line: 3 a non-finite loss,
    2 a recipe error, 1 missing or bad data, run directories, checkpoints or set-ups; None for a bug."""
    from hyperprompt.data import DataFormatError
    from hyperprompt.training import CheckpointError, ConfigError, NonFiniteLossError, RunDirError

    if isinstance(error, NonFiniteLossError):
        return 3
    if isinstance(error, ConfigError):
        return 2
    if isinstance(error, (FileNotFoundError, DataFormatError, RunDirError, CheckpointError, ValueError,
                          NotImplementedError)):
        return 1
    return None


def device_name(requested: str | None) -> str:
    import torch

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"
