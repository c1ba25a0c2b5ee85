"""The injection point: a T5 attention function that prepends per-layer key/value prompts.

transformers 5 routes every T5 attention call through ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``
with the projected ``query/key/value`` ([B, h, len, d_kv]), the mask, T5's ``position_bias`` and the
forward ``**kwargs``. We register :func:`prompted_attention` under :data:`ATTENTION_NAME` (plus a mask
function under the same name, since the mask builder dispatches on it too) and pass the prompts down
as a kwarg. No T5 code is copied or patched.

For a self-attention layer tagged with a slot (``module._prompt_slot = (stack, layer)``)::

    K' = [P_k ; K]   V' = [P_v ; V]   O = softmax(Q K'^T + [0 ; bias + mask]) V'

Prompt columns get zero position bias and are never masked (not by padding, not by causality), so
decoder position 0 sees all l prompts. Prompts never enter the KV cache: cache lengths, relative
positions and ``cache_position`` stay those of the real tokens. Cross-attention modules carry the slot
``("cross", layer)``: they run unchanged unless the prompt state has a ``"cross"`` table (prefix tuning's
cross-attention prefixes, in front of the encoder's keys and values).

Routing a backbone through this function (:func:`route_prompted_attention`) needs only its
:class:`~hyperprompt.model.layout.BackboneLayout`: the self-attention modules to tag with slots.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PretrainedConfig
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

if TYPE_CHECKING:
    from hyperprompt.model.layout import BackboneLayout

ATTENTION_NAME = "hyperprompt"


class PromptState:
    """The per-forward state that travels to the attention function as the ``prompt_state`` kwarg.

    Attributes:
        tables: ``{stack: [M, R, 2, h, l, d_kv]}`` prompts per layer and table row.
        bias_cache: the attention function's per-stack combined bias (built once per stack and forward).
        attention_observer: if set, called by every prompted attention layer with its weights (analysis).
    """

    def __init__(self, tables: dict[str, torch.Tensor], attention_observer: Callable[..., None] | None = None):
        self.tables = tables
        self.bias_cache: dict[Any, Any] = {}
        self.attention_observer = attention_observer
        # generate() calls the model once per token with the same (beam-expanded) row index:
        # gather each layer's rows once per call, not once per step.
        self._gathered: dict[tuple[str, int], tuple[torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]] = {}

    def layer_prompts(
        self, slot: tuple[str, int], row_index: torch.Tensor | None, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        table = self.tables.get(slot[0])
        if table is None:
            return None
        memo = self._gathered.get(slot)
        if memo is not None and memo[0] is row_index and memo[1][0].shape[0] == batch_size:
            return memo[1]
        layer = table[slot[1]]  # [R, 2, h, l, d_kv]
        if row_index is not None:
            layer = layer.index_select(0, row_index)
        elif layer.shape[0] == 1:
            layer = layer.expand(batch_size, *layer.shape[1:])
        else:
            raise ValueError("prompt_row_index is required when the prompt table has several rows.")
        prompts = (layer[:, 0], layer[:, 1])
        if not torch.is_grad_enabled():  # with grad, gradient checkpointing must see the gather recomputed
            self._gathered[slot] = (row_index, prompts)
        return prompts


def _combined_bias(
    position_bias: torch.Tensor | None,
    mask: torch.Tensor | None,
    prompt_length: int,
    dtype: torch.dtype,
) -> torch.Tensor | None:
    """Additive scores bias [B|1, h|1, q, l + k]: zeros for the l prompt columns, T5's bias and mask after
    (the mask alone without a position bias; None without either)."""
    if position_bias is None:
        if mask is None:
            return None
        position_bias = torch.zeros((), dtype=dtype, device=mask.device).expand(mask.shape)
    bias = position_bias.to(dtype)
    if mask is not None:
        if mask.dtype == torch.bool:
            bias = bias.masked_fill(~mask, torch.finfo(dtype).min)
        else:
            bias = bias + mask.to(dtype)
    if prompt_length:
        bias = F.pad(bias, (prompt_length, 0))
    return bias


def prompted_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    position_bias: torch.Tensor | None = None,
    prompt_state: PromptState | None = None,
    prompt_row_index: torch.Tensor | None = None,
    output_attentions: bool = False,
    softcap: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention with optional prepended prompts.

    Args:
        query: [B, h, q, d_kv]; key, value: [B, h_kv, k, d_kv] (real tokens only, as cached; after rotary
            embedding). h_kv < h under grouped-query attention: query head i reads key head i // (h / h_kv),
            and prompts have h_kv heads like the keys.
        attention_mask: boolean [B, 1, q, k] (True = attend) or None for "attend everywhere". Causality and
            sliding windows are in it, so they never reach the prompt columns.
        position_bias: T5's relative bias [1 | B, h, q, k] (zeros in layers without one); None in rotary
            models and in backbones with absolute positions (BART, BERT).
        prompt_state: per-forward prompts (see :class:`PromptState`); None runs plain attention.
        prompt_row_index: [B] row of each example in the state's prompt table (expanded with beams).
        softcap: Gemma2's logit soft-capping ``c * tanh(scores / c)``, applied to prompt scores too.

    Returns:
        output [B, q, h, d_kv] and the attention weights [B, h, q, l + k] when they were computed
        (``output_attentions`` or an attention observer), else None.
    """
    slot = getattr(module, "_prompt_slot", None)
    prompts = None
    if prompt_state is not None and slot is not None:
        prompts = prompt_state.layer_prompts(slot, prompt_row_index, query.shape[0])
    prompt_length = 0 if prompts is None else prompts[0].shape[2]

    # The combined bias depends only on (position_bias, mask, l), which every layer of a stack shares
    # in one forward: build it once per stack. Identity checks hold the tensors, so ids cannot be reused.
    # (BART, BERT and rotary models pass no position bias: None is None, so the mask alone decides.)
    # A layer never reuses the bias it built itself: under activation checkpointing its recomputation must
    # miss where its forward missed (FSDP2 hands each unit new tensor objects, so there every layer misses,
    # and the last layer's recomputation would otherwise hit its own forward's entry: CheckpointError).
    cache_key = (slot[0] if slot is not None else "cross", prompt_length)
    cached = None if prompt_state is None else prompt_state.bias_cache.get(cache_key)
    if (cached is not None and cached[4] is not module and cached[0] is position_bias and cached[1] is attention_mask
            and (cached[3] is None or (cached[3].shape[-2] == query.shape[2]
                                       and cached[3].shape[-1] == prompt_length + key.shape[2]))):
        bias = cached[3]
    else:
        bias = _combined_bias(position_bias, attention_mask, prompt_length, query.dtype)
        if prompt_state is not None:
            prompt_state.bias_cache[cache_key] = (position_bias, attention_mask, prompt_length, bias, module)

    observer = None if prompt_state is None else prompt_state.attention_observer
    groups = query.shape[1] // key.shape[1]  # query heads per key head (1 without grouped-query attention)
    # The decode-step path rounds scores to the query dtype; in bf16/fp16 SDPA's fp32 accumulation is
    # more precise, so reduced precision concatenates (a cache copy that is cheap next to a GPU step).
    if (prompts is not None and query.shape[2] == 1 and query.dtype in (torch.float32, torch.float64)
            and not output_attentions and observer is None):
        return _decode_step_attention(query, key, value, prompts, bias, scaling, dropout, module.training,
                                      softcap), None
    if prompts is not None:
        key = torch.cat([prompts[0].to(key.dtype), key], dim=2)
        value = torch.cat([prompts[1].to(value.dtype), value], dim=2)

    if output_attentions or observer is not None or softcap is not None:  # SDPA has no soft-capping
        if groups > 1:
            key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
        scale = 1.0 if scaling is None else scaling
        scores = _softcapped(torch.matmul(query, key.transpose(2, 3)) * scale, softcap)
        if bias is not None:
            scores = scores + bias
        weights = scores.float().softmax(dim=-1).to(query.dtype)
        if observer is not None:
            observer(module=module, slot=slot, weights=weights, prompt_length=prompt_length,
                     attention_mask=attention_mask)
        weights_dropped = F.dropout(weights, p=dropout, training=module.training)
        output = torch.matmul(weights_dropped, value)
        return output.transpose(1, 2).contiguous(), weights

    output = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout, scale=scaling,
                                            enable_gqa=groups > 1)
    return output.transpose(1, 2).contiguous(), None


