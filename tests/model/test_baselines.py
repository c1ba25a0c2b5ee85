"""The baselines behind the MultiTaskT5 interface: routing, isolation, save/load, generation, parameter counts,
and each method's computation against an independent naive one."""

from __future__ import annotations

import argparse
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from transformers import T5ForConditionalGeneration
from transformers.activations import ACT2FN

from hyperprompt.cli import params as params_command
from hyperprompt.model import (
    AdapterModel,
    HyperFormerModel,
    MethodConfig,
    MultiTaskT5,
    PrefixTuningModel,
    PromptTuningModel,
)
from hyperprompt.model.hyperprompt import PromptState
from hyperprompt.model.params import ADDED_PARAMETER_FORMULAS, BackboneShape, added_parameters
from hyperprompt.model.presets import t5_config

TASKS = ["alpha", "beta", "gamma"]
BASELINES = ["mtl", "prompt-tuning", "prefix-tuning", "prefix-tuning-self", "adapter", "hyperformer++"]
ALL_METHODS = [*BASELINES, "hyperprompt-share", "hyperprompt-sep", "hyperprompt-global"]
SMALL = {  # short prompts keep the tests fast; everything else at its default
    "prompt-tuning": {"prompt_length": 3},
    "prefix-tuning": {"encoder_prompt_length": 3, "decoder_prompt_length": 2, "cross_prompt_length": 4,
                      "reparameterization_hidden_dim": 16},
    "prefix-tuning-self": {"encoder_prompt_length": 3, "decoder_prompt_length": 2},
    "hyperprompt-share": {"encoder_prompt_length": 3, "decoder_prompt_length": 2},
    "hyperprompt-sep": {"encoder_prompt_length": 3, "decoder_prompt_length": 2},
    "hyperprompt-global": {"encoder_prompt_length": 3, "decoder_prompt_length": 2},
}


def tiny_base(**overrides) -> T5ForConditionalGeneration:
    overrides.setdefault("dropout_rate", 0.0)
    return T5ForConditionalGeneration(t5_config("t5-tiny", **overrides))


def make_model(method: str, base=None, **settings) -> MultiTaskT5:
    base = base if base is not None else tiny_base()
    config = MethodConfig.from_dict({"method": method, "task_names": TASKS, **SMALL.get(method, {}), **settings})
    return MultiTaskT5.registry[method].from_base(base, config)


def batch(batch_size: int = 4, length: int = 9, target: int = 5):
    input_ids = torch.randint(3, 384, (batch_size, length))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, length - 3:] = 0  # right padding
    input_ids[0, length - 3:] = 0
    labels = torch.randint(3, 384, (batch_size, target))
    return input_ids, attention_mask, labels


# --- one interface ------------------------------------------------------------------------------

def test_every_method_is_registered_and_reported_by_params(capsys):
    for method in ALL_METHODS:
        assert method in MethodConfig.registry and method in MultiTaskT5.registry
        assert method in ADDED_PARAMETER_FORMULAS
    parser = argparse.ArgumentParser()
    params_command.add_parser(parser.add_subparsers())  # `hyperprompt params`
    args = parser.parse_args(["params", "--model", "t5-base", "--json"] + [f"--method={m}" for m in ALL_METHODS])
    assert params_command.run(args) == 0
    rows = {row["method"]: row for row in json.loads(capsys.readouterr().out)["rows"]}
    assert set(rows) == set(ALL_METHODS)
    assert rows["mtl"]["added_parameters"] == 0
    for method in ALL_METHODS[1:]:
        assert 0 < rows[method]["added_percent"] < 100


def test_params_counts_the_released_checkpoints_shapes(capsys):
    """The parameters of the released checkpoints (from their shapes: vocab 32128, their config.json):
    T5 v1.1 has an LM head apart from the embedding, which transformers 5 would build tied."""
    from hyperprompt.cli.main import main

    assert main(["params", "--model", "t5-base", "--model", "t5-v1_1-small", "--model", "t5-v1_1-base",
                 "--model", "t5-v1_1-large", "--method", "hyperprompt-global", "--json"]) == 0
    rows = {row["model"]: row["backbone_parameters"] for row in json.loads(capsys.readouterr().out)["rows"]}
    embedding = 32128 * 768
    assert rows["t5-v1_1-base"] == 222_903_552 + embedding == 247_577_856
    assert rows["t5-base"] == 222_903_552  # v1.0: tied, as its checkpoint
    assert rows["t5-v1_1-small"] == 76_961_152 and rows["t5-v1_1-large"] == 783_150_080


