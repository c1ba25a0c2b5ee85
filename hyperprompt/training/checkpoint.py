"""Run directories and checkpoints: atomic writes, rotation, fallback on a corrupt checkpoint.

Every saved model directory (``final/``, ``best/<task>/``, ``checkpoints/step-N/``) holds::

    model/             MultiTaskT5.save_pretrained (method config + added weights + backbone)
    tokenizer/         the tokenizer (save_pretrained)
    run_config.yaml    the resolved recipe (task list in task-id order)
    user_tasks.yaml    the specs of user-defined tasks (how records are formatted and scored), if any

and a training checkpoint adds ``training_state.pt`` (step, optimizer state keyed by parameter names,
sampler position, best scores; loaded with ``torch.load(weights_only=True)``) and ``rng_state_<rank>.pt``
(under DeepSpeed, the engine's partitioned optimizer state goes to ``deepspeed/`` instead), and
``checksums.json`` (SHA-256 of every file, checked on load: a silently corrupted checkpoint is skipped).
A directory is written beside its target and renamed into place, so a crash (even SIGKILL) leaves
either the old or the new one, never half of one. A checkpoint whose weights gave a non-finite loss in
the next step is marked with ``NONFINITE`` and never resumed from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import yaml
from transformers import PreTrainedTokenizerBase

from hyperprompt.data import Task, load_task_spec
from hyperprompt.errors import CheckpointError, InputError
from hyperprompt.model import MultiTaskT5
from hyperprompt.model.io import replace_directory
from hyperprompt.training.builder import build_tasks, load_tokenizer
from hyperprompt.training.config import TrainConfig, load_config

logger = logging.getLogger(__name__)

MODEL_DIR, TOKENIZER_DIR, RUN_CONFIG, USER_TASKS = "model", "tokenizer", "run_config.yaml", "user_tasks.yaml"
STATE_FILE, CHECKSUMS, NONFINITE = "training_state.pt", "checksums.json", "NONFINITE"
CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"^step-(\d+)$")


# --- writing ------------------------------------------------------------------------------------

def _staging(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"


def write_model_files(directory: Path, model: MultiTaskT5, tokenizer: PreTrainedTokenizerBase,
                      config: TrainConfig, task_specs: list[dict[str, Any]] | None = None) -> None:
    """Write model/, tokenizer/, run_config.yaml and user_tasks.yaml into an existing ``directory`` (not atomic)."""
    model.save_pretrained(directory / MODEL_DIR)
    tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
    config.save(directory / RUN_CONFIG)
    if task_specs:
        (directory / USER_TASKS).write_text(yaml.safe_dump(task_specs, sort_keys=False))


def save_model_dir(target: str | Path, model: MultiTaskT5, tokenizer: PreTrainedTokenizerBase,
                   config: TrainConfig, extra: dict[str, Any] | None = None,
                   task_specs: list[dict[str, Any]] | None = None) -> Path:
    """Atomically write a self-contained model directory (what ``evaluate`` / ``predict`` load).

    ``extra`` maps file names to JSON-serialisable content written beside the model.
    """
    target = Path(target)
    tmp = _staging(target)
    tmp.mkdir()
    try:
        write_model_files(tmp, model, tokenizer, config, task_specs)
        for name, content in (extra or {}).items():
            (tmp / name).write_text(json.dumps(content, indent=2) + "\n")
        replace_directory(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def child_path(parent: Path, name: str) -> Path:
    """``parent / name``, refusing a ``name`` (e.g. a task name) that would lead outside ``parent``."""
    path = parent / name
    if Path(name).is_absolute() or not path.resolve().is_relative_to(parent.resolve()) or path.resolve() == parent.resolve():
        raise InputError(f"{name!r} would write outside {parent}: refusing (task names must be relative, without '..')")
    return path


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def link_copy(source: Path, target: Path, extra: dict[str, Any] | None = None) -> None:
    """Atomically make ``target`` a copy of ``source`` using hard links (no extra disk space; it
    survives the deletion of ``source``), plus the ``extra`` JSON files."""
    tmp = _staging(target)
    try:
        shutil.copytree(source, tmp, copy_function=_link_or_copy)
        for name, content in (extra or {}).items():
            (tmp / name).write_text(json.dumps(content, indent=2) + "\n")
        replace_directory(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def rng_state() -> dict[str, Any]:
    """This process's RNG states (python, numpy, torch, CUDA) as tensors / plain data."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = dict(numpy_state["state"])
    numpy_state["state"]["key"] = numpy_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete training checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def save_checkpoint(run_dir: Path, step: int, model: MultiTaskT5 | None, tokenizer: PreTrainedTokenizerBase,
                    config: TrainConfig, state: dict[str, Any], accelerator: Any, keep_last: int,
                    write_shards: Callable[[Path], None] | None = None,
                    task_specs: list[dict[str, Any]] | None = None) -> Path:
    """Write ``checkpoints/step-N`` atomically (every process calls this), then keep the last ``keep_last``
    and the one before the new checkpoint (the newest known to be good until the next step has run: the
    loop prunes it with :func:`prune_checkpoints` then).

    ``model`` is the model with its full weights (on the main process; None elsewhere); every rank adds
    its RNG state and, through ``write_shards(directory)``, its part of a sharded state; the main
    process the rest.
    """
    root = run_dir / CHECKPOINTS
    target, tmp = root / f"step-{step:08d}", root / f".step-{step:08d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng_state_{accelerator.process_index}.pt")
    if write_shards is not None:
        write_shards(tmp)
    if accelerator.is_main_process:
        write_model_files(tmp, model, tokenizer, config, task_specs)
        torch.save(state, tmp / STATE_FILE)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_checksums(tmp)
        replace_directory(tmp, target)
        prune_checkpoints(run_dir, max(keep_last, 2))
    accelerator.wait_for_everyone()
    return target