def _softcapped(scores: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """Gemma2's ``c * tanh(scores / c)`` (scores unchanged without a cap), before the mask is added."""
    return scores if softcap is None else torch.tanh(scores / softcap) * softcap


def _decode_step_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    prompts: tuple[torch.Tensor, torch.Tensor],
    bias: torch.Tensor | None,
    scaling: float | None,
    dropout: float,
    training: bool,
    softcap: float | None = None,
) -> torch.Tensor:
    """One query per row (cached decoding): attend to the prompts and the cached keys without copying
    the cache into a concatenated tensor -- only the [B, h, 1, l + k] scores are concatenated. Under
    grouped-query attention the g query heads of a key head become g query rows of it (no key copies)."""
    prompt_keys, prompt_values = prompts
    length = prompt_keys.shape[2]
    batch, heads = query.shape[:2]
    groups = heads // key.shape[1]
    if groups > 1:  # [B, h, 1, d] -> [B, h_kv, g, d]; the bias has one head and one query row here
        query = query.reshape(batch, key.shape[1], groups, query.shape[-1])
    scale = 1.0 if scaling is None else scaling
    real = _softcapped(torch.matmul(query, key.transpose(2, 3)) * scale, softcap)
    if bias is not None:
        real = real + bias[..., length:]
    prompt_scores = _softcapped(torch.matmul(query, prompt_keys.to(query.dtype).transpose(2, 3)) * scale, softcap)
    weights = torch.cat([prompt_scores, real], dim=-1).float().softmax(dim=-1).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=training)
    output = torch.matmul(weights[..., :length], prompt_values.to(value.dtype))
    output = output + torch.matmul(weights[..., length:], value)
    if groups > 1:
        output = output.reshape(batch, heads, 1, output.shape[-1])
    return output.transpose(1, 2).contiguous()