def test_params_counts_description_conditioned_global(capsys):
    """``--set task_conditioning=description``: no descriptions are needed to count (e is [T, 384])."""
    from hyperprompt.cli.main import main

    counts = {}
    for conditioning in ("embedding", "description"):
        assert main(["params", "--model", "t5-base", "--method", "hyperprompt-global", "--tasks", "8", "--json",
                     "--set", f"task_conditioning={conditioning}", "--set", "global_prompts=per-task"]) == 0
        counts[conditioning] = json.loads(capsys.readouterr().out)["rows"][0]["added_parameters"]
    t_in = 64  # task_embedding_dim: k_tau [T, t'] becomes e [T, 384] (frozen) + W_p [384, t'] + b_p [t']
    assert counts["description"] - counts["embedding"] == 8 * 384 + 384 * t_in + t_in - 8 * t_in


@pytest.mark.parametrize("method", BASELINES)
def test_forward_backward_on_mixed_batch(method):
    base = tiny_base()
    plain = copy.deepcopy(base)
    model = make_model(method, base)
    ids, mask, labels = batch(batch_size=5)
    task_ids = torch.tensor([0, 2, 1, 0, 2])
    out = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for name, parameter in model.added_named_parameters():  # every added weight is used
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    with torch.no_grad():
        reference = plain(input_ids=ids, attention_mask=mask, labels=labels).logits
        with model.conditioning_disabled():
            disabled = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits
        for task in range(3):  # a mixed batch == each task's rows alone
            rows = (task_ids == task).nonzero().flatten()
            alone = model(input_ids=ids[rows], attention_mask=mask[rows], labels=labels[rows],
                          task_ids=task_ids[rows]).logits
            assert (out.logits[rows] - alone).abs().max() <= 1e-5
    assert (disabled - reference).abs().max() <= 1e-6
    changed = (out.logits.detach() - reference).abs().max() > 1e-4
    assert changed == (method != "mtl")


@pytest.mark.parametrize("method", BASELINES[1:])
def test_gradient_isolation(method):
    model = make_model(method)
    ids, mask, labels = batch()
    task = 1
    model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=torch.full((4,), task)).loss.backward()
    per_task = model.per_task_parameters()
    expected = {"prompt-tuning": {"prompts"},
                "prefix-tuning": {"prompts.encoder", "prompts.decoder", "prompts.cross"},
                "prefix-tuning-self": {"prefixes.encoder", "prefixes.decoder"},
                "adapter": {f"adapters.{s}.{n}" for s in ("encoder", "decoder")
                            for n in ("down_weight", "down_bias", "up_weight", "up_bias", "norm_weight", "norm_bias")},
                "hyperformer++": {"task_embedding"}}[method]
    assert set(per_task) == expected
    for name, parameter in per_task.items():
        assert parameter.shape[0] == len(TASKS)
        for other in range(len(TASKS)):
            if other != task:
                assert torch.count_nonzero(parameter.grad[other]) == 0, f"{name}[{other}] got gradient"
        assert parameter.grad[task].abs().sum() > 0, f"{name}[{task}] got no gradient"


