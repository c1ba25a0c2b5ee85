"""Decoder-only causal LMs (Llama, Mistral, Qwen2, Qwen3, Gemma2, Gemma3, Phi-3, OLMo2): the T5 suite's
equivalence properties per family, every method on them, and one attention layer against an eager
computation written out here (GQA + rotary + sliding window + soft-capping)."""

from __future__ import annotations

import copy

import pytest
import torch

from hyperprompt.model import HyperPromptModel, MethodConfig, MultiTaskT5
from hyperprompt.model.causal_lm import TINY_CAUSAL_LMS, tiny_causal_lm
from hyperprompt.model.layout import BackboneShape, backbone_layout
from hyperprompt.model.params import added_parameters

FAMILIES = list(TINY_CAUSAL_LMS)
TASKS = ["alpha", "beta", "gamma"]
ALL_METHODS = ["mtl", "prompt-tuning", "prefix-tuning", "adapter", "hyperformer++",
               "hyperprompt-share", "hyperprompt-sep", "hyperprompt-global"]
SMALL = {"prompt-tuning": {"prompt_length": 3}, "prefix-tuning": {"decoder_prompt_length": 3},
         "hyperprompt-share": {"decoder_prompt_length": 3}, "hyperprompt-sep": {"decoder_prompt_length": 3},
         "hyperprompt-global": {"decoder_prompt_length": 3}}
# the methods whose computation depends on the family: prompts in attention (every family's attention
# kwargs, GQA, windows, soft-capping) and adapters on the layout's modules
FAMILY_METHODS = ["hyperprompt-global", "adapter", "prompt-tuning"]
VOCAB = 384


def make_model(method: str, family: str = "llama-tiny", **settings) -> MultiTaskT5:
    base = tiny_causal_lm(family, vocab_size=VOCAB)
    config = MethodConfig.from_dict({"method": method, "task_names": TASKS, **SMALL.get(method, {}), **settings})
    return MultiTaskT5.registry[method].from_base(base, config)


def padded_batch(side: str, batch_size: int = 4, length: int = 9):
    """Token ids [B, length] with rows 1 and 2 padded (by 2 and 4) on ``side``, and the mask."""
    ids = torch.randint(3, VOCAB, (batch_size, length))
    mask = torch.ones_like(ids)
    for row, pad in ((1, 2), (2, 4)):
        cols = slice(0, pad) if side == "left" else slice(length - pad, length)
        mask[row, cols], ids[row, cols] = 0, 0
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids as ``generate`` derives them from a padding mask (0 at padding)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def logits(model, ids, mask, task_ids, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, task_ids=task_ids, **kwargs).logits


# --- layout, shapes, errors ---------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_layout_has_one_decoder_stack_with_key_value_head_prompts(family):
    base = tiny_causal_lm(family)
    layout = backbone_layout(base)
    assert layout.stacks == ("decoder",) and layout.num_layers == {"decoder": 2}
    assert layout.num_heads == base.config.num_key_value_heads == 2  # GQA: 4 query heads share 2
    assert layout.attention_width == 2 * 8
    model = make_model("hyperprompt-global", family)
    assert model.config.apply_to == "decoder"  # "both" means every stack there is
    assert model.task_prompts(1)["decoder"].shape == (2, 2, 2, 3, 8)  # [M, k|v, h_kv, l, d_kv]


@pytest.mark.parametrize("method", ALL_METHODS)
def test_parameter_formulas_count_the_modules(method):
    model = make_model(method, "qwen2-tiny")
    shape = BackboneShape.from_config(model.base.config)
    assert shape.num_layers == {"decoder": 2} and shape.attention_width == 16
    assert added_parameters(model.config, shape) == model.num_added_parameters()
    both = MethodConfig.from_dict({"method": method, "task_names": TASKS, **SMALL.get(method, {})})
    assert added_parameters(both, shape) == model.num_added_parameters()  # apply_to: both counts one stack


def test_unsupported_architectures_and_stacks_give_clear_errors():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match="unsupported model class GPT2LMHeadModel.*LlamaForCausalLM.*Olmo2ForCausalLM"):
        make_model("mtl").from_base(gpt2, MethodConfig(task_names=TASKS))
    with pytest.raises(ValueError, match="apply_to='encoder'.*only the decoder stack"):
        make_model("hyperprompt-share", apply_to="encoder")
    with pytest.raises(ValueError, match="soft input tokens for added tasks need an encoder-decoder backbone"):
        make_model("hyperprompt-global", input_prompt_tasks=[1])