def prompted_attention_mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """The mask builder for :data:`ATTENTION_NAME`: SDPA's boolean [B, 1, q, k] mask, never skipped for
    causal attention (SDPA's ``is_causal`` shortcut would hide the prompt columns from early queries)."""
    kwargs["allow_is_causal_skip"] = False
    return sdpa_mask(*args, **kwargs)


def register_attention() -> None:
    """Register the attention and mask functions (idempotent)."""
    AttentionInterface.register(ATTENTION_NAME, prompted_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, prompted_attention_mask)


# --- routing a backbone through the function above -------------------------------------------------


def tag_prompt_slots(layout: BackboneLayout) -> None:
    """Tag each self-attention module with its ``(stack, layer)`` slot, where it finds its prompts, and each
    cross-attention module with ``("cross", layer)``."""
    for stack in layout.stacks:
        for layer, module in enumerate(layout.self_attention[stack]):
            module._prompt_slot = (stack, layer)
    for layer, module in enumerate(layout.cross_attention):
        module._prompt_slot = ("cross", layer)


def set_attention_implementation(base: torch.nn.Module, name: str) -> None:
    """Set the backbone's attention implementation everywhere it is read: transformers < 5.24 keeps it
    in the encoder's and decoder's own config copies too, which ``set_attn_implementation`` leaves as
    they were (the prompts would then silently not reach attention)."""
    base.set_attn_implementation(name)
    for module in base.modules():
        config = getattr(module, "config", None)
        if isinstance(config, PretrainedConfig) and config._attn_implementation != name:
            config._attn_implementation = name


@contextlib.contextmanager
def attention_implementation(base: torch.nn.Module, name: str) -> Iterator[None]:
    """Within this context the backbone runs attention implementation ``name``."""
    previous = base.config._attn_implementation
    if previous != name:
        set_attention_implementation(base, name)
    try:
        yield
    finally:
        if previous != name:
            set_attention_implementation(base, previous)


def route_prompted_attention(base: torch.nn.Module, layout: BackboneLayout) -> str:
    """Route ``base``'s attention through :func:`prompted_attention` for good (methods that prepend
    key/value prompts) and return the implementation it ran before (``sdpa`` if it already was ours)."""
    tag_prompt_slots(layout)
    original = base.config._attn_implementation
    set_attention_implementation(base, ATTENTION_NAME)
    return original if original != ATTENTION_NAME else "sdpa"


register_attention()