@pytest.mark.parametrize("method", BASELINES)
@pytest.mark.parametrize("freeze", [False, True])
def test_save_load_round_trip(tmp_path, method, freeze):
    model = make_model(method, freeze_backbone=freeze).eval()
    ids, mask, labels = batch()
    task_ids = torch.tensor([2, 1, 0, 1])
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits
    model.save_pretrained(tmp_path / "saved")
    loaded = MultiTaskT5.from_pretrained(tmp_path / "saved").eval()
    assert type(loaded) is type(model) and loaded.config == model.config
    assert json.loads((tmp_path / "saved" / "method_config.json").read_text())["method"] == method
    with torch.no_grad():
        got = loaded(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits
    assert torch.equal(got, expected)
    trainable = {n for n, p in loaded.named_parameters() if p.requires_grad}
    assert {n for n in trainable if not n.startswith("base.")} == {n for n, _ in loaded.added_named_parameters()}
    trained_backbone = {n for n in trainable if n.startswith("base.")}
    if not freeze:
        assert trained_backbone == {n for n, _ in loaded.named_parameters() if n.startswith("base.")}
    elif method in ("adapter", "hyperformer++"):  # Houlsby / the HyperFormer code train the layer norms
        assert trained_backbone and all("layer_norm" in n for n in trained_backbone)
        assert trained_backbone == {n for n, _ in loaded.base.named_parameters(prefix="base") if "layer_norm" in n}
    else:
        assert not trained_backbone


@pytest.mark.parametrize("method", BASELINES)
def test_generate_with_task_ids(method):
    model = make_model(method).eval()
    ids, mask, _ = batch(batch_size=3)
    task_ids = torch.tensor([2, 0, 1])
    greedy = model.generate(input_ids=ids, attention_mask=mask, task_ids=task_ids, max_new_tokens=4,
                            min_new_tokens=4, do_sample=False)
    no_cache = model.generate(input_ids=ids, attention_mask=mask, task_ids=task_ids, max_new_tokens=4,
                              min_new_tokens=4, do_sample=False, use_cache=False)
    assert torch.equal(greedy, no_cache)
    with torch.no_grad():  # greedy tokens are the teacher-forced argmax
        logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=greedy[:, :-1], task_ids=task_ids).logits
    assert torch.equal(logits.argmax(-1), greedy[:, 1:])
    beams = model.generate(input_ids=ids, attention_mask=mask, task_ids=["gamma", "alpha", "beta"], max_new_tokens=3,
                           num_beams=2, num_return_sequences=2, do_sample=False)
    assert beams.shape[0] == 6
    for row in range(3):  # each example's beams follow its own task
        alone = model.generate(input_ids=ids[row:row + 1], attention_mask=mask[row:row + 1],
                               task_ids=task_ids[row:row + 1], max_new_tokens=3, num_beams=2,
                               num_return_sequences=2, do_sample=False)
        assert torch.equal(beams[2 * row:2 * row + 2, :alone.shape[1]], alone)


# --- parameter accounting -----------------------------------------------------------------------

@pytest.mark.parametrize("method,settings", [
    ("mtl", {}),
    ("prompt-tuning", {"prompt_length": 7}),
    ("prefix-tuning", {}),
    ("prefix-tuning", {"apply_to": "encoder", "cross_attention": False}),
    ("prefix-tuning", {"apply_to": "decoder", "reparameterization_hidden_dim": 11}),
    ("prefix-tuning", {"reparameterize": False}),
    ("prefix-tuning-self", {}),
    ("prefix-tuning-self", {"apply_to": "decoder", "reparameterize": True, "reparameterization_hidden_dim": 11}),
    ("adapter", {}),
    ("adapter", {"bottleneck_dim": 5}),
    ("adapter", {"layer_norm": False}),
    ("hyperformer++", {}),
    ("hyperformer++", {"conditional_layer_norm": False, "bottleneck_dim": 3, "task_embedding_dim": 6,
                       "projected_task_embedding_dim": 5, "task_hidden_dim": 7}),
    ("hyperformer++", {"task_projector": True, "bottleneck_dim": 3, "task_embedding_dim": 6,
                       "projected_task_embedding_dim": 5, "task_hidden_dim": 7}),
])
def test_parameter_formula_matches_modules(method, settings):
    base = T5ForConditionalGeneration(t5_config("t5-tiny", d_kv=24, num_decoder_layers=3))  # h*d_kv != d_model
    model = make_model(method, base, **settings)
    counted = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("base."))
    assert model.num_added_parameters() == counted
    assert added_parameters(model.config, BackboneShape.from_config(base.config)) == counted


# --- each method against a naive computation ----------------------------------------------------