# --- 1. disabled == the plain LM; prompts and task ids change it ------------------------------

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", FAMILY_METHODS)
def test_disabled_equals_plain_and_tasks_change_the_output(family, method):
    model = make_model(method, family).eval()
    plain = copy.deepcopy(model.base)
    plain.set_attn_implementation(getattr(model, "_original_attention", plain.config._attn_implementation))
    ids, mask = padded_batch("left")
    with torch.no_grad():
        expected = plain(input_ids=ids, attention_mask=mask).logits
        with model.conditioning_disabled():
            got = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(got, expected)
    tasks_a, tasks_b = logits(model, ids, mask, [0, 0, 0, 0]), logits(model, ids, mask, [1, 1, 1, 1])
    offset = tasks_a.shape[1] - ids.shape[1]  # prompt tuning: l soft-token positions first
    assert (tasks_a[:, offset:] - expected).abs().max() > 1e-5  # adapters start near the identity
    assert (tasks_a - tasks_b).abs().max() > 1e-5


# --- 2. mixed-task batches == each row alone, right and left padding ----------------------------

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", FAMILY_METHODS)
@pytest.mark.parametrize("side", ["right", "left"])
def test_mixed_batch_equals_each_row_alone_unpadded(family, method, side):
    """Each row's real tokens give the same logits alone and unpadded as in a padded mixed-task batch:
    prompts carry no position and are never masked (rotary positions from the mask, as generate does)."""
    model = make_model(method, family).eval()
    ids, mask = padded_batch(side)
    task_ids = torch.tensor([0, 2, 1, 2])
    mixed = logits(model, ids, mask, task_ids, position_ids=positions(mask))
    offset = mixed.shape[1] - ids.shape[1]
    for row in range(4):
        real = mask[row].bool()
        alone = logits(model, ids[row:row + 1, real], None, task_ids[row:row + 1])
        assert (mixed[row, offset:][real] - alone[0, offset:]).abs().max() <= 1e-5, row


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_mixed_batch_equals_rows_alone(method):
    model = make_model(method, "mistral-tiny").eval()
    ids, mask = padded_batch("left")
    task_ids = torch.tensor([0, 2, 1, 2])
    mixed = logits(model, ids, mask, task_ids)
    for task in range(3):
        rows = (task_ids == task).nonzero().flatten()
        assert (mixed[rows] - logits(model, ids[rows], mask[rows], task_ids[rows])).abs().max() <= 1e-5


# --- 3. causality; prompts never in the KV cache ------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_causality_and_prompts_stay_out_of_the_cache(family):
    model = make_model("hyperprompt-sep", family).eval()
    ids, mask = padded_batch("right")
    task_ids = torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, task_ids=task_ids, use_cache=True)
    changed = ids.clone()
    changed[:, 5] = (changed[:, 5] + 7) % VOCAB
    after = logits(model, changed, mask, task_ids)
    assert torch.equal(after[:, :5], out.logits[:, :5])  # the future does not leak
    assert (after[:, 5:] - out.logits[:, 5:]).abs().max() > 0
    assert out.past_key_values.get_seq_length() == ids.shape[1]  # real tokens only


# --- 4. generation -------------------------------------------------------------------------------

def assert_greedy_consistent(model, ids, mask, task_ids, new: int = 5):
    """Cached greedy == uncached greedy == the argmax of one full forward over the generated sequence."""
    kwargs = dict(task_ids=task_ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)
    cached = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    uncached = model.generate(input_ids=ids, attention_mask=mask, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[:, :ids.shape[1]], ids)
    full_mask = torch.cat([mask, torch.ones(ids.shape[0], new, dtype=mask.dtype)], dim=1)
    full = logits(model, cached, full_mask, task_ids, position_ids=positions(full_mask))
    offset = full.shape[1] - cached.shape[1]
    predicted = full[:, offset + ids.shape[1] - 1:-1].argmax(-1)
    assert torch.equal(predicted, cached[:, ids.shape[1]:])
    return cached


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", FAMILY_METHODS)
def test_cached_greedy_equals_uncached_and_full_forward_argmax(family, method):
    model = make_model(method, family).eval()
    ids, mask = padded_batch("left", length=7)  # 7 + 5 tokens cross the sliding windows (4)
    assert_greedy_consistent(model, ids, mask, torch.tensor([0, 2, 1, 2]))


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_generates_consistently(method):
    model = make_model(method, "gemma2-tiny").eval()
    ids, mask = padded_batch("left", length=7)
    assert_greedy_consistent(model, ids, mask, torch.tensor([1, 0, 2, 1]))


