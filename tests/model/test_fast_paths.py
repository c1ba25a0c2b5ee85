"""Every optimised path against its reference: decode-step attention, cached bias, compile, bf16."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import T5ForConditionalGeneration

from hyperprompt import HyperPromptConfig, HyperPromptModel
from hyperprompt.model.attention import _decode_step_attention
from hyperprompt.model.presets import t5_config


def tiny_model(**config) -> HyperPromptModel:
    base = T5ForConditionalGeneration(t5_config("t5-tiny", dropout_rate=0.0))
    return HyperPromptModel.from_base(base, HyperPromptConfig(task_names=["a", "b", "c"], **config))


def inputs():
    ids = torch.randint(3, 384, (4, 10))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    mask[2, 8:] = 0
    return dict(input_ids=ids, attention_mask=mask, labels=torch.randint(3, 384, (4, 5)),
                task_ids=torch.tensor([0, 2, 1, 2]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_decode_step_attention_equals_concatenated_sdpa(dtype):
    B, h, k, l, d = 3, 4, 7, 5, 8  # noqa: E741
    query, key, value = (torch.randn(B, h, n, d, dtype=dtype) for n in (1, k, k))
    prompt_keys, prompt_values = torch.randn(B, h, l, d, dtype=dtype), torch.randn(B, h, l, d, dtype=dtype)
    bias = torch.randn(B, h, 1, l + k, dtype=dtype)
    bias[..., :l] = 0
    bias[1, :, :, l + 3:] = torch.finfo(dtype).min  # masked keys
    got = _decode_step_attention(query, key, value, (prompt_keys, prompt_values), bias, 1.0, 0.0, False)
    expected = F.scaled_dot_product_attention(
        query, torch.cat([prompt_keys, key], 2), torch.cat([prompt_values, value], 2), attn_mask=bias, scale=1.0)
    assert (got - expected.transpose(1, 2)).abs().max() <= 1e-6


def test_all_task_prompts_equal_distinct_task_prompts():
    distinct = tiny_model()
    every = copy.deepcopy(distinct)
    every.config.compute_all_tasks = True
    batch = inputs()
    a, b = distinct(**batch), every(**batch)
    assert torch.allclose(a.logits, b.logits, atol=1e-6)
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(distinct.named_parameters(), every.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_compiled_model_has_no_graph_breaks_and_matches_eager():
    model = tiny_model()
    batch = inputs()
    reference = model(**batch)
    reference.loss.backward()
    expected_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    torch._dynamo.reset()
    # fullgraph=True fails on any graph break (the data-dependent unique() is skipped under compile);
    # aot_eager traces forward and backward like inductor, without the C++ code generation time
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(**batch)
    out.loss.backward()
    assert torch.allclose(out.logits, reference.logits, atol=1e-5)
    for name, parameter in model.named_parameters():
        assert torch.allclose(parameter.grad, expected_grads[name], atol=1e-5), name


def test_bf16_autocast_matches_fp32_within_bf16_tolerance():
    model = tiny_model().eval()
    batch = inputs()
    with torch.no_grad():
        full = model(**batch).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(**batch).logits
    assert half.dtype == torch.bfloat16
    assert (half.float() - full).abs().max() / full.abs().max() < 3e-2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tokens = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                task_ids=batch["task_ids"], max_new_tokens=3)
    assert tokens.shape == (4, 4)
