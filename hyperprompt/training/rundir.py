"""The run directory's rules, checked before a run writes anything.

- ``--out`` must be a directory we can write (not a file, not read-only).
- A fresh run starts in an empty (or new) directory; a non-empty one needs ``--resume``.
- ``--resume`` continues only the same recipe: the tasks (in task-id order), the method and its settings, the
  backbone must equal the checkpoint's, else it refuses and names both; nothing is overwritten first.
- ``--resume`` of a run that never wrote a checkpoint starts it over: the files such a run leaves
  (tokenizer, logs, config) are removed, so nothing of another recipe is reused.
- ``--resume-from STEP`` moves the checkpoints after STEP to ``abandoned/<time>/`` (kept, never resumed from).
- Staging folders left by a kill during an atomic write (``.*.tmp-*``, ``.*.old-*``) are removed.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hyperprompt.errors import CheckpointError, RunDirError
from hyperprompt.training.checkpoint import CHECKPOINTS, RUN_CONFIG, checkpoint_at, checkpoint_dirs
from hyperprompt.training.recipe import Recipe

#: what a run writes at its top level before its first checkpoint (removed when a --resume starts over)
RUN_FILES = ("config.yaml", "tokenizer", "metrics.jsonl", "train_log.jsonl", "tensorboard", "best", "results.json")
#: recipe keys that decide what the weights mean: a resume with another value is refused
IDENTITY_KEYS = ("model", "model_overrides", "tokenizer", "method", "method_settings", "tasks", "task_prefix",
                 "max_input_length", "max_target_length")
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENOTDIR,
                errno.EISDIR, errno.EEXIST}


def check_writable(out: Path) -> None:
    """Create ``out`` (and parents) and check a file can be written in it; RunDirError otherwise."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file, not a directory: choose a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}-{time.time_ns()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise RunDirError(f"cannot write in --out {out}: {error.strerror} ({error.filename}); choose another "
                          "directory") from None


def clean_stale_staging(out: Path) -> list[Path]:
    """Remove staging folders that a kill during an atomic write left behind; return them."""
    stale = []
    for parent in (out, out / "best", out / CHECKPOINTS, *(p for p in (out / "best").glob("*") if p.is_dir())):
        if not parent.is_dir():
            continue
        for path in parent.iterdir():
            if _is_staging(path.name):
                _remove(path)
                stale.append(path)
    return stale


def recipe_identity(config: dict[str, Any]) -> dict[str, Any]:
    return {key: config.get(key) for key in IDENTITY_KEYS}


def check_same_recipe(checkpoint: Path, recipe: Recipe) -> None:
    """Refuse to resume ``checkpoint`` with a recipe whose tasks, method or backbone differ."""
    saved = yaml.safe_load((checkpoint / RUN_CONFIG).read_text()) or {}
    old, new = recipe_identity(saved), recipe_identity(recipe.config.to_dict())
    changed = [key for key in IDENTITY_KEYS if old[key] != new[key]]
    if changed:
        details = "; ".join(f"{key}: checkpoint {old[key]!r}, recipe {new[key]!r}" for key in changed)
        raise CheckpointError(
            f"cannot resume {checkpoint} with this recipe: {details}. The trained weights belong to the checkpoint's "
            "recipe (task ids follow its task order): resume with that recipe (hyperprompt train --out DIR --resume, "
            "no CONFIG), or start a new run with another --out")


@dataclass(frozen=True)
class Plan:
    """What :func:`apply` does to a run directory (decided by :func:`plan` without changing anything)."""

    start_over: bool = False  # remove the files of a run that never reached a checkpoint
    resume_from: Path | None = None  # the checkpoint --resume-from names
    abandon: tuple[Path, ...] = ()  # checkpoints after it


def plan(out: Path, recipe: Recipe, resume: bool, resume_from: int | None) -> Plan:
    """Check ``out`` for this run (see the module docstring); raise RunDirError / CheckpointError or return
    what to change. Reads only, so every process reaches the same decision."""
    checkpoints = checkpoint_dirs(out)
    if not resume:
        leftovers = sorted(p.name for p in out.iterdir() if not _is_staging(p.name) and not p.name.startswith(".write-test-"))
        if leftovers:
            raise RunDirError(f"{out} is not empty ({', '.join(leftovers[:6])}{', ...' if len(leftovers) > 6 else ''}): "
                              "pass --resume to continue the run there (one without a checkpoint starts over), "
                              "or choose another --out")
        return Plan()
    if not checkpoints and not (out / "final").exists():
        if resume_from is not None:
            checkpoint_at(out, resume_from)  # raises: there is none
        return Plan(start_over=True)
    check_same_recipe(checkpoints[-1] if checkpoints else out / "final", recipe)
    if resume_from is None:
        return Plan()
    chosen = checkpoint_at(out, resume_from)
    return Plan(resume_from=chosen, abandon=tuple(p for p in checkpoints if p.name > chosen.name))


def apply(out: Path, plan: Plan, say: Any) -> None:
    """Tidy ``out`` as planned (main process only)."""
    for path in clean_stale_staging(out):
        say(f"removed {path} (left by an interrupted write)")
    if plan.start_over:
        for name in RUN_FILES:  # a run that never reached a checkpoint: start over, reuse nothing
            _remove(out / name)
    if plan.abandon:
        abandoned = out / "abandoned" / time.strftime("%Y%m%d-%H%M%S")
        abandoned.mkdir(parents=True, exist_ok=True)
        for path in plan.abandon:
            path.rename(abandoned / path.name)
        say(f"resuming from {plan.resume_from}: moved {', '.join(p.name for p in plan.abandon)} to {abandoned}")


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _is_staging(name: str) -> bool:
    return name.startswith(".") and (".tmp-" in name or ".old-" in name or name.endswith(".tmp") or name == ".current")


def write_failure(error: BaseException) -> str | None:
    """What could not be written, if ``error`` is a failed write (disk full, read-only, no permission, file
    too large) rather than a missing input or a bug: ``"FILE: reason"``; else None. Besides OSError, this
    recognises safetensors' and torch.save's wrapping of the same errors (they report "os error N")."""
    if isinstance(error, OSError):
        if error.errno in WRITE_ERRORS:
            return f"{error.filename or 'a file'}: {error.strerror}"
        return None
    match = re.search(r"(I/O error|failed writing file).*?(?:os error (\d+))?\)?$", str(error))
    if match and (match.group(2) is None or int(match.group(2)) in WRITE_ERRORS):
        return f"a file ({type(error).__name__}: {error})"
    return None