@pytest.mark.parametrize("family", ["llama-tiny", "qwen2-tiny", "gemma2-tiny"])
@pytest.mark.parametrize("method", ["hyperprompt-global", "prefix-tuning", "hyperformer++", "prompt-tuning"])
def test_beams_follow_their_task(family, method):
    model = make_model(method, family).eval()
    ids = torch.randint(3, VOCAB, (3, 6))
    task_ids = torch.tensor([2, 0, 1])
    kwargs = dict(max_new_tokens=4, num_beams=3, num_return_sequences=2, do_sample=False)
    beams = model.generate(input_ids=ids, task_ids=task_ids, **kwargs)
    assert beams.shape[0] == 6
    for row in range(3):
        alone = model.generate(input_ids=ids[row:row + 1], task_ids=task_ids[row:row + 1], **kwargs)
        assert torch.equal(beams[2 * row:2 * row + 2, :alone.shape[1]], alone)


def test_sampling_with_task_ids():
    model = make_model("hyperprompt-global", "qwen3-tiny").eval()
    ids, mask = padded_batch("left")
    torch.manual_seed(3)
    first = model.generate(input_ids=ids, attention_mask=mask, task_ids=[0, 1, 2, 0], do_sample=True, max_new_tokens=4)
    torch.manual_seed(3)
    again = model.generate(input_ids=ids, attention_mask=mask, task_ids=[0, 1, 2, 0], do_sample=True, max_new_tokens=4)
    assert torch.equal(first, again) and first.shape == (4, 13)


# --- 5. save / load; frozen backbone; isolation ----------------------------------------------------

@pytest.mark.parametrize("method", ALL_METHODS)
def test_save_load_identical(tmp_path, method):
    model = make_model(method, "olmo2-tiny").eval()
    ids, mask = padded_batch("left")
    expected = logits(model, ids, mask, [2, 1, 0, 1])
    model.save_pretrained(tmp_path / "saved")
    loaded = MultiTaskT5.from_pretrained(tmp_path / "saved").eval()
    assert type(loaded) is type(model) and loaded.config == model.config
    assert type(loaded.base) is type(model.base)
    assert torch.equal(logits(loaded, ids, mask, [2, 1, 0, 1]), expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_identical_per_family(tmp_path, family):
    model = make_model("hyperprompt-global", family).eval()
    ids, mask = padded_batch("right")
    expected = logits(model, ids, mask, [2, 1, 0, 1])
    model.save_pretrained(tmp_path / "saved")
    loaded = MultiTaskT5.from_pretrained(tmp_path / "saved").eval()
    assert torch.equal(logits(loaded, ids, mask, [2, 1, 0, 1]), expected)


def training_loss(model, task_ids=(0, 1, 2, 1)):
    """The loss of one batch: inputs then targets, loss on the targets only (labels -100 on inputs and padding)."""
    torch.manual_seed(0)
    ids, mask = padded_batch("right")
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :4] = -100
    model.train()
    return model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=torch.tensor(task_ids)).loss


@pytest.mark.parametrize("method", ALL_METHODS[1:])
def test_frozen_backbone_trains_only_added_weights(method):
    model = make_model(method, "phi3-tiny", freeze_backbone=True)
    training_loss(model).backward()
    norms = {id(p) for p in model.backbone_parameters_to_train()}  # adapters: the layer norms (Houlsby)
    assert bool(norms) == (method in ("adapter", "hyperformer++"))
    for name, parameter in model.named_parameters():
        if name.startswith("base.") and id(parameter) not in norms:
            assert not parameter.requires_grad and parameter.grad is None, name
        else:
            assert parameter.grad is not None, name


@pytest.mark.parametrize("method", ["hyperprompt-sep", "hyperprompt-global", "prompt-tuning", "prefix-tuning",
                                    "adapter"])
