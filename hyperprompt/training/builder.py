"""From a recipe to the objects a run needs: tasks, tokenizer, backbone + method model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, ByT5Tokenizer, PreTrainedTokenizerBase

from hyperprompt.data import Task, get_task, load_task_spec, make_collator, train_tokenizer
from hyperprompt.errors import ConfigError, MissingFileError
from hyperprompt.model import MultiTaskT5
from hyperprompt.model.causal_lm import TINY_CAUSAL_LMS, is_decoder_only
from hyperprompt.model.config import MethodConfig
from hyperprompt.model.presets import TINY_PRESETS, TINY_SIZES, load_backbone
from hyperprompt.model.presets_encdec import (
    ENCDEC_TINY_PRESETS,
    MINILM_PRESET,
    is_bert_folder,
    warm_start_tokenizer,
    warm_started_bert2bert,
)
from hyperprompt.training.config import TrainConfig

logger = logging.getLogger(__name__)


def build_tasks(config: TrainConfig, data_dir: str | Path | None = None,
                names: list[str] | None = None, check_data_dir: bool = True,
                load_task_files: bool = True) -> list[Task]:
    """The recipe's tasks (or ``names``), reading files from ``data_dir`` (default: the recipe's).

    Task specs in ``task_files`` are registered first (unless ``load_task_files`` is false: they are
    registered already), so their names resolve like built-in ones. ``check_data_dir=False`` skips the
    check that the data directory exists (nothing is read yet).
    """
    for spec in config.task_files if load_task_files else []:
        load_task_spec(spec)
    data_dir = data_dir if data_dir is not None else config.data_dir
    if check_data_dir and data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise MissingFileError(
            f"data directory {data_dir} does not exist: point data_dir (or --data-dir) at the folder of the "
            "official GLUE / SuperGLUE files, e.g. ../shared/data/superglue"
        )
    options = {} if config.task_prefix is None else {"prefix": config.task_prefix}
    tasks = [get_task(name, data_dir=data_dir, **options) for name in (names or config.tasks)]
    duplicates = sorted({t.name for t in tasks if [u.name for u in tasks].count(t.name) > 1})
    if duplicates:
        raise ConfigError(f"config key 'tasks': {duplicates} listed twice (aliases of the same task)")
    return tasks


def build_tokenizer(config: TrainConfig, tasks: list[Task]) -> PreTrainedTokenizerBase:
    """``byt5`` (offline, bytes), ``trained`` (a Unigram tokenizer fit on the mixture's training
    text, offline), or a hub name / local path. Default: ByT5 for the tiny presets, else the model's own."""
    name = config.tokenizer or ("byt5" if config.model in TINY_PRESETS or config.model in ENCDEC_TINY_PRESETS
                                else config.model)
    if name == "byt5":
        return ByT5Tokenizer()
    if name == MINILM_PRESET or is_bert_folder(name):  # WordPiece with [SEP] as EOS (presets_encdec.py)
        return warm_start_tokenizer(name)
    if name == "trained":
        texts = (text for task in tasks for ex in task.load("train") for text in (ex["inputs"], ex["targets"]))
        return train_tokenizer(texts, vocab_size=config.tokenizer_vocab_size)
    return _from_hub_or_folder("tokenizer", name, lambda: AutoTokenizer.from_pretrained(name))


def _from_hub_or_folder(key: str, name: str, load: Any) -> Any:
    """``load()``, turning "not found" into a ConfigError that names the key, the presets and the network."""
    try:
        return load()
    except OSError as error:  # transformers raises OSError (or a subclass) for a missing repo, folder or file
        if Path(name).expanduser().exists():
            raise ConfigError(f"config key '{key}': cannot load {name}: {error}") from None
        choices = ("byt5, trained" if key == "tokenizer"
                   else ", ".join([*TINY_PRESETS, *ENCDEC_TINY_PRESETS, MINILM_PRESET]))
        raise ConfigError(
            f"config key '{key}': {name!r} is neither a built-in preset ({choices}) nor a local folder, and it "
            "could not be loaded from the Hugging Face hub (hub ids such as google-t5/t5-base need network access "
            "or a filled HF cache; check the spelling)") from None


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """A tokenizer saved in a run directory (``save_pretrained`` output)."""
    return AutoTokenizer.from_pretrained(str(path))


def build_model(config: TrainConfig, tokenizer: PreTrainedTokenizerBase, method: MethodConfig) -> MultiTaskT5:
    """The backbone (a preset from its config, or pretrained weights) wrapped by the method ``method``
    (a resolved recipe's: ``Recipe.method``)."""
    overrides: dict[str, Any] = dict(config.model_overrides)
    if config.model in TINY_SIZES:
        base = load_backbone(config.model, vocab_size=len(tokenizer), **overrides)
    elif config.model in TINY_CAUSAL_LMS:  # the tokenizer's special tokens (ByT5: pad 0, eos 1, no BOS)
        eos = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        base = load_backbone(config.model, vocab_size=len(tokenizer), pad_token_id=pad, eos_token_id=eos,
                             bos_token_id=tokenizer.bos_token_id, **overrides)
    elif config.model in ENCDEC_TINY_PRESETS:
        base = ENCDEC_TINY_PRESETS[config.model](vocab_size=len(tokenizer), **overrides)
    elif config.model == MINILM_PRESET or is_bert_folder(config.model):  # a warm-started BERT2BERT
        base = warm_started_bert2bert(config.model, tokenizer=tokenizer, **overrides)
    else:
        base = _from_hub_or_folder("model", config.model, lambda: load_backbone(config.model, **overrides))
        if len(tokenizer) > base.config.vocab_size:
            raise ConfigError(
                f"the tokenizer has {len(tokenizer)} tokens but {config.model} only {base.config.vocab_size} "
                "embeddings: use the model's own tokenizer"
            )
    model = MultiTaskT5.registry[config.method].from_base(base, method)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def build_collator(model: MultiTaskT5, tokenizer: PreTrainedTokenizerBase, generation: bool = False) -> Any:
    """The collator for ``model``'s backbone, chosen once here: input and target in one sequence for a
    decoder-only LM (left-padded for ``generation``), separate encoder and decoder sequences otherwise."""
    return make_collator(tokenizer, decoder_only=is_decoder_only(model.base), generation=generation)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total