def test_prompt_tuning_equals_prompt_prepended_to_embeddings():
    model = make_model("prompt-tuning", prompt_length=4).eval()
    assert isinstance(model, PromptTuningModel) and model.prompts.shape == (3, 4, 64)
    ids, mask, labels = batch()
    task_ids = torch.tensor([1, 0, 2, 1])
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits
        embeds = torch.cat([model.prompts[task_ids], model.base.shared(ids)], dim=1)
        full_mask = torch.cat([torch.ones(4, 4, dtype=mask.dtype), mask], dim=1)
        expected = model.base(inputs_embeds=embeds, attention_mask=full_mask, labels=labels).logits
    assert torch.equal(got, expected)


def test_prompt_tuning_vocab_init_copies_embedding_rows():
    model = make_model("prompt-tuning", prompt_length=5, vocab_init_size=50)
    rows = model.base.shared.weight[:50]
    for prompt in model.prompts.reshape(-1, 64):
        assert (rows == prompt).all(dim=1).any()
    uniform = make_model("prompt-tuning", init="uniform", uniform_init_range=0.25)
    assert uniform.prompts.abs().max() <= 0.25


@pytest.mark.parametrize("reparameterize", [False, True])
def test_prefix_tuning_delivers_each_tasks_prefixes(reparameterize):
    model = make_model("prefix-tuning", reparameterize=reparameterize, reparameterization_hidden_dim=8)
    assert isinstance(model, PrefixTuningModel)
    task_ids = torch.tensor([2, 0, 2])
    inputs = model.conditioning_inputs(task_ids, {})
    state: PromptState = inputs["prompt_state"]
    h, d_kv = 4, 16
    for stack, length in (("encoder", 3), ("decoder", 2), ("cross", 4)):
        for layer in range(2):
            keys, values = state.layer_prompts((stack, layer), inputs["prompt_row_index"], 3)
            assert keys.shape == (3, h, length, d_kv)
            for row, task in enumerate(task_ids.tolist()):
                if reparameterize:  # Li & Liang: one MLP maps P'_tau to every layer's keys and values
                    mlp = model.reparameterization[stack]
                    out = mlp[2](torch.tanh(mlp[0](model.prompts[stack][task])))  # [l, M * 2 * h * d_kv]
                    expected = out.reshape(length, 2, 2, h, d_kv)[:, layer].permute(1, 2, 0, 3)  # [2, h, l, d_kv]
                else:
                    expected = model.prefixes[stack][task, layer]
                assert torch.allclose(keys[row], expected[0], atol=1e-6)
                assert torch.allclose(values[row], expected[1], atol=1e-6)


@pytest.mark.parametrize("kind", ["decoder", "cross"])
def test_prefix_tuning_reaches_decoder_position_zero_and_apply_to(kind):
    model = make_model("prefix-tuning", reparameterize=False).eval()
    ids, mask, labels = batch()
    task_ids = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits[:, 0]
        model.prefixes[kind][0].add_(1.0)
        after = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits[:, 0]
    assert (after - before).abs().max() > 1e-4
    assert set(make_model("prefix-tuning", apply_to="encoder", cross_attention=False).prompts) == {"encoder"}
    assert set(make_model("prefix-tuning-self").prefixes) == {"encoder", "decoder"}


def test_cross_attention_prefixes_equal_a_naive_cross_attention():
    """Decoder layer 0's cross-attention with the prefix prepended to the encoder's keys and values,
    computed by hand from the module's own projections (T5: no scaling, no position bias in cross-attention)."""
    model = make_model("prefix-tuning").eval()
    ids, mask, labels = batch()
    task_ids = torch.tensor([1, 2, 0, 1])
    attention = model.base.decoder.block[0].layer[1].EncDecAttention
    captured = {}
    attention.register_forward_hook(lambda m, args, kwargs, out: captured.update(
        hidden=args[0], states=kwargs["key_value_states"], out=out[0]), with_kwargs=True)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids)
        prefixes = model.prefix_tables()["cross"][0]  # [T, 2, h, l, d_kv]
        B, q, _ = captured["hidden"].shape
        h, d_kv = 4, 16

        def heads(x):
            return x.view(B, -1, h, d_kv).transpose(1, 2)

        query = heads(attention.q(captured["hidden"]))
        key = torch.cat([prefixes[task_ids, 0], heads(attention.k(captured["states"]))], dim=2)
        value = torch.cat([prefixes[task_ids, 1], heads(attention.v(captured["states"]))], dim=2)
        scores = query @ key.transpose(2, 3)
        keep = torch.cat([torch.ones(B, 4, dtype=torch.bool), mask.bool()], dim=1)  # prefixes never masked
        scores = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
        expected = attention.o((scores.softmax(-1) @ value).transpose(1, 2).reshape(B, q, h * d_kv))
    assert (captured["out"] - expected).abs().max() <= 1e-5


