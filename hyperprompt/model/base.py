"""`MultiTaskT5`: what every task-conditioned method shares.

A method wraps a Hugging Face T5 (T5, T5 v1.1, mT5, ByT5, UMT5 checkpoints), adds its task-conditioned
modules, and takes per-example ``task_ids`` in ``forward`` and ``generate``. Subclasses implement
:meth:`MultiTaskT5.build` (create the added modules and install them where the backbone's
:class:`~hyperprompt.model.layout.BackboneLayout` says) and :meth:`MultiTaskT5.conditioning_inputs` (turn
``task_ids`` into what the backbone needs), and are registered with their config and parameter formula
(:func:`~hyperprompt.model.registry.register_method`). Save/load is in ``io.py``, attention routing
in ``attention.py``.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn
from transformers import PreTrainedModel

from hyperprompt.model import io
from hyperprompt.model.attention import (
    ATTENTION_NAME,
    PromptState,
    attention_implementation,
    route_prompted_attention,
    tag_prompt_slots,
)
from hyperprompt.model.config import MethodConfig
from hyperprompt.model.io import replace_directory  # noqa: F401  (callers import it from here)
from hyperprompt.model.layout import BackboneLayout, backbone_layout, family_of_model
from hyperprompt.model.registry import METHODS, RegistryView

TaskIds = torch.Tensor | Sequence[int] | Sequence[str]
Tables = TypeVar("Tables")


def mean_task_rows(rows: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` new rows of a per-task parameter, each the mean of its old rows [T, ...]: [count, ...]
    (an "average task" to start from)."""
    return rows.mean(dim=0, keepdim=True).expand(count, *rows.shape[1:])


