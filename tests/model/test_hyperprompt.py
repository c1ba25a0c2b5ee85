"""HyperPrompt core: exactness against independent computations, isolation, generation, save/load."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BertModel, T5ForConditionalGeneration

from hyperprompt import HyperPromptConfig, HyperPromptModel, MultiTaskT5
from hyperprompt.model.params import BackboneShape, added_parameters
from hyperprompt.model.presets import t5_config

VARIANTS = ["global", "share", "sep"]
TASKS = ["alpha", "beta", "gamma"]


def tiny_base(**overrides) -> T5ForConditionalGeneration:
    overrides.setdefault("dropout_rate", 0.0)
    return T5ForConditionalGeneration(t5_config("t5-tiny", **overrides))


def make_model(variant: str = "global", base=None, **config) -> HyperPromptModel:
    base = base if base is not None else tiny_base()
    config.setdefault("encoder_prompt_length", 3)
    config.setdefault("decoder_prompt_length", 2)
    return HyperPromptModel.from_base(base, HyperPromptConfig(task_names=TASKS, variant=variant, **config))


def batch(batch_size: int = 4, length: int = 9, target: int = 5, pad_rows: int = 2):
    input_ids = torch.randint(3, 384, (batch_size, length))
    attention_mask = torch.ones_like(input_ids)
    for row in range(pad_rows):  # right padding of different lengths
        attention_mask[row, length - 2 - 2 * row:] = 0
        input_ids[row, length - 2 - 2 * row:] = 0
    labels = torch.randint(3, 384, (batch_size, target))
    return input_ids, attention_mask, labels


# --- 1. disabled == the wrapped T5 -----------------------------------------------------------


def attention_implementations(model) -> set[str]:
    """The attention implementation of every config in the backbone (the stacks keep their own copies)."""
    from transformers import PretrainedConfig

    return {m.config._attn_implementation for m in model.base.modules() if isinstance(getattr(m, "config", None),
                                                                                      PretrainedConfig)}


def test_every_backbone_config_routes_attention_through_the_prompts():
    """transformers 5.17's set_attn_implementation leaves the encoder's and decoder's config copies as
    they were; the prompts must reach attention on every version we declare."""
    model = make_model("global")
    assert attention_implementations(model) == {"hyperprompt"}
    with model.hyperprompts_disabled():
        assert attention_implementations(model) == {"sdpa"}
    assert attention_implementations(model) == {"hyperprompt"}

@pytest.mark.parametrize("variant", VARIANTS)
def test_disabled_equals_plain_t5(variant):
    base = tiny_base()
    plain = copy.deepcopy(base)
    model = make_model(variant, base)
    ids, mask, labels = batch()
    with torch.no_grad():
        expected = plain(input_ids=ids, attention_mask=mask, labels=labels).logits
        with model.hyperprompts_disabled():
            got = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        conditioned = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=[0, 1, 2, 0]).logits
    assert (got - expected).abs().max() <= 1e-6
    assert (conditioned - expected).abs().max() > 1e-3  # the prompts do change the model


# --- 2. one attention layer == an independent naive computation --------------------------------

def naive_prompts(model: HyperPromptModel, task: int, stack: str, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """P^m_{tau,k}, P^m_{tau,v} [h, l, d_kv] from the parameters, with plain matmuls."""
    gen = model.hyperprompt
    P = gen.prompts[stack][task]  # [l, d]
    h, dkv, b, d = gen.num_heads, gen.d_kv, gen.bottleneck, gen.d_model
    out = []
    for kv in range(2):
        if gen.config.variant == "share":
            D, U = gen.down[stack][layer, kv], gen.up[stack][layer, kv]
        elif gen.config.variant == "sep":
            D, U = gen.down[stack][task, layer, kv], gen.up[stack][task, layer, kv]
        else:
            offset = 0 if stack == "encoder" else gen.num_layers.get("encoder", 0)
            k, z = gen.task_embedding[task], gen.layer_embedding[offset + layer]
            I = gen.task_mlp(torch.cat([k, z])) * gen.generator_multiplier  # noqa: E741
            D = (gen.down_generator[kv].T @ I).reshape(b, d)
            U = (gen.up_generator[kv].T @ I).reshape(h * dkv, b)
        prompt = torch.relu(P @ D.T) @ U.T  # [l, h*dkv]
        out.append(prompt.reshape(-1, h, dkv).transpose(0, 1))
    return out[0], out[1]


def naive_self_attention(module, stack_module, x, key_padding, causal, prompts):
    """T5 self-attention with prompts prepended, written out: x [B, n, d] -> [B, n, d]."""
    B, n, _ = x.shape
    h, dkv = module.n_heads, module.key_value_proj_dim
    q = (x @ module.q.weight.T).view(B, n, h, dkv).transpose(1, 2)
    k = (x @ module.k.weight.T).view(B, n, h, dkv).transpose(1, 2)
    v = (x @ module.v.weight.T).view(B, n, h, dkv).transpose(1, 2)
    pk, pv = prompts  # [B, h, l, dkv]
    l = pk.shape[2]  # noqa: E741
    keys, values = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
    bias = stack_module.block[0].layer[0].SelfAttention.compute_bias(n, n)[0]  # [h, n, n]
    scores = torch.einsum("bhqd,bhkd->bhqk", q, keys)  # T5: no 1/sqrt(d_kv)
    full_bias = torch.zeros(B, h, n, l + n)
    full_bias[..., l:] = bias
    allowed = torch.ones(B, 1, n, l + n, dtype=torch.bool)
    allowed[..., l:] &= key_padding[:, None, None, :].bool()
    if causal:
        allowed[..., l:] &= torch.ones(n, n, dtype=torch.bool).tril()
    scores = (scores + full_bias).masked_fill(~allowed, float("-inf"))
    out = scores.softmax(-1) @ values  # [B, h, n, dkv]
    return out.transpose(1, 2).reshape(B, n, h * dkv) @ module.o.weight.T


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("stack,layer", [("encoder", 0), ("encoder", 1), ("decoder", 0), ("decoder", 1)])
def test_attention_layer_matches_naive(variant, stack, layer):
    model = make_model(variant).eval()
    ids, mask, labels = batch()
    decoder_mask = torch.ones_like(labels)
    decoder_mask[1, 3:] = 0  # decoder padding too
    task_ids = torch.tensor([2, 0, 1, 2])
    stack_module = getattr(model.base, stack)
    attention = stack_module.block[layer].layer[0].SelfAttention
    captured = {}
    handle = attention.register_forward_hook(
        lambda mod, args, kwargs, out: captured.update(x=args[0], out=out[0]), with_kwargs=True
    )
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, labels=labels, decoder_attention_mask=decoder_mask,
              task_ids=task_ids)
        handle.remove()
        prompts = [naive_prompts(model, int(t), stack, layer) for t in task_ids]
        pk = torch.stack([p[0] for p in prompts])
        pv = torch.stack([p[1] for p in prompts])
        padding = mask if stack == "encoder" else decoder_mask
        expected = naive_self_attention(attention, stack_module, captured["x"], padding, stack == "decoder", (pk, pv))
    valid = padding.bool()  # outputs at padded query positions are unused; compare real ones
    assert (captured["out"][valid] - expected[valid]).abs().max() <= 1e-5


# --- 3. mixed-task batches == per-task batches --------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("grad", [True, False])
def test_mixed_batch_equals_per_task_batches(variant, grad):
    model = make_model(variant)
    ids, mask, labels = batch(batch_size=6)
    task_ids = torch.tensor([0, 2, 1, 0, 2, 2])
    with torch.set_grad_enabled(grad):
        mixed = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits
        for task in range(3):
            rows = (task_ids == task).nonzero().flatten()
            alone = model(input_ids=ids[rows], attention_mask=mask[rows], labels=labels[rows],
                          task_ids=task_ids[rows]).logits
            assert (mixed[rows] - alone).abs().max() <= 1e-5


def test_prompts_computed_once_per_forward_for_distinct_tasks():
    model = make_model("global")
    calls = []
    model.hyperprompt.register_forward_hook(lambda mod, args, out: calls.append(args[0].tolist()))
    ids, mask, labels = batch(batch_size=5)
    model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=torch.tensor([2, 0, 2, 2, 0]))
    assert calls == [[0, 2]]


# --- 4. gradient isolation ----------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_gradient_isolation(variant):
    model = make_model(variant)
    ids, mask, labels = batch()
    task = 1
    loss = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=torch.full((4,), task)).loss
    loss.backward()
    per_task = model.hyperprompt.per_task_parameters()
    expected = {"global": {"prompts.encoder", "prompts.decoder", "task_embedding"},
                "share": {"prompts.encoder", "prompts.decoder"},
                "sep": {"prompts.encoder", "prompts.decoder", "down.encoder", "down.decoder",
                        "up.encoder", "up.decoder"}}[variant]
    assert set(per_task) == expected
    for name, parameter in per_task.items():
        grad = parameter.grad
        assert grad is not None, name
        for other in range(len(TASKS)):
            if other != task:
                assert torch.count_nonzero(grad[other]) == 0, f"{name}[{other}] got gradient from task {task}"
        assert grad[task].abs().sum() > 0, f"{name}[{task}] got no gradient"


# --- 5. decoder causality; position 0 sees the prompts ------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_decoder_causality_and_prompt_visibility(variant):
    model = make_model(variant).eval()
    ids, mask, labels = batch()
    task_ids = torch.tensor([0, 1, 2, 1])
    decoder_input_ids = model.base._shift_right(labels)
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids,
                          task_ids=task_ids).logits
        changed = decoder_input_ids.clone()
        changed[:, 3] = (changed[:, 3] + 7) % 384
        logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=changed, task_ids=task_ids).logits
    assert (logits[:, :3] - reference[:, :3]).abs().max() == 0  # the future does not leak
    assert (logits[:, 3:] - reference[:, 3:]).abs().max() > 0

    seen = {}

    def observer(slot, weights, prompt_length, **_):
        if slot is not None and slot[0] == "decoder":
            seen[slot[1]] = (weights, prompt_length)

    with torch.no_grad(), model.observe_attention(observer):
        model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids, task_ids=task_ids)
    assert sorted(seen) == [0, 1]
    for weights, prompt_length in seen.values():
        assert prompt_length == 2
        first_query = weights[:, :, 0]  # [B, h, l + T]
        assert (first_query[..., :prompt_length].sum(-1) > 0).all()  # all prompts visible at position 0
        assert first_query[..., prompt_length + 1:].abs().max() == 0  # no later real token visible


def test_decoder_position_zero_depends_on_decoder_prompts():
    model = make_model("share").eval()
    ids, mask, labels = batch()
    task_ids = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits[:, 0]
        model.hyperprompt.prompts["decoder"][0].add_(1.0)
        after = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits[:, 0]
    assert (after - before).abs().max() > 1e-4


# --- 6. generation ------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_generate_cache_equals_no_cache_and_beams_follow_tasks(variant):
    model = make_model(variant).eval()
    ids, mask, _ = batch(batch_size=4)
    task_ids = torch.tensor([0, 2, 1, 2])
    with_cache = model.generate(input_ids=ids, attention_mask=mask, task_ids=task_ids, max_new_tokens=6,
                                do_sample=False)
    without = model.generate(input_ids=ids, attention_mask=mask, task_ids=task_ids, max_new_tokens=6,
                             do_sample=False, use_cache=False)
    assert torch.equal(with_cache, without)

    beams = model.generate(input_ids=ids, attention_mask=mask, task_ids=task_ids, max_new_tokens=5, num_beams=3,
                           num_return_sequences=2, do_sample=False)
    assert beams.shape[0] == 8
    for row in range(4):  # each example's beams equal a single-example run with its own task
        alone = model.generate(input_ids=ids[row:row + 1], attention_mask=mask[row:row + 1],
                               task_ids=task_ids[row:row + 1], max_new_tokens=5, num_beams=3,
                               num_return_sequences=2, do_sample=False)
        got = beams[2 * row:2 * row + 2]
        assert torch.equal(got[:, :alone.shape[1]], alone)


def test_greedy_generate_matches_teacher_forced_argmax():
    model = make_model("global").eval()
    ids, mask, _ = batch(batch_size=3)
    task_ids = torch.tensor([1, 0, 2])
    generated = model.generate(input_ids=ids, attention_mask=mask, task_ids=task_ids, max_new_tokens=4,
                               min_new_tokens=4, do_sample=False)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=generated[:, :-1], task_ids=task_ids).logits
    assert torch.equal(logits.argmax(-1), generated[:, 1:])


def test_eval_table_cache_reused_and_invalidated():
    model = make_model("global").eval()
    ids, mask, labels = batch()
    task_ids = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        first = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits
        cached = model._table_cache[1]
        model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids)
        assert model._table_cache[1] is cached
        model.hyperprompt.down_generator.mul_(2.0)  # a weight change must drop the cache
        second = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits
    assert (second - first).abs().max() > 1e-4
    fresh = copy.deepcopy(model)
    fresh._table_cache = None
    with torch.no_grad():
        assert torch.allclose(fresh(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits,
                              second, atol=1e-6)
    model.train()
    assert model._table_cache is None


# --- 7. save / load -----------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("freeze", [False, True])
def test_save_load_identical_logits(tmp_path, variant, freeze):
    model = make_model(variant, freeze_backbone=freeze).eval()
    ids, mask, labels = batch()
    task_ids = torch.tensor([2, 1, 0, 1])
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits
    model.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == [
        "backbone", "method_config.json", "method_weights.safetensors"]
    loaded = MultiTaskT5.from_pretrained(tmp_path / "saved").eval()
    assert isinstance(loaded, HyperPromptModel) and loaded.config == model.config
    with torch.no_grad():
        got = loaded(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits
    assert torch.equal(got, expected)
    trainable = {n for n, p in loaded.named_parameters() if p.requires_grad}
    assert all(not n.startswith("base.") for n in trainable) == freeze


def test_save_without_backbone(tmp_path):
    model = make_model("sep").eval()
    model.save_pretrained(tmp_path / "adapter", save_backbone=False)
    assert not (tmp_path / "adapter" / "backbone").exists()
    with pytest.raises(ValueError, match="pass base_model"):
        HyperPromptModel.from_pretrained(tmp_path / "adapter")
    loaded = HyperPromptModel.from_pretrained(tmp_path / "adapter", base_model=copy.deepcopy(model.base)).eval()
    ids, mask, labels = batch()
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=[0, 1, 2, 0]).logits
        b = loaded(input_ids=ids, attention_mask=mask, labels=labels, task_ids=[0, 1, 2, 0]).logits
    assert torch.equal(a, b)


def test_save_overwrites_atomically(tmp_path):
    model = make_model("share")
    model.save_pretrained(tmp_path / "ckpt")
    model.hyperprompt.prompts["encoder"].data.add_(1.0)
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp or backup directory left
    loaded = HyperPromptModel.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(loaded.hyperprompt.prompts["encoder"], model.hyperprompt.prompts["encoder"])


# --- 8. parameter counts ------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("apply_to", ["both", "encoder", "decoder"])
def test_parameter_formula_matches_modules(variant, apply_to):
    base = T5ForConditionalGeneration(t5_config("t5-tiny", d_kv=24, num_decoder_layers=3))  # h*d_kv != d_model
    model = make_model(variant, base, apply_to=apply_to, bottleneck_dim=5)
    counted = sum(p.numel() for p in model.hyperprompt.parameters())
    assert model.num_added_parameters() == counted
    assert added_parameters(model.config, BackboneShape.from_config(base.config)) == counted


# --- 9. learning: hyper-prompts resolve a task conflict that plain MTL cannot --------------------

def conflict_data(num: int, generator: torch.Generator):
    """Inputs: 4 letters from 'abcdef' (ByT5 ids: byte + 3) and eos. Task 0 answers the largest
    letter, task 1 the smallest: the same input needs different targets per task."""
    letters = torch.randint(0, 6, (num, 4), generator=generator)
    input_ids = torch.cat([letters + ord("a") + 3, torch.ones(num, 1, dtype=torch.long)], dim=1)
    targets = torch.stack([letters.max(1).values, letters.min(1).values]) + ord("a") + 3  # [task, num]
    return input_ids, targets, targets[0] != targets[1]


def train_and_score(model, steps: int = 200):
    generator = torch.Generator().manual_seed(0)
    train_ids, train_targets, _ = conflict_data(512, generator)
    test_ids, test_targets, conflict = conflict_data(256, generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, 512, (64,), generator=generator)
        tasks = torch.randint(0, 2, (64,), generator=generator)
        labels = torch.stack([train_targets[tasks, rows], torch.ones(64, dtype=torch.long)], dim=1)
        loss = model(input_ids=train_ids[rows], attention_mask=torch.ones_like(train_ids[rows]), labels=labels,
                     task_ids=tasks).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    accuracy = {}
    for task in range(2):
        out = model.generate(input_ids=test_ids, attention_mask=torch.ones_like(test_ids),
                             task_ids=torch.full((256,), task), max_new_tokens=2, do_sample=False)
        correct = out[:, 1] == test_targets[task]
        accuracy[task] = (correct.float().mean().item(), correct[conflict].float().mean().item())
    return accuracy


def test_hyperprompt_solves_task_conflict_that_mtl_cannot():
    config = dict(num_layers=2, d_model=64, dropout_rate=0.0)
    hyper = HyperPromptModel.from_base(
        T5ForConditionalGeneration(t5_config("t5-tiny", **config)),
        HyperPromptConfig(task_names=["largest", "smallest"], variant="global", encoder_prompt_length=4,
                          decoder_prompt_length=2),
    )
    torch.manual_seed(0)
    plain = MultiTaskT5.from_base(T5ForConditionalGeneration(t5_config("t5-tiny", **config)),
                                  HyperPromptConfig.registry["mtl"](task_names=["largest", "smallest"]))
    hyper_acc = train_and_score(hyper)
    plain_acc = train_and_score(plain)
    for task in range(2):
        assert hyper_acc[task][0] >= 0.99, hyper_acc
    # without task conditioning one answer serves both tasks: on conflicting items the two tasks'
    # accuracies sum to at most 1 (chance is 0.5 each when the model picks one of the two letters)
    assert plain_acc[0][1] + plain_acc[1][1] <= 1.0 + 1e-6, plain_acc
    assert min(plain_acc[0][1], plain_acc[1][1]) <= 0.6, plain_acc


# --- input validation ---------------------------------------------------------------------------

def test_bad_task_ids_and_names_give_clear_errors():
    model = make_model("global")
    ids, mask, labels = batch()
    with pytest.raises(ValueError, match="task_ids is required"):
        model(input_ids=ids, attention_mask=mask, labels=labels)
    with pytest.raises(ValueError, match=r"out of range.*0\.\.2"):
        model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match=r"out of range"):
        model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=torch.tensor([0, -1, 1, 0]))
    with pytest.raises(ValueError, match=r"shape \[batch\] = \[4\]"):
        model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer tensor"):
        model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=torch.tensor([0.0, 1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="unknown task 'alpah'.*'alpha'"):
        model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=["alpah", "beta", "beta", "beta"])
    with pytest.raises(ValueError, match="task_ids is required"):
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=2)


def test_bad_config_and_model_class_give_clear_errors():
    with pytest.raises(ValueError, match="variant='shared' is not valid.*'global', 'share', 'sep'"):
        HyperPromptConfig(task_names=["a"], variant="shared")
    with pytest.raises(ValueError, match="apply_to"):
        HyperPromptConfig(task_names=["a"], apply_to="all")
    with pytest.raises(ValueError, match="task_names is empty"):
        HyperPromptConfig(task_names=[])
    with pytest.raises(ValueError, match="unknown key.*prompt_len"):
        HyperPromptConfig.from_dict({"method": "hyperprompt-global", "task_names": ["a"], "prompt_len": 3})
    encoder_only = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=16))
    with pytest.raises(ValueError, match="unsupported model class BertModel.*T5ForConditionalGeneration"):
        HyperPromptModel.from_base(encoder_only, HyperPromptConfig(task_names=["a"]))


# --- other backbones and options ----------------------------------------------------------------

@pytest.mark.parametrize("apply_to", ["encoder", "decoder"])
def test_apply_to_one_stack(apply_to):
    base = tiny_base()
    plain = copy.deepcopy(base)
    model = make_model("global", base, apply_to=apply_to).eval()
    assert set(model.hyperprompt.prompts) == {apply_to}
    ids, mask, labels = batch()
    with torch.no_grad():
        plain_encoder = plain.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        prompted = model.base.encoder(input_ids=ids, attention_mask=mask,
                                      **model.conditioning_inputs(torch.tensor([0, 1, 2, 0]), {}))
    same = torch.allclose(prompted.last_hidden_state, plain_encoder, atol=1e-6)
    assert same == (apply_to == "decoder")


def test_gated_gelu_mt5_and_wide_attention_backbones():
    from transformers import MT5Config, MT5ForConditionalGeneration

    mt5 = MT5ForConditionalGeneration(MT5Config(vocab_size=100, d_model=32, d_kv=16, num_heads=4, d_ff=64,
                                                num_layers=2, feed_forward_proj="gated-gelu",
                                                decoder_start_token_id=0, dropout_rate=0.0))
    wide = tiny_base(d_kv=40)  # h * d_kv = 160 != d_model = 64, like t5-3b / t5-11b
    for base in (mt5, wide):
        model = HyperPromptModel.from_base(base, HyperPromptConfig(task_names=["a", "b"]))
        ids = torch.randint(3, 100, (2, 7))
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids[:, :3].contiguous(), task_ids=[0, 1])
        out.loss.backward()
        assert torch.isfinite(out.loss)
        prompts = model.task_prompts(1)
        assert prompts["encoder"].shape == (2, 2, base.config.num_heads, 16, base.config.d_kv)


def training_gradients(model) -> dict[str, torch.Tensor]:
    """Gradients of one mixed-task training batch, keyed by parameter name (checkpoint wrappers left out)."""
    torch.manual_seed(0)  # the same batch on every call
    ids, mask, labels = batch()
    model.train()
    model.zero_grad(set_to_none=True)
    model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=torch.tensor([0, 1, 2, 1])).loss.backward()
    return {n.replace("._checkpoint_wrapped_module", ""): p.grad.clone()
            for n, p in model.named_parameters() if p.grad is not None}


def assert_same_gradients(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        assert torch.allclose(got[name], grad, atol=1e-6), name


def test_gradient_checkpointing_gives_same_gradients():
    model = make_model("global")
    reference = training_gradients(model)
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    assert_same_gradients(training_gradients(model), reference)


def test_blocks_wrapped_for_activation_checkpointing_give_same_gradients():
    """torch's checkpoint wrapper around each T5Block (what FSDP2 uses) recomputes blocks in backward;
    a recomputed decoder block must not append its keys to a KV cache a second time."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointImpl,
        apply_activation_checkpointing,
        checkpoint_wrapper,
    )
    from transformers.models.t5.modeling_t5 import T5Block

    model = make_model("global")
    reference = training_gradients(model)
    wrap = lambda module: checkpoint_wrapper(module, checkpoint_impl=CheckpointImpl.NO_REENTRANT)  # noqa: E731
    apply_activation_checkpointing(model, checkpoint_wrapper_fn=wrap, check_fn=lambda m: isinstance(m, T5Block))
    assert_same_gradients(training_gradients(model), reference)


def test_initialisation_gives_unit_scale_prompts_for_every_variant():
    for variant in VARIANTS:
        model = make_model(variant, base=tiny_base(d_model=256, num_heads=8, d_kv=32))
        with torch.no_grad():
            tables = model.hyperprompt(torch.arange(3))
        for table in tables.values():
            assert 0.5 < table.std().item() < 2.0, (variant, table.std().item())
