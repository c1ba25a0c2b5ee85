"""`MultiTaskT5`: what every task-conditioned method shares.

A method wraps a Hugging Face T5 (T5, T5 v1.1, mT5, ByT5 checkpoints), adds its task-conditioned
modules, and takes per-example ``task_ids`` in ``forward`` and ``generate``. Subclasses implement
:meth:`MultiTaskT5.build` (create and install the added modules) and
:meth:`MultiTaskT5.conditioning_inputs` (turn ``task_ids`` into what the backbone needs).

Saved layout (peft-like: config JSON + safetensors, no pickle)::

    DIR/method_config.json       the method's dataclass config + where the backbone lives
    DIR/method_weights.safetensors  the added (task-conditioned) weights only
    DIR/backbone/                ``save_pretrained`` of the backbone (omitted with save_backbone=False)
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForSeq2SeqLM, PretrainedConfig, PreTrainedModel

from hyperprompt.model.attention import ATTENTION_NAME, PromptState
from hyperprompt.model.config import MethodConfig

CONFIG_NAME = "method_config.json"
WEIGHTS_NAME = "method_weights.safetensors"
BACKBONE_DIR = "backbone"
FORMAT_VERSION = 1

SUPPORTED_BACKBONES = ("T5ForConditionalGeneration", "MT5ForConditionalGeneration", "UMT5ForConditionalGeneration")

TaskIds = torch.Tensor | Sequence[int] | Sequence[str]


def check_backbone(base: Any) -> None:
    """Raise a ValueError unless ``base`` is an encoder-decoder T5 we can condition."""
    name = type(base).__name__
    ok = isinstance(base, PreTrainedModel) and any(
        cls.__name__ in SUPPORTED_BACKBONES for cls in type(base).__mro__
    )
    if not ok:
        raise ValueError(
            f"unsupported model class {name}; HyperPrompt wraps one of {', '.join(SUPPORTED_BACKBONES)} "
            "(load it with AutoModelForSeq2SeqLM or build it from a T5Config)."
        )


def self_attention_modules(base: nn.Module, stack: str) -> list[nn.Module]:
    """The self-attention modules of the ``encoder`` or ``decoder`` stack, in layer order."""
    blocks = getattr(base, stack).block
    return [block.layer[0].SelfAttention for block in blocks]


class MultiTaskT5(nn.Module):
    """A T5 backbone plus task-conditioned modules, addressed by per-example task ids.

    Attributes:
        base: the wrapped ``T5ForConditionalGeneration`` (or mT5 / ByT5 / UMT5).
        config: the method's :class:`MethodConfig`.
    """

    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    registry: ClassVar[dict[str, type[MultiTaskT5]]] = {}

    def __init__(self, base: PreTrainedModel, config: MethodConfig):
        super().__init__()
        check_backbone(base)
        if not isinstance(config, self.config_class):
            raise ValueError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}.")
        self.base = base
        self.config = config
        self.build()
        if config.freeze_backbone:
            for parameter in self.base.parameters():
                parameter.requires_grad_(False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in getattr(cls.config_class, "method_names", (cls.config_class.method,)):
            MultiTaskT5.registry[name] = cls

    @classmethod
    def from_base(cls, base: PreTrainedModel, config: MethodConfig) -> MultiTaskT5:
        """Wrap ``base`` (kept, not copied) with this method."""
        return cls(base, config)

    # --- what a method provides --------------------------------------------------------------

    def build(self) -> None:
        """Create the added modules and hook them into ``self.base``."""

    def conditioning_inputs(
        self, task_ids: torch.Tensor, inputs: dict[str, Any]
    ) -> dict[str, Any]:
        """Return ``inputs`` (the backbone's forward/generate keyword arguments) with the method's
        conditioning applied: extra kwargs that reach the attention functions, or changed
        ``inputs_embeds`` / ``attention_mask``. The default adds nothing (plain multi-task T5)."""
        return inputs

    def use_prompted_attention(self) -> None:
        """Route the backbone's attention through :func:`~hyperprompt.model.attention.prompted_attention`
        (for methods that prepend key/value prompts): tag each self-attention with its (stack, layer)."""
        for stack in ("encoder", "decoder"):
            for layer, module in enumerate(self_attention_modules(self.base, stack)):
                module._prompt_slot = (stack, layer)
        original = self.base.config._attn_implementation
        self._original_attention = original if original != ATTENTION_NAME else "sdpa"
        self._set_attention(ATTENTION_NAME)

    def _set_attention(self, name: str) -> None:
        """Set the backbone's attention implementation everywhere it is read: transformers < 5.24 keeps it
        in the encoder's and decoder's own config copies too, which ``set_attn_implementation`` leaves as
        they were (the prompts would then silently not reach attention)."""
        self.base.set_attn_implementation(name)
        for module in self.base.modules():
            config = getattr(module, "config", None)
            if isinstance(config, PretrainedConfig) and config._attn_implementation != name:
                config._attn_implementation = name

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Recompute each backbone block's activations in the backward pass (transformers' activation
        checkpointing; non-reentrant unless ``gradient_checkpointing_kwargs`` say otherwise)."""
        base = self.base
        enable = getattr(base, "activation_checkpointing_enable", None) or base.gradient_checkpointing_enable
        enable(gradient_checkpointing_kwargs or {"use_reentrant": False})  # the name changed in transformers 5.2x

    def gradient_checkpointing_disable(self) -> None:
        base = self.base
        (getattr(base, "activation_checkpointing_disable", None) or base.gradient_checkpointing_disable)()

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(module, "gradient_checkpointing", False) for module in self.base.modules())

    @contextlib.contextmanager
    def _attention_implementation(self, name: str) -> Iterator[None]:
        previous = self.base.config._attn_implementation
        if previous != name:
            self._set_attention(name)
        try:
            yield
        finally:
            if previous != name:
                self._set_attention(previous)

    @contextlib.contextmanager
    def conditioning_disabled(self) -> Iterator[None]:
        """Within this context the model is exactly the wrapped backbone (task ids are ignored)."""
        original = getattr(self, "_original_attention", self.base.config._attn_implementation)
        self._disabled = True
        try:
            with self._attention_implementation(original):
                yield
        finally:
            self._disabled = False

    @contextlib.contextmanager
    def observe_attention(self, observer: Callable[..., None]) -> Iterator[None]:
        """Call ``observer(module=, slot=, weights=, prompt_length=, attention_mask=)`` from every attention
        layer while inside: ``weights`` [B, h, q, l + k] are one layer's softmax weights, prompt columns
        first; ``slot`` is ``(stack, layer)`` for self-attention and None for cross-attention. Works for
        every method (the backbone runs through the prompted attention function meanwhile); normal
        forwards never compute the weights."""
        for stack in ("encoder", "decoder"):
            for layer, module in enumerate(self_attention_modules(self.base, stack)):
                module._prompt_slot = (stack, layer)
        previous, self._attention_observer = self._attention_observer, observer
        try:
            with self._attention_implementation(ATTENTION_NAME):
                yield
        finally:
            self._attention_observer = previous

    _disabled = False
    _attention_observer: Callable[..., None] | None = None

    # --- task ids ----------------------------------------------------------------------------

    def task_ids_tensor(self, task_ids: TaskIds | None, batch_size: int, device: torch.device) -> torch.Tensor:
        """Validate ``task_ids`` (LongTensor [batch], ints or task names) and return a LongTensor [batch]."""
        names = self.config.task_names
        if task_ids is None:
            raise ValueError(
                f"task_ids is required: a LongTensor [batch] of task ids in 0..{len(names) - 1} "
                f"(or task names: {', '.join(names)})."
            )
        if not isinstance(task_ids, torch.Tensor):
            items = list(task_ids)
            if items and all(isinstance(t, str) for t in items):
                items = [self.config.task_id(t) for t in items]
            task_ids = torch.as_tensor(items)
        if task_ids.dtype in (torch.bool,) or task_ids.is_floating_point() or task_ids.is_complex():
            raise ValueError(f"task_ids must be an integer tensor (torch.long), got dtype {task_ids.dtype}.")
        if task_ids.dim() != 1 or task_ids.shape[0] != batch_size:
            raise ValueError(
                f"task_ids must have shape [batch] = [{batch_size}], got {list(task_ids.shape)}."
            )
        if not torch.compiler.is_compiling():
            low, high = int(task_ids.min()), int(task_ids.max())
            if low < 0 or high >= len(names):
                raise ValueError(
                    f"task_ids out of range: got values in [{low}, {high}], valid ids are 0..{len(names) - 1} "
                    f"for tasks {', '.join(names)}."
                )
        return task_ids.to(device=device, dtype=torch.long)

    # --- forward / generate ------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        task_ids: TaskIds | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the backbone with task conditioning.

        Args:
            input_ids: [B, S] encoder tokens (or pass ``inputs_embeds`` [B, S, d_model]).
            attention_mask: [B, S], 1 for real tokens.
            labels: [B, T] targets, -100 where ignored (the loss is T5's token cross-entropy).
            decoder_input_ids: [B, T'], default: ``labels`` shifted right.
            task_ids: [B] task id of each example (batches may mix tasks), or task names.

        Returns:
            transformers' ``Seq2SeqLMOutput`` (``loss``, ``logits`` [B, T, vocab], ...).
        """
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                      decoder_input_ids=decoder_input_ids, **kwargs)
        if self.training:
            # T5's decoder would fill a KV cache (its config's use_cache) that training never reads; activation
            # checkpointing that recomputes a block would append its keys to that cache a second time.
            inputs.setdefault("use_cache", False)
        if not self._disabled:
            batch_size = _batch_size(inputs)
            task_ids = self.task_ids_tensor(task_ids, batch_size, self._device())
            inputs = self.conditioning_inputs(task_ids, inputs)
        if self._attention_observer is not None:
            state = inputs.setdefault("prompt_state", PromptState({}))
            state.attention_observer = self._attention_observer
        return self.base(**inputs)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        task_ids: TaskIds | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """``transformers`` generation (greedy, beam search, sampling; with the KV cache) with task ids.

        Args:
            input_ids: [B, S]; attention_mask: [B, S]; task_ids: [B] (or task names).
            generate_kwargs: anything ``GenerationMixin.generate`` takes (``max_new_tokens``, ``num_beams``...).

        Returns:
            LongTensor [B * num_return_sequences, T] of generated token ids (starting with the decoder start token).
        """
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
        inputs = {k: v for k, v in inputs.items() if v is not None}
        if self._disabled:
            return self.base.generate(**inputs)
        batch_size = _batch_size(inputs)
        task_ids = self.task_ids_tensor(task_ids, batch_size, self._device())
        conditioned = self.conditioning_inputs(task_ids, inputs)
        extra = [k for k in conditioned if k not in inputs and k not in _GENERATE_INPUT_NAMES]
        with _accept_model_kwargs(self.base, extra):
            return self.base.generate(**conditioned)

    def _device(self) -> torch.device:
        return next(self.base.parameters()).device

    # --- parameters --------------------------------------------------------------------------

    def added_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """The task-conditioned parameters (everything not in the backbone)."""
        for name, parameter in self.named_parameters():
            if not name.startswith("base."):
                yield name, parameter

    def added_state_dict(self) -> dict[str, torch.Tensor]:
        backbone = {f"base.{k}" for k in self.base.state_dict()}
        return {k: v for k, v in self.state_dict().items() if k not in backbone}

    def num_added_parameters(self) -> int:
        """Number of task-conditioned parameters added to the backbone."""
        return sum(p.numel() for _, p in self.added_named_parameters())

    def num_backbone_parameters(self) -> int:
        return sum(p.numel() for p in self.base.parameters())

    def print_trainable_parameters(self) -> str:
        """Print (and return) trainable / total / added parameter counts, peft style."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        added = self.num_added_parameters()
        backbone = self.num_backbone_parameters()
        line = (
            f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}"
            f" || added params: {added:,} ({100 * added / backbone:.4f}% of the backbone)"
        )
        print(line)
        return line

    # --- save / load -------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike, save_backbone: bool = True) -> None:
        """Write config JSON + safetensors (+ the backbone), atomically: the directory is built
        beside the target and renamed into place, so an interruption never leaves a half-written one."""
        target = Path(save_directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            meta = self.config.to_dict()
            meta["format_version"] = FORMAT_VERSION
            meta["base_model_name_or_path"] = getattr(self.base.config, "_name_or_path", "") or None
            meta["backbone"] = BACKBONE_DIR if save_backbone else None
            (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
            weights = {k: v.detach().contiguous().cpu() for k, v in self.added_state_dict().items()}
            save_file(weights, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "method": self.config.method})
            if save_backbone:
                self.base.save_pretrained(tmp / BACKBONE_DIR)
            replace_directory(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        base_model: PreTrainedModel | None = None,
        **backbone_kwargs: Any,
    ) -> MultiTaskT5:
        """Load a model saved with :meth:`save_pretrained` (any method; the class comes from the config).

        Args:
            directory: the saved directory.
            base_model: a backbone to use instead of the saved one (required if it was saved without).
            backbone_kwargs: passed to ``AutoModelForSeq2SeqLM.from_pretrained`` (``dtype``, ``device_map``...).
        """
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path} not found: is {directory} a directory written by save_pretrained?")
        meta = json.loads(config_path.read_text())
        backbone = meta.pop("backbone", None)
        base_name = meta.pop("base_model_name_or_path", None)
        meta.pop("format_version", None)
        config = MethodConfig.from_dict(meta)
        model_class = MultiTaskT5.registry.get(config.method)
        if model_class is None:
            raise ValueError(f"no model class for method {config.method!r}; known: {sorted(MultiTaskT5.registry)}.")
        if base_model is None:
            if backbone is not None:
                base_model = AutoModelForSeq2SeqLM.from_pretrained(directory / backbone, **backbone_kwargs)
            elif base_name:
                base_model = AutoModelForSeq2SeqLM.from_pretrained(base_name, **backbone_kwargs)
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
        model.load_added_state_dict(weights)
        return model.to(next(base_model.parameters()).device)

    def load_added_state_dict(self, weights: dict[str, torch.Tensor]) -> None:
        """Load the added weights; a missing or unexpected key is an error that names it."""
        expected = self.added_state_dict()
        missing = sorted(set(expected) - set(weights))
        unexpected = sorted(set(weights) - set(expected))
        if missing or unexpected:
            raise ValueError(f"added weights do not match the model: missing {missing}, unexpected {unexpected}.")
        for name, tensor in weights.items():
            if tuple(tensor.shape) != tuple(expected[name].shape):
                raise ValueError(
                    f"added weight {name} has shape {list(tensor.shape)}, the model expects {list(expected[name].shape)}."
                )
        self.load_state_dict(weights, strict=False)


_GENERATE_INPUT_NAMES = frozenset({"input_ids", "attention_mask", "inputs_embeds"})


def _batch_size(inputs: dict[str, Any]) -> int:
    for key in ("input_ids", "inputs_embeds", "decoder_input_ids", "labels"):
        value = inputs.get(key)
        if value is not None:
            return value.shape[0]
    encoder_outputs = inputs.get("encoder_outputs")
    if encoder_outputs is not None:
        return encoder_outputs[0].shape[0]
    raise ValueError("no input given: pass input_ids (or inputs_embeds).")


@contextlib.contextmanager
def _accept_model_kwargs(base: PreTrainedModel, names: list[str]) -> Iterator[None]:
    """Let ``base.generate`` accept the extra model kwargs ``names``.

    ``generate`` validates model kwargs against ``prepare_inputs_for_generation``'s signature and drops
    nothing it does not know; it then expands tensor kwargs for beams / num_return_sequences and forwards
    every kwarg to each forward call. We extend the visible signature for the duration of the call
    (peft does the same for its task ids); the function itself is the backbone's own.
    """
    if not names:
        yield
        return
    original = base.prepare_inputs_for_generation

    def prepare_inputs_for_generation(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **kwargs)

    signature = inspect.signature(original)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in names]
    params += [p for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    prepare_inputs_for_generation.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    base.prepare_inputs_for_generation = prepare_inputs_for_generation
    try:
        yield
    finally:
        del base.prepare_inputs_for_generation


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