def prune_checkpoints(run_dir: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (and never one newer than a kept one)."""
    for old in checkpoint_dirs(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def _file_digests(directory: Path) -> dict[str, str]:
    digests = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name not in (CHECKSUMS, NONFINITE)):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digests[path.relative_to(directory).as_posix()] = digest.hexdigest()
    return digests


def write_checksums(directory: Path) -> None:
    """``checksums.json``: the SHA-256 of every file of a checkpoint."""
    (directory / CHECKSUMS).write_text(json.dumps(_file_digests(directory), indent=1) + "\n")


def verify_checksums(directory: Path) -> None:
    """Raise CheckpointError if a file of ``directory`` differs from ``checksums.json`` (checkpoints written
    before checksums existed have none and pass)."""
    path = directory / CHECKSUMS
    if not path.is_file():
        return
    expected = json.loads(path.read_text())
    actual = _file_digests(directory)
    bad = sorted(name for name in expected if actual.get(name) != expected[name])
    if bad:
        raise CheckpointError(f"{directory}: content differs from {CHECKSUMS} (corrupted): {', '.join(bad)}")


def mark_nonfinite(directory: Path, step: int, loss: float) -> None:
    """Mark a checkpoint whose weights gave a non-finite loss at ``step``: resume skips it."""
    (directory / NONFINITE).write_text(json.dumps({"step": step, "loss": str(loss)}) + "\n")


def good_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints not marked non-finite, oldest first."""
    return [p for p in checkpoint_dirs(run_dir) if not (p / NONFINITE).exists()]


# --- reading ------------------------------------------------------------------------------------

def load_training_state(directory: Path, process_index: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """(training state, this rank's RNG state) of a checkpoint; raises on a missing or corrupt file."""
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    rng_path = directory / f"rng_state_{process_index}.pt"
    if not rng_path.is_file():
        rng_path = directory / "rng_state_0.pt"
    return state, torch.load(rng_path, map_location="cpu", weights_only=True)


def load_model_weights(model: MultiTaskT5, directory: Path) -> None:
    """Copy the weights saved in ``directory/model`` into ``model`` (same recipe)."""
    saved = MultiTaskT5.from_pretrained(directory / MODEL_DIR)
    missing, unexpected = model.load_state_dict(saved.state_dict(), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{directory} does not match the model: missing {missing}, unexpected {unexpected}")


def load_checkpoint(path: Path, model: MultiTaskT5, process_index: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify ``path``'s checksums, load its weights into ``model``; returns (training state, RNG state)."""
    verify_checksums(path)
    state, rng = load_training_state(path, process_index)
    load_model_weights(model, path)
    return state, rng


def load_latest_checkpoint(run_dir: Path, model: MultiTaskT5, process_index: int = 0
                           ) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    """Load the newest readable good checkpoint's weights into ``model``; a corrupt one is reported and the
    previous one tried; one marked non-finite is skipped. Returns (path, training state, RNG state), or None
    if the run has none."""
    candidates = checkpoint_dirs(run_dir)
    for path in reversed(candidates):
        if (path / NONFINITE).exists():
            logger.warning("checkpoint %s gave a non-finite loss in the step after it; skipping it", path)
            continue
        try:
            return (path, *load_checkpoint(path, model, process_index))
        except Exception as error:  # a truncated or garbled file: any reader error
            logger.warning("checkpoint %s is unreadable (%s: %s); falling back to the previous one",
                           path, type(error).__name__, error)
    if candidates:
        raise CheckpointError(f"none of the {len(candidates)} checkpoints in {run_dir / CHECKPOINTS} is readable "
                              "and good (see the warnings above)")
    return None


def checkpoint_at(run_dir: Path, step: int) -> Path:
    """``checkpoints/step-STEP`` of a run, or a CheckpointError listing the steps there are."""
    found = {int(_STEP_DIR.match(p.name).group(1)): p for p in checkpoint_dirs(run_dir)}  # type: ignore[union-attr]
    if step not in found:
        steps = ", ".join(map(str, sorted(found))) or "none"
        raise CheckpointError(f"--resume-from {step}: {run_dir / CHECKPOINTS} has no checkpoint of step {step} "
                              f"(it has: {steps})")
    return found[step]


class LoadedRun(NamedTuple):
    """What :func:`load_run_checkpoint` returns: ``model, tokenizer, config, path = load_run_checkpoint(path)``."""

    model: MultiTaskT5
    tokenizer: PreTrainedTokenizerBase
    config: TrainConfig
    path: Path

    def tasks(self, names: list[str] | None = None, data_dir: str | Path | None = None,
              for_prediction: bool = False) -> list[Task]:
        """The model's tasks (or ``names`` among them) as its recipe builds them; a task the model was not
        trained on is an InputError that lists the ones it was. ``for_prediction``: nothing is read, so
        neither the data folder nor, when the model carries its user tasks' specs, their files must exist."""
        carried = (self.path / USER_TASKS).is_file()
        tasks = build_tasks(self.config, data_dir=data_dir, names=names, check_data_dir=not for_prediction,
                            load_task_files=not (for_prediction and carried))
        known = self.model.config.task_names
        unknown = [t.name for t in tasks if t.name not in known]
        if unknown:
            raise InputError(f"the model was not trained on {', '.join(unknown)} ({self.path}); its tasks: {', '.join(known)}")
        return tasks


def resolve_model_dir(path: str | Path) -> Path:
    """The model directory meant by ``path``: itself, or for a run directory its ``final/`` (or the
    latest checkpoint while it is still training)."""
    path = Path(path)
    if (path / MODEL_DIR).is_dir() and (path / RUN_CONFIG).is_file():
        return path
    if (path / "final" / MODEL_DIR).is_dir():
        return path / "final"
    checkpoints = checkpoint_dirs(path)
    if checkpoints:
        return checkpoints[-1]
    raise CheckpointError(
        f"{path} is not a checkpoint: expected a directory with model/, tokenizer/ and run_config.yaml "
        "(a run's final/, best/<task>/ or checkpoints/step-N/) or a run directory"
    )


def load_run_checkpoint(path: str | Path, device: str | torch.device | None = None) -> LoadedRun:
    """Load a saved model on its own: the method model, its tokenizer and the recipe it was trained with.

    Args:
        path: a run directory or one of its model directories (``final/``, ``best/superglue/cb/``,
            ``checkpoints/step-N/``).
        device: where to put the model (default: CPU). The model is in eval mode.
    """
    directory = resolve_model_dir(path)
    config = load_config(directory / RUN_CONFIG)
    try:
        model = MultiTaskT5.from_pretrained(directory / MODEL_DIR)
    except Exception as error:
        raise CheckpointError(f"cannot load the model in {directory}: {type(error).__name__}: {error}") from error
    tokenizer = load_tokenizer(directory / TOKENIZER_DIR)
    if (directory / USER_TASKS).is_file():  # register the user tasks as the model was trained on them
        for spec in yaml.safe_load((directory / USER_TASKS).read_text()) or []:
            load_task_spec(spec, require_files=False)
    model.eval()
    if device is not None:
        model.to(device)
    return LoadedRun(model, tokenizer, config, directory)