def test_prefix_dropout_acts_in_training_only():
    model = make_model("prefix-tuning", prefix_dropout=0.5)
    model.train()
    dropped = model.prefix_tables()["encoder"]
    assert (dropped == 0).float().mean() > 0.3
    model.eval()
    assert (model.prefix_tables()["encoder"] != 0).all()
    with pytest.raises(ValueError, match="prefix_dropout"):
        make_model("prefix-tuning", prefix_dropout=1.0)


def naive_adapter_weights(model, task: int, stack: str, layer: int, position: int) -> dict[str, torch.Tensor]:
    """One adapter's weights, read (adapter) or generated with plain ops (hyperformer++)."""
    if isinstance(model, AdapterModel):
        return {name: p[task, layer, position] for name, p in model.adapters[stack].items()}
    net = model.hypernetworks[stack]
    k = model.task_embedding[task]
    if model.config.task_projector:
        k = model.task_projector(k)
    joint = torch.cat([k, net.layer_embedding[layer], net.position_embedding[position]])
    hidden = torch.relu(joint @ net.mixer[0].weight.T + net.mixer[0].bias) @ net.mixer[2].weight.T + net.mixer[2].bias
    mixed = F.layer_norm(hidden, hidden.shape, net.mixer_norm.weight, net.mixer_norm.bias, eps=1e-6)
    d, r = net.d_model, net.bottleneck
    m = 1.0 / net.mixer_norm.normalized_shape[0] if model.config.scale_generators else 1.0  # 1/t
    down = m * net.down_generator.weight @ mixed + net.down_generator.bias
    up = m * net.up_generator.weight @ mixed + net.up_generator.bias
    weights = {"down_weight": down[:r * d].reshape(r, d), "down_bias": down[r * d:],
               "up_weight": up[:d * r].reshape(d, r), "up_bias": up[d * r:]}
    if net.norm_generator is not None:
        norm = m * net.norm_generator.weight @ mixed + net.norm_generator.bias
        weights["norm_weight"], weights["norm_bias"] = norm[:d], norm[d:]
    return weights


def naive_adapter(x: torch.Tensor, weights: dict[str, torch.Tensor], activation: str) -> torch.Tensor:
    """x + U act(D x + b_D) + b_U (then gamma * LN(.) + beta on the adapter output, if generated)."""
    out = ACT2FN[activation](x @ weights["down_weight"].T + weights["down_bias"]) @ weights["up_weight"].T
    out = out + weights["up_bias"]
    if "norm_weight" in weights:
        out = F.layer_norm(out, out.shape[-1:]) * weights["norm_weight"] + weights["norm_bias"]
    return x + out


@pytest.mark.parametrize(("method", "settings"), [("adapter", {}), ("hyperformer++", {}),
                                                  ("hyperformer++", {"task_projector": True}),
                                                  ("hyperformer++", {"scale_generators": True})])
