"""Saving and loading a task-conditioned model (peft-like: config JSON + safetensors, no pickle).

Saved layout::

    DIR/method_config.json          the method's dataclass config + where the backbone lives
    DIR/method_weights.safetensors  the added (task-conditioned) weights only
    DIR/backbone/                   ``save_pretrained`` of the backbone (omitted with save_backbone=False)

``method_config.json`` is ``config.to_dict()`` (``method``, ``task_names``, the method's fields) plus
``format_version``, ``base_model_name_or_path`` and ``backbone``; the model class comes from the registry.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, PreTrainedModel

from hyperprompt.model.causal_lm import CAUSAL_LM
from hyperprompt.model.config import MethodConfig
from hyperprompt.model.registry import method_named

if TYPE_CHECKING:
    from hyperprompt.model.base import MultiTaskT5

CONFIG_NAME = "method_config.json"
WEIGHTS_NAME = "method_weights.safetensors"
BACKBONE_DIR = "backbone"
FORMAT_VERSION = 1


def save_pretrained(model: MultiTaskT5, save_directory: str | os.PathLike, save_backbone: bool = True) -> None:
    """Write config JSON + safetensors (+ the backbone), atomically: the directory is built
    beside the target and renamed into place, so an interruption never leaves a half-written one."""
    target = Path(save_directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        meta = model.config.to_dict()
        meta["format_version"] = FORMAT_VERSION
        meta["base_model_name_or_path"] = getattr(model.base.config, "_name_or_path", "") or None
        meta["backbone"] = BACKBONE_DIR if save_backbone else None
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        weights = {k: v.detach().contiguous().cpu() for k, v in model.added_state_dict().items()}
        save_file(weights, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "method": model.config.method})
        if save_backbone:
            model.base.save_pretrained(tmp / BACKBONE_DIR)
        replace_directory(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_pretrained(
    directory: str | os.PathLike,
    base_model: PreTrainedModel | None = None,
    **backbone_kwargs: Any,
) -> MultiTaskT5:
    """Load a model saved with :func:`save_pretrained` (any method; the class comes from the config).

    Args:
        directory: the saved directory.
        base_model: a backbone to use instead of the saved one (required if it was saved without).
        backbone_kwargs: passed to :func:`auto_backbone` (``dtype``, ``device_map``...).
    """
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: is {directory} a directory written by save_pretrained?")
    meta = json.loads(config_path.read_text())
    backbone = meta.pop("backbone", None)
    base_name = meta.pop("base_model_name_or_path", None)
    meta.pop("format_version", None)
    if "method" in meta:  # a file written before a field existed means that field's old behaviour
        meta = {**method_named(meta["method"]).config_cls.saved_defaults, **meta}
    config = MethodConfig.from_dict(meta)
    model_class = method_named(config.method).model_cls
    if base_model is None:
        if backbone is not None:
            base_model = auto_backbone(directory / backbone, **backbone_kwargs)
        elif base_name:
            base_model = auto_backbone(base_name, **backbone_kwargs)
        else:
            raise ValueError(f"{directory} was saved without its backbone and names none: pass base_model=.")
    model = model_class(base_model, config)
    weights_path = directory / WEIGHTS_NAME
    if weights_path.is_file():
        weights = load_file(str(weights_path))
    elif model.num_added_parameters() == 0:
        weights = {}
    else:
        raise FileNotFoundError(f"{weights_path} not found.")
    load_added_state_dict(model, weights)
    return model.to(next(base_model.parameters()).device)


def auto_backbone(name_or_path: str | os.PathLike, **kwargs: Any) -> PreTrainedModel:
    """The backbone at a hub name or folder: ``AutoModelForCausalLM`` for the decoder-only families
    (:mod:`hyperprompt.model.causal_lm`), ``AutoModelForSeq2SeqLM`` otherwise."""
    config = AutoConfig.from_pretrained(name_or_path)
    auto = AutoModelForCausalLM if config.model_type in CAUSAL_LM.model_types else AutoModelForSeq2SeqLM
    return auto.from_pretrained(name_or_path, **kwargs)


def load_added_state_dict(model: MultiTaskT5, weights: dict[str, torch.Tensor]) -> None:
    """Load the added weights into ``model``; a missing or unexpected key, or a wrong shape, is an error
    that names it."""
    expected = model.added_state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(f"added weights do not match the model: missing {missing}, unexpected {unexpected}.")
    for name, tensor in weights.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ValueError(
                f"added weight {name} has shape {list(tensor.shape)}, the model expects {list(expected[name].shape)}."
            )
    model.load_state_dict(weights, strict=False)


def replace_directory(source: Path, target: Path) -> None:
    """Move ``source`` to ``target`` replacing it: rename the old one aside first, so that at every
    instant either the old or the new complete directory exists under ``target`` or its backup."""
    backup = None
    if target.exists():
        backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, backup)
    os.replace(source, target)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
