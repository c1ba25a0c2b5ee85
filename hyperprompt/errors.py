"""The project's exceptions: errors in what a user gave (recipe, data, names, folders), each with
the exit code the command line returns for it.

Library code raises these for a user's mistake, with a message that names the problem and the fix
(file and line for data, the key for a recipe, the valid choices for a name); ``cli/main.py`` catches
:class:`HyperPromptError` once and prints its message. Anything else is a bug and keeps its traceback.
Each class also derives from the built-in exception that describes it (``ValueError``,
``FileNotFoundError``, ...), so callers of the Python API can catch either.
"""

from __future__ import annotations

from pathlib import Path


class HyperPromptError(Exception):
    """Base class: a problem with the user's input or environment, not a bug. ``exit_code`` is what
    the command line returns."""

    exit_code = 1


class InputError(HyperPromptError, ValueError):
    """A bad value: an argument, a name, a setting, a record."""


class ConfigError(InputError):
    """A recipe with an unknown key, a bad value or a value of the wrong type."""

    exit_code = 2


class DataFormatError(InputError):
    """A malformed row. The message starts with ``file:line:`` so editors can jump to it."""

    def __init__(self, path: str | Path, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path = str(path)
        self.line = line


class MissingFileError(HyperPromptError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class RunDirError(HyperPromptError, RuntimeError):
    """The output directory cannot hold this run (another run is there, it is a file, it is not writable)."""


class CheckpointError(HyperPromptError, RuntimeError):
    """No usable checkpoint where one was expected, or one that does not belong to this recipe."""


class NonFiniteLossError(HyperPromptError, RuntimeError):
    """The loss became NaN or infinite; training stopped before applying that step (under DeepSpeed, whose
    engine steps inside ``backward``, it was applied in memory only: nothing is saved after it)."""

    exit_code = 3

    def __init__(self, step: int, loss: float, checkpoint: Path | None):
        self.step, self.loss, self.checkpoint = step, loss, checkpoint
        if checkpoint is None:
            where = "no checkpoint was written yet"
        else:
            where = (f"the last checkpoint known to be good is {checkpoint}: resume from it with --resume and a "
                     "lower optimizer.lr (or --resume-from STEP for an earlier one)")
        super().__init__(f"non-finite loss ({loss}) at step {step}: training stopped; {where}. "
                         "Lower optimizer.lr, set max_grad_norm, or use precision: bf16 instead of fp16.")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C / SIGTERM: a checkpoint was saved and training stopped cleanly (exit code 130)."""

    def __init__(self, step: int, checkpoint: Path | None, message: str | None = None):
        self.step, self.checkpoint = step, checkpoint
        super().__init__(message or f"interrupted at step {step}; saved {checkpoint}. Continue with --resume.")