def test_adapters_match_naive_sublayers(method, settings):
    model = make_model(method, **settings).eval()
    if settings.get("scale_generators"):  # away from the start, where W / t would hide a missing multiplier
        for net in model.hypernetworks.values():
            for generator in (net.down_generator, net.up_generator, net.norm_generator):
                generator.bias.data.normal_(std=0.1)
    if method == "adapter":  # move the adapters (and their layer norms) away from the start
        for params in model.adapters.values():
            for p in params.values():
                p.data.normal_(mean=1.0 if p.dim() == 4 and p is params.get("norm_weight") else 0.0, std=0.3)
    ids, mask, labels = batch()
    task_ids = torch.tensor([2, 0, 1, 2])
    captured = {}

    def capture(name):
        return lambda module, args, output: captured.update({name: (args[0], output)})

    for name, module in (("encoder_ff", model.base.encoder.block[1].layer[-1]),
                         ("decoder_ff", model.base.decoder.block[0].layer[-1]),
                         ("encoder_attention", model.base.encoder.block[0].layer[0])):
        module.register_forward_hook(capture(name))
    with torch.no_grad():
        with model.conditioning_disabled():  # encoder layer 0 sees the same input with and without adapters
            model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids)
        x, output = captured["encoder_attention"]
        plain_attention = output[0] - x  # SelfAttention(LN(x)) before the residual
        model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids)
        checks = [("encoder_attention", "encoder", 0, 0), ("encoder_ff", "encoder", 1, 1), ("decoder_ff", "decoder", 0, 1)]
        for name, stack, layer, position in checks:
            x, output = captured[name]
            if position == 0:
                sublayer_output, output = plain_attention, output[0]
            else:
                ff = getattr(model.base, stack).block[layer].layer[-1]
                sublayer_output = ff.DenseReluDense(ff.layer_norm(x))  # the hooks are idle outside a block
            for row, task in enumerate(task_ids.tolist()):
                weights = naive_adapter_weights(model, task, stack, layer, position)
                expected = x[row] + naive_adapter(sublayer_output[row], weights, model.config.activation)
                assert (output[row] - expected).abs().max() <= 1e-5, (name, row)


def test_hyperformer_generates_for_distinct_tasks_and_caches_in_eval():
    model = make_model("hyperformer++")
    assert isinstance(model, HyperFormerModel)
    calls = []
    model.hypernetworks["encoder"].mixer.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    ids, mask, labels = batch()
    model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=torch.tensor([2, 0, 2, 2]))
    assert calls == [2]
    model.eval()
    with torch.no_grad():
        first = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=[0, 1, 2, 0]).logits
        model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=[0, 1, 2, 0])
        assert calls == [2, 3]  # all tasks once, then cached
        model.task_embedding.mul_(2.0)  # a weight change drops the cache
        second = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=[0, 1, 2, 0]).logits
    assert calls == [2, 3, 3] and (second - first).abs().max() > 1e-5


def test_hyperformer_defaults_to_the_authors_released_configuration():
    """rabeehk/hyperformer's HyperFormer++ (efficient_unique_hyper_net, train_task_embeddings left false): the
    raw task embedding feeds the mixer. Its modules counted here from the authors' module definitions for
    t5-base (d 768, 12 + 12 layers), 8 tasks, task / projected embeddings 64, hidden 128, reduction 32."""
    config = MethodConfig.from_dict({"method": "hyperformer++", "task_names": [f"t{i}" for i in range(8)]})
    assert config.task_projector is False
    d, r, t, hidden, layers = 768, 768 // 32, 64, 128, 12
    task_embeddings = 8 * t  # TaskEmbeddingController: one nn.Parameter(t) per task, no TaskHyperNet
    per_stack = (
        layers * t + 2 * t  # layer_id_embeddings, adapters_block_type
        + (3 * t * hidden + hidden) + (hidden * t + t)  # task_hypernet = TaskHyperNet(3t -> hidden -> t)
        + 2 * t  # LayerNorm(projected) (unique_hyper_net_layer_norm)
        + (t * d * r + d * r) + (t * d + d)  # up_sampler_hyper_net: weight [d, r] and bias [d] generators
        + (t * r * d + r * d) + (t * r + r)  # down_sampler_hyper_net: weight [r, d] and bias [r]
        + 2 * (t * d + d)  # post_layernorm_hypernet (LayerNormHyperNet): gamma and beta generators
    )
    shape = BackboneShape.from_config(t5_config("t5-base"))
    assert added_parameters(config, shape) == task_embeddings + 2 * per_stack
    model = make_model("hyperformer++")
    assert model.task_projector is None