def test_per_task_parameters_get_gradient_from_their_task_only(method):
    model = make_model(method, "gemma3-tiny")
    training_loss(model, task_ids=(1, 1, 1, 1)).backward()
    per_task = model.per_task_parameters()
    assert per_task
    for name, parameter in per_task.items():
        assert parameter.grad[1].abs().sum() > 0, name
        assert torch.count_nonzero(parameter.grad[0]) == 0 and torch.count_nonzero(parameter.grad[2]) == 0, name


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["hyperprompt-global", "adapter"])
def test_gradient_checkpointing_gives_the_same_gradients(family, method):
    model = make_model(method, family)

    def gradients():
        model.zero_grad(set_to_none=True)
        training_loss(model).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    reference = gradients()
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    got = gradients()
    assert got.keys() == reference.keys()
    for name, grad in reference.items():
        assert torch.allclose(got[name], grad, atol=1e-6), name


# --- 6. one attention layer against an eager computation written out here ------------------------

def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding (the half-split convention of these families): x [B, h, n, d], cos/sin [B, n, d]."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]


def share_prompts(model: HyperPromptModel, task: int, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HyperPrompt-Share's P^m_{tau,k|v} = U ReLU(D P_tau), as [h_kv, l, d_kv], with plain matmuls."""
    gen = model.hyperprompt
    P = gen.prompts["decoder"][task]
    out = []
    for kv in range(2):
        D, U = gen.down["decoder"][layer, kv], gen.up["decoder"][layer, kv]
        out.append((torch.relu(P @ D.T) @ U.T).reshape(P.shape[0], gen.num_heads, gen.d_kv).transpose(0, 1))
    return out[0], out[1]


def eager_prompted_attention(attention, x, cos, sin, padding, window, softcap, prompts):
    """Llama-like self-attention with prompts, written out: q, k, v projections (Qwen2's biases), rotary
    on q and k only, keys repeated for the query groups, prompt columns never masked, causal + sliding
    window + padding mask on the real columns, optional soft-cap, o projection. x [B, n, d] -> [B, n, d]."""
    B, n, _ = x.shape
    d_kv = attention.head_dim
    q = attention.q_proj(x).view(B, n, -1, d_kv).transpose(1, 2)
    k = attention.k_proj(x).view(B, n, -1, d_kv).transpose(1, 2)
    v = attention.v_proj(x).view(B, n, -1, d_kv).transpose(1, 2)
    q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    pk, pv = prompts  # [B, h_kv, l, d_kv], no rotation: prompts carry no position
    l = pk.shape[2]  # noqa: E741
    groups = q.shape[1] // k.shape[1]
    keys = torch.cat([pk, k], 2).repeat_interleave(groups, 1)
    values = torch.cat([pv, v], 2).repeat_interleave(groups, 1)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, keys) * attention.scaling
    if softcap is not None:
        scores = softcap * torch.tanh(scores / softcap)
    query_pos, key_pos = torch.arange(n)[:, None], torch.arange(n)[None, :]
    allowed = key_pos <= query_pos
    if window is not None:
        allowed &= query_pos - key_pos < window
    allowed = allowed[None, None] & padding[:, None, None, :].bool()
    allowed = torch.cat([torch.ones(B, 1, n, l, dtype=torch.bool), allowed], dim=-1)
    out = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ values
    return attention.o_proj(out.transpose(1, 2).reshape(B, n, -1))