class MultiTaskT5(nn.Module):
    """A T5 backbone plus task-conditioned modules, addressed by per-example task ids.

    Attributes:
        base: the wrapped ``T5ForConditionalGeneration`` (or mT5 / ByT5 / UMT5).
        config: the method's :class:`MethodConfig`.
    """

    #: ``{method name: model class}``, a view of the method registry
    registry: ClassVar[RegistryView] = RegistryView("model_cls")

    def __init__(self, base: PreTrainedModel, config: MethodConfig):
        super().__init__()
        family_of_model(base)  # a clear error for an unsupported backbone
        config = config.for_stacks(backbone_layout(base).stacks)
        expected = next((m.config_cls for m in METHODS.values() if m.model_cls is type(self)), MethodConfig)
        if not isinstance(config, expected):
            raise ValueError(f"{type(self).__name__} needs a {expected.__name__}, got {type(config).__name__}.")
        self.base = base
        self.config = config
        self.build()
        self._move_added_modules()
        if config.freeze_backbone:
            for parameter in self.base.parameters():
                parameter.requires_grad_(False)
            for parameter in [*self.backbone_parameters_to_train(), *new_backbone_weights(self.base)]:
                parameter.requires_grad_(True)

    @classmethod
    def from_base(cls, base: PreTrainedModel, config: MethodConfig) -> MultiTaskT5:
        """Wrap ``base`` (kept, not copied) with this method."""
        return cls(base, config)

    @property
    def layout(self) -> BackboneLayout:
        """Where the backbone keeps its stacks, self-attention and feed-forward modules, and its sizes."""
        return backbone_layout(self.base)

    # --- what a method provides --------------------------------------------------------------

    def build(self) -> None:
        """Create the added modules and hook them into ``self.base``."""

    def backbone_parameters_to_train(self) -> list[nn.Parameter]:
        """Backbone parameters that stay trainable under ``freeze_backbone`` (adapters: the layer norms,
        as Houlsby et al. and the HyperFormer code do). Default: none."""
        return []

    def conditioning_inputs(
        self, task_ids: torch.Tensor, inputs: dict[str, Any]
    ) -> dict[str, Any]:
        """Return ``inputs`` (the backbone's forward/generate keyword arguments) with the method's
        conditioning applied: extra kwargs that reach the attention functions, or changed
        ``inputs_embeds`` / ``attention_mask``. The default adds nothing (plain multi-task T5)."""
        return inputs

    def per_task_parameters(self) -> dict[str, nn.Parameter]:
        """Parameters whose first dimension indexes tasks (by name): only task tau's loss may update row tau."""
        return {}

    def new_task_rows(self, name: str, rows: torch.Tensor, new_task_names: list[str]) -> torch.Tensor:
        """The starting rows of new tasks in the per-task parameter ``name`` whose old rows are ``rows``
        [T, ...]: [len(new_task_names), ...]. Default: the mean of the old rows (an "average task")."""
        return mean_task_rows(rows, len(new_task_names))

    def use_prompted_attention(self) -> None:
        """Route the backbone's attention through :func:`~hyperprompt.model.attention.prompted_attention`
        (for methods that prepend key/value prompts, from :meth:`build`)."""
        self._original_attention = route_prompted_attention(self.base, self.layout)

    def task_tables(
        self, task_ids: torch.Tensor, compute: Callable[[torch.Tensor], Tables], all_tasks: bool = False
    ) -> tuple[Tables, torch.Tensor]:
        """Tables that depend on the task only (prompts, generated adapters), and each example's row in them.

        Args:
            task_ids: LongTensor [B].
            compute: ``compute(tasks)`` for a LongTensor [R] of task ids returns the tables, R rows each.
            all_tasks: with grad, compute every task's rows rather than only the batch's tasks (avoids
                ``torch.unique``, a host sync; also what happens under ``torch.compile``).

        Returns:
            the tables and LongTensor [B] rows. With grad the tables hold the batch's distinct tasks.
            Without grad they hold every task and are cached until an added weight changes (tracked
            by tensor versions, so optimiser steps and ``load_state_dict`` count) or ``train()``/``eval()``.
        """
        if not torch.is_grad_enabled():
            key = tuple((p.data_ptr(), p._version, p.dtype) for _, p in self.added_named_parameters())
            if self._table_cache is None or self._table_cache[0] != key:
                groups = [compute(torch.arange(start, stop, device=task_ids.device))
                          for start, stop in self.config.task_id_groups()]  # MethodConfig.task_groups
                self._table_cache = (key, groups[0] if len(groups) == 1 else _concat_rows(groups, self.task_table_row_dim))
            return self._table_cache[1], task_ids
        if all_tasks or torch.compiler.is_compiling():  # unique() would break the graph
            return compute(torch.arange(self.config.num_tasks, device=task_ids.device)), task_ids
        tasks, rows = torch.unique(task_ids, return_inverse=True)
        return compute(tasks), rows

    def train(self, mode: bool = True) -> MultiTaskT5:
        self._table_cache = None
        return super().train(mode)

    _table_cache: tuple[tuple, Any] | None = None
    #: the task-row dimension of the tensors :meth:`task_tables` computes
    task_table_row_dim: ClassVar[int] = 0

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
    def conditioning_disabled(self) -> Iterator[None]:
        """Within this context the model is exactly the wrapped backbone (task ids are ignored)."""
        original = getattr(self, "_original_attention", self.base.config._attn_implementation)
        self._disabled = True
        try:
            with attention_implementation(self.base, original):
                yield
        finally:
            self._disabled = False

    @contextlib.contextmanager
    def observe_attention(self, observer: Callable[..., None]) -> Iterator[None]:
        """Call ``observer(module=, slot=, weights=, prompt_length=, attention_mask=)`` from every attention
        layer while inside: ``weights`` [B, h, q, l + k] are one layer's softmax weights, prompt columns
        first; ``slot`` is ``(stack, layer)`` for self-attention and ``("cross", layer)`` for cross-attention. Works for
        every method (the backbone runs through the prompted attention function meanwhile); normal
        forwards never compute the weights."""
        tag_prompt_slots(self.layout)
        previous, self._attention_observer = self._attention_observer, observer
        try:
            with attention_implementation(self.base, ATTENTION_NAME):
                yield
        finally:
            self._attention_observer = previous

    _disabled = False
    _attention_observer: Callable[..., None] | None = None

    # --- task ids ----------------------------------------------------------------------------

    def task_ids_tensor(self, task_ids: TaskIds | None, batch_size: int, device: torch.device) -> torch.Tensor:
        """Validate ``task_ids`` (LongTensor [batch], ints or task names) and return a LongTensor [batch] on
        ``device``. Values are range-checked when the ids are on the CPU (ints and names always are)."""
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
        # On the CPU the range check is free; on an accelerator it would stall every step for a host
        # sync, so ids arriving there are not checked here (an out-of-range id fails in the lookup).
        if task_ids.device.type == "cpu" and not torch.compiler.is_compiling():
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
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        if decoder_input_ids is not None:  # a decoder-only LM has no such argument
            inputs["decoder_input_ids"] = decoder_input_ids
        if self.training:
            # T5's decoder would fill a KV cache (its config's use_cache) that training never reads; activation
            # checkpointing that recomputes a block would append its keys to that cache a second time.
            inputs.setdefault("use_cache", False)
        plain = dict(inputs)
        if not self._disabled:
            batch_size = _batch_size(inputs)
            task_ids = self.task_ids_tensor(task_ids, batch_size, self._device())
            inputs = self.conditioning_inputs(task_ids, inputs)
        if self._attention_observer is not None:
            state = inputs.setdefault("prompt_state", PromptState({}))
            state.attention_observer = self._attention_observer
        return self.base(**self._to_both_stacks(inputs, plain))

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
        conditioned = self._to_both_stacks(self.conditioning_inputs(task_ids, inputs), inputs)
        extra = [k for k in conditioned if k not in inputs and k not in _GENERATE_INPUT_NAMES]
        with _accept_model_kwargs(self.base, extra):
            return self.generated_sequences(self.base.generate(**conditioned), inputs)

    def generated_sequences(self, sequences: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        """What :meth:`generate` returns, from the backbone's ``sequences`` and the unconditioned ``inputs``
        (the backbone's own output unless a method changed what it generated after)."""
        return sequences

    def _to_both_stacks(self, conditioned: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        """``conditioned`` with each kwarg the method added (not the encoder inputs prompt tuning replaces)
        also under the decoder's name, for backbones
        whose decoder reads only prefixed kwargs (``EncoderDecoderModel``: ``decoder_prompt_state``)."""
        prefix = family_of_model(self.base).decoder_kwargs_prefix
        if not prefix:
            return conditioned
        added = {f"{prefix}{k}": v for k, v in conditioned.items()
                 if k not in inputs and k not in _GENERATE_INPUT_NAMES and not k.startswith(prefix)}
        return {**conditioned, **added}

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

    def _move_added_modules(self) -> None:
        """Put what :meth:`build` added on the backbone's device (the backbone itself is not moved)."""
        device = self._device()
        for name, module in self.named_children():
            if name != "base":
                module.to(device)
        with torch.no_grad():
            for parameter in self._parameters.values():
                parameter.data = parameter.data.to(device)

    # --- save / load (io.py) -----------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike, save_backbone: bool = True) -> None:
        """Write ``method_config.json`` + ``method_weights.safetensors`` (+ ``backbone/``), atomically."""
        io.save_pretrained(self, save_directory, save_backbone)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        base_model: PreTrainedModel | None = None,
        **backbone_kwargs: Any,
    ) -> MultiTaskT5:
        """Load a model saved with :meth:`save_pretrained` (any method: the class comes from the config);
        see :func:`hyperprompt.model.io.load_pretrained`."""
        return io.load_pretrained(directory, base_model, **backbone_kwargs)

    def load_added_state_dict(self, weights: dict[str, torch.Tensor]) -> None:
        """Load the added weights; a missing or unexpected key is an error that names it."""
        io.load_added_state_dict(self, weights)


_GENERATE_INPUT_NAMES = frozenset({"input_ids", "attention_mask", "inputs_embeds"})


def new_backbone_weights(base: PreTrainedModel) -> list[nn.Parameter]:
    """The backbone's weights its pretrained checkpoint did not have (``config.warm_start_new_weights``: a
    warm-started BERT2BERT's cross-attention and LM-head transform). ``freeze_backbone`` freezes what was
    pretrained; these start untrained (or copied into a new role), so every method trains them."""
    names = set(getattr(base.config, "warm_start_new_weights", None) or [])
    return [parameter for name, parameter in base.named_parameters() if name in names]


def _concat_rows(groups: list[Any], dim: int) -> Any:
    """Tables of consecutive task groups (nested dicts of tensors) joined along the task-row dimension."""
    if isinstance(groups[0], torch.Tensor):
        return torch.cat(groups, dim=dim)
    return {key: _concat_rows([group[key] for group in groups], dim) for key in groups[0]}


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