def test_hyperformer_scaled_generators_start_the_same_and_step_t_times_less():
    """``scale_generators`` is a reparameterisation: from the same seed the generated adapters are the same at
    init, and one Adam step on the generators moves them t times less (W I / t with W t times larger)."""
    tables, steps = {}, {}
    ids, mask, labels = batch()
    task_ids = torch.tensor([0, 1, 2, 0])
    for scaled in (False, True):
        torch.manual_seed(0)
        model = make_model("hyperformer++", base=tiny_base(), scale_generators=scaled)
        assert model.config.label == ("hyperformer++ (1/t generators)" if scaled else "hyperformer++")
        generators = [p for n, p in model.named_parameters() if "_generator.weight" in n]
        for p in model.parameters():
            p.requires_grad_(any(p is g for g in generators))
        before = model.generate_adapters(torch.arange(3))["encoder"]
        optimizer = torch.optim.AdamW(generators, lr=1e-3, weight_decay=0.0)
        model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).loss.backward()
        optimizer.step()
        after = model.generate_adapters(torch.arange(3))["encoder"]
        tables[scaled] = before
        steps[scaled] = {name: (after[name] - before[name]).detach() for name in before}
    t = model.config.projected_task_embedding_dim
    for name, table in tables[False].items():
        assert torch.allclose(tables[True][name], table, rtol=1e-5, atol=1e-9), name
        ratio = steps[False][name].norm() / steps[True][name].norm()
        assert ratio == pytest.approx(t, rel=0.02), (name, float(ratio))


def test_a_hyperformer_saved_before_the_option_loads_with_its_projector(tmp_path):
    model = make_model("hyperformer++", task_projector=True)
    model.save_pretrained(tmp_path / "saved")
    path = tmp_path / "saved" / "method_config.json"
    saved = json.loads(path.read_text())
    del saved["task_projector"]  # what a file written before the option says
    path.write_text(json.dumps(saved))
    loaded = MultiTaskT5.from_pretrained(tmp_path / "saved")
    assert loaded.config.task_projector is True and loaded.task_projector is not None


def test_wrapping_twice_does_not_apply_adapters_twice():
    base = tiny_base()
    first = make_model("adapter", base)
    ids, mask, labels = batch()
    with torch.no_grad():
        once = first(input_ids=ids, attention_mask=mask, labels=labels, task_ids=[0, 1, 2, 0]).logits
        AdapterModel.from_base(base, first.config)
        again = first(input_ids=ids, attention_mask=mask, labels=labels, task_ids=[0, 1, 2, 0]).logits
    assert torch.equal(once, again)


# --- configuration errors -----------------------------------------------------------------------

def test_bad_settings_give_clear_errors():
    with pytest.raises(ValueError, match="init='random' is not valid"):
        MethodConfig.from_dict({"method": "prompt-tuning", "task_names": TASKS, "init": "random"})
    with pytest.raises(ValueError, match="prompt_length=0 must be a positive integer"):
        MethodConfig.from_dict({"method": "prompt-tuning", "task_names": TASKS, "prompt_length": 0})
    with pytest.raises(ValueError, match="apply_to"):
        MethodConfig.from_dict({"method": "prefix-tuning", "task_names": TASKS, "apply_to": "all"})
    with pytest.raises(ValueError, match="activation='swishy' is not known"):
        MethodConfig.from_dict({"method": "adapter", "task_names": TASKS, "activation": "swishy"})
    with pytest.raises(ValueError, match="bottleneck_dim=0"):
        MethodConfig.from_dict({"method": "hyperformer++", "task_names": TASKS, "bottleneck_dim": 0})
    with pytest.raises(ValueError, match="unknown key.*reduction_factor"):
        MethodConfig.from_dict({"method": "adapter", "task_names": TASKS, "reduction_factor": 16})
    with pytest.raises(ValueError, match="unknown method 'adapters'"):
        MethodConfig.from_dict({"method": "adapters", "task_names": TASKS})


@pytest.mark.parametrize("method", ["prompt-tuning", "prefix-tuning", "adapter", "hyperformer++"])
def test_gradient_checkpointing_gives_same_gradients(method):
    model = make_model(method)
    ids, mask, labels = batch()
    task_ids = torch.tensor([0, 1, 2, 1])
    model.train()
    model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).loss.backward()
    for name, grad in reference.items():
        # relative to the tensor's scale: the adapters' layer norm divides by the small std of a small adapter
        # output, which makes some gradients large (~8) and magnifies float noise in them (observed 7e-6)
        error = (model.get_parameter(name).grad - grad).abs().max()
        assert error <= 1e-5 * grad.abs().max() + 1e-6, (name, error)