@pytest.mark.parametrize("family,layer,window,softcap", [
    ("mistral-tiny", 0, 4, None),  # GQA + rotary + sliding window on every layer
    ("qwen2-tiny", 1, 4, None),  # q/k/v biases; layer 1 slides, layer 0 does not
    ("qwen2-tiny", 0, None, None),
    ("gemma2-tiny", 0, 4, 2.0),  # sliding + soft-capping
    ("gemma2-tiny", 1, None, 2.0),
])
@pytest.mark.parametrize("side", ["right", "left"])
def test_attention_layer_matches_eager_computation(family, layer, window, softcap, side):
    model = make_model("hyperprompt-share", family).eval()
    with torch.no_grad():  # large prompt scores: the soft-cap bends them (tanh is ~linear near 0)
        model.hyperprompt.up["decoder"].mul_(30.0)
    attention = model.base.model.layers[layer].self_attn
    assert getattr(attention, "attn_logit_softcapping", None) == softcap
    ids, mask = padded_batch(side, length=10)
    task_ids = torch.tensor([2, 0, 1, 2])
    captured = {}
    handle = attention.register_forward_hook(
        lambda mod, args, kwargs, out: captured.update(kwargs, out=out[0]), with_kwargs=True)
    logits(model, ids, mask, task_ids, position_ids=positions(mask))
    handle.remove()
    with torch.no_grad():
        pk, pv = zip(*[share_prompts(model, int(t), layer) for t in task_ids], strict=True)
        cos, sin = captured["position_embeddings"]
        prompts = (torch.stack(pk), torch.stack(pv))
        expected = eager_prompted_attention(attention, captured["hidden_states"], cos, sin, mask, window, softcap,
                                            prompts)
        uncapped = eager_prompted_attention(attention, captured["hidden_states"], cos, sin, mask, window, None,
                                            prompts)
    real = mask.bool()
    assert (captured["out"][real] - expected[real]).abs().max() <= 1e-5
    if softcap is not None:  # the cap reaches the prompt scores
        assert (captured["out"][real] - uncapped[real]).abs().max() > 1e-3



@pytest.mark.parametrize("size", ["qwen2.5-0.5b", "gemma-2-2b"])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_parameter_formulas_on_released_shapes(size, method):
    """On the meta device (no memory): the GQA shapes of Qwen2.5-0.5B (14 query / 2 key-value heads) and
    Gemma-2-2B (head_dim 256 != hidden / heads)."""
    from transformers import AutoModelForCausalLM

    from hyperprompt.model.causal_lm import causal_lm_size_config
    from hyperprompt.model.presets import count_backbone_parameters

    config = causal_lm_size_config(size)
    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(config)
        model = MultiTaskT5.registry[method].from_base(
            base, MethodConfig.from_dict({"method": method, "task_names": TASKS}))
    assert added_parameters(model.config, BackboneShape.from_config(config)) == model.num_added_parameters()
    assert count_backbone_parameters(config) == model.num_backbone_parameters()
    head_dim = {"qwen2.5-0.5b": 64, "gemma-2-2b": 256}[size]
    assert model.layout.attention_width == config.num_key_value_heads * head_dim


# --- 7. torch.compile, bf16 ----------------------------------------------------------------------------

def test_compiled_decoder_only_model_has_no_graph_breaks_and_matches_eager():
    model = make_model("hyperprompt-global", "qwen2-tiny")  # GQA + a sliding-window layer
    ids, mask = padded_batch("right")
    labels = ids.masked_fill(mask == 0, -100)
    batch = dict(input_ids=ids, attention_mask=mask, labels=labels, task_ids=torch.tensor([0, 1, 2, 1]))
    reference = model(**batch)
    reference.loss.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    torch._dynamo.reset()
    out = torch.compile(model, fullgraph=True, backend="aot_eager")(**batch)
    out.loss.backward()
    assert torch.allclose(out.logits, reference.logits, atol=1e-5)
    for name, parameter in model.named_parameters():
        assert torch.allclose(parameter.grad, expected[name], atol=1e-5), name


@pytest.mark.parametrize("family", ["llama-tiny", "gemma2-tiny"])
def test_bf16_backbone_trains_and_generates(family):
    model = make_model("hyperprompt-global", family).to(torch.bfloat16)
    ids, mask = padded_batch("left")
    fp32 = make_model("hyperprompt-global", family)
    fp32.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    loss = model(input_ids=ids, attention_mask=mask, labels=ids, task_ids=[0, 1, 2, 0]).loss
    loss.backward()
    reference = fp32(input_ids=ids, attention_mask=mask, labels=ids, task_ids=[0, 1, 2, 0]).loss
    assert loss.dtype == torch.float32 or loss.dtype == torch.bfloat16
    assert abs(loss.item() - reference.item()) < 0.05 * reference.item()
    assert all(p.grad is not None and p.grad.dtype == torch.bfloat16 for _, p in model.added_named_parameters())
    model.eval()
    assert model.generate(input_ids=ids, attention_mask=mask, task_ids=[0, 1, 2, 0], max_new_tokens=3).shape == (4, 12)
