"""Attention statistics against analytic answers, padding, ranges, and no side effects on the model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import T5ForConditionalGeneration

from hyperprompt import HyperPromptConfig, HyperPromptModel, MultiTaskT5
from hyperprompt.analysis import analyze_attention, analyze_splits, reduce_layer
from hyperprompt.data import encode_task, get_task
from hyperprompt.model import (
    MethodConfig,
    PrefixTuningConfig,
    PrefixTuningModel,
    PromptTuningConfig,
    PromptTuningModel,
)
from hyperprompt.model.presets import t5_config
from hyperprompt.model.presets_encdec import ENCDEC_TINY_PRESETS

TASKS = ["alpha", "beta", "gamma"]
ENC_L, DEC_L = 3, 2


def tiny_base() -> T5ForConditionalGeneration:
    return T5ForConditionalGeneration(t5_config("t5-tiny", dropout_rate=0.0))


def make_model(method: str) -> MultiTaskT5:
    base = tiny_base()
    if method.startswith("hyperprompt"):
        config = HyperPromptConfig(task_names=TASKS, variant=method.split("-")[1],
                                   encoder_prompt_length=ENC_L, decoder_prompt_length=DEC_L)
        return HyperPromptModel.from_base(base, config)
    if method == "prefix-tuning":
        config = PrefixTuningConfig(task_names=TASKS, encoder_prompt_length=ENC_L, decoder_prompt_length=DEC_L,
                                    reparameterize=False)  # stored prefixes: their keys can be zeroed
        return PrefixTuningModel.from_base(base, config)
    if method == "prompt-tuning":
        return PromptTuningModel.from_base(base, PromptTuningConfig(task_names=TASKS, prompt_length=ENC_L))
    return MultiTaskT5.from_base(base, MethodConfig(task_names=TASKS))


@torch.no_grad()
def make_attention_uniform(model: MultiTaskT5) -> None:
    """All self-attention scores equal: zero key projections, zero relative position bias, zero prompt keys.
    Attention is then uniform over the l prompts and the real keys each query may see."""
    for stack in ("encoder", "decoder"):
        for block in getattr(model.base, stack).block:
            attention = block.layer[0].SelfAttention
            attention.k.weight.zero_()
            if attention.has_relative_attention_bias:
                attention.relative_attention_bias.weight.zero_()
    if isinstance(model, HyperPromptModel):
        for prompts in model.hyperprompt.prompts.values():
            prompts.zero_()  # P_tau = 0 -> U ReLU(D 0) = 0: zero prompt keys (and values)
    if isinstance(model, PrefixTuningModel):
        for prefixes in model.prefixes.values():
            prefixes[:, :, 0].zero_()  # keys only; values stay random


def padded_batch(input_lengths=(9, 5, 7, 2), target_lengths=(4, 1, 3, 6), task_ids=(0, 1, 2, 1)):
    """Right-padded batch; pad positions hold random (non-pad) ids, so only the masks can exclude them."""
    batch, source, target = len(input_lengths), max(input_lengths), max(target_lengths)
    input_ids = torch.randint(3, 384, (batch, source))
    attention_mask = (torch.arange(source)[None] < torch.tensor(input_lengths)[:, None]).long()
    labels = torch.randint(3, 384, (batch, target))
    labels[torch.arange(target)[None] >= torch.tensor(target_lengths)[:, None]] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "task_ids": torch.tensor(task_ids)}


@pytest.mark.parametrize("method", ["hyperprompt-share", "hyperprompt-global", "prefix-tuning", "mtl"])
def test_uniform_attention_gives_the_analytic_mass_and_entropy(method):
    model = make_model(method)
    make_attention_uniform(model)
    input_lengths, target_lengths = (9, 5, 7, 2), (4, 1, 3, 6)
    stats = analyze_attention(model, [padded_batch(input_lengths, target_lengths)])
    has_prompts = method != "mtl"
    enc_l, dec_l = (ENC_L, DEC_L) if has_prompts else (0, 0)
    assert stats.num_examples == 4
    assert stats.prompt_length == {"encoder": enc_l, "decoder": dec_l}

    # encoder: each of an example's n queries spreads uniformly over l + n keys
    expected_mass = np.mean([enc_l / (enc_l + n) for n in input_lengths])
    expected_entropy = np.concatenate([np.full(n, math.log(n)) for n in input_lengths])
    # decoder (causal): query j sees l prompts + j + 1 tokens; mass averaged over an example's T queries
    expected_dec_mass = np.mean([np.mean([dec_l / (dec_l + j + 1) for j in range(t)]) for t in target_lengths])
    expected_dec_entropy = np.concatenate([np.log(np.arange(1, t + 1)) for t in target_lengths])

    for layer in range(2):
        if has_prompts:
            assert stats.prompt_mass["encoder"][layer] == pytest.approx(expected_mass, abs=1e-5)
            assert stats.prompt_mass["decoder"][layer] == pytest.approx(expected_dec_mass, abs=1e-5)
        enc = stats.entropies["encoder"][layer]
        dec = stats.entropies["decoder"][layer]
        # queries come example by example, in position order
        np.testing.assert_allclose(enc, expected_entropy, atol=1e-5)
        np.testing.assert_allclose(dec, expected_dec_entropy, atol=1e-5)
    if not has_prompts:
        assert stats.prompt_mass == {"encoder": None, "decoder": None}


def test_prompt_tuning_input_prompt_counts_as_tokens_not_as_hyper_prompts():
    model = make_model("prompt-tuning")
    make_attention_uniform(model)
    stats = analyze_attention(model, [padded_batch((6, 3), (2, 2), (0, 2))])
    assert stats.prompt_mass["encoder"] is None
    expected = np.concatenate([np.full(n + ENC_L, math.log(n + ENC_L)) for n in (6, 3)])
    np.testing.assert_allclose(stats.entropies["encoder"][0], expected, atol=1e-5)


@pytest.mark.parametrize("method", ["hyperprompt-global", "mtl"])
def test_padding_never_counts(method):
    """One example alone equals the same example padded inside a batch (pad ids and the other row vary)."""
    model = make_model(method)
    batch = padded_batch((8, 4), (5, 2), (1, 1))
    alone = {key: value[1:] for key, value in batch.items()}
    alone["input_ids"], alone["attention_mask"], alone["labels"] = (
        alone["input_ids"][:, :4], alone["attention_mask"][:, :4], alone["labels"][:, :2])
    first = {key: value[:1] for key, value in batch.items()}
    both = analyze_attention(model, [batch])
    separately = analyze_attention(model, [first, alone])
    batch["input_ids"][1, 4:] = 7  # other ids at the padded positions change nothing
    again = analyze_attention(model, [batch])
    for other in (separately, again):
        for stack in ("encoder", "decoder"):
            for a, b in zip(both.entropies[stack], other.entropies[stack], strict=True):
                np.testing.assert_allclose(a, b, atol=1e-5)
            if both.prompt_mass[stack] is not None:
                np.testing.assert_allclose(both.prompt_mass[stack], other.prompt_mass[stack], atol=1e-6)
    # one value per real query and layer: 8 + 4 encoder, 5 + 2 decoder
    assert [len(e) for e in both.entropies["encoder"]] == [12, 12]
    assert [len(e) for e in both.entropies["decoder"]] == [7, 7]


@pytest.mark.parametrize("preset", sorted(ENCDEC_TINY_PRESETS))
def test_other_encoder_decoders_are_analysed_with_teacher_forcing(preset):
    """BART, mBART and BERT2BERT (each shifts the targets right in its own way): one value per real query
    and layer, prompt masses in [0, 1], and a padded example counts as it does alone."""
    base = ENCDEC_TINY_PRESETS[preset](dropout_rate=0.0)
    config = HyperPromptConfig(task_names=TASKS, encoder_prompt_length=ENC_L, decoder_prompt_length=DEC_L)
    model = HyperPromptModel.from_base(base, config)
    batch = padded_batch((8, 4), (5, 2), (1, 1))
    alone = {key: value[1:] for key, value in batch.items()}
    alone["input_ids"], alone["attention_mask"], alone["labels"] = (
        alone["input_ids"][:, :4], alone["attention_mask"][:, :4], alone["labels"][:, :2])
    both, separately = analyze_attention(model, [batch]), analyze_attention(model, [{k: v[:1] for k, v in batch.items()}, alone])
    assert [len(e) for e in both.entropies["decoder"]] == [7, 7]
    for stack in ("encoder", "decoder"):
        assert all(0 < mass < 1 for mass in np.ravel(both.prompt_mass[stack]))
        np.testing.assert_allclose(both.prompt_mass[stack], separately.prompt_mass[stack], atol=1e-6)
        for a, b in zip(both.entropies[stack], separately.entropies[stack], strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_masses_in_unit_interval_and_entropies_bounded_on_real_text(shared_data):
    """A random HyperPrompt on real CB examples (byte tokenizer): mass in [0, 1], 0 <= H <= log(#real keys)."""
    from transformers import ByT5Tokenizer

    tokenizer = ByT5Tokenizer()
    model = HyperPromptModel.from_base(
        T5ForConditionalGeneration(t5_config("t5-tiny", vocab_size=len(tokenizer), dropout_rate=0.0)),
        HyperPromptConfig(task_names=["superglue/cb", "superglue/copa"], encoder_prompt_length=4,
                          decoder_prompt_length=2))
    with torch.no_grad():  # strong prompts, so the masses are far from 0
        for prompts in model.hyperprompt.prompts.values():
            prompts.mul_(20)
    splits = [encode_task(get_task(name, data_dir=shared_data), "validation", tokenizer, 64, 8)
              for name in ("cb", "copa")]
    stats = analyze_splits(model, splits, pad_token_id=tokenizer.pad_token_id, max_examples=6, batch_size=4)
    assert list(stats) == ["superglue/cb", "superglue/copa"]
    for task_stats in stats.values():
        assert task_stats.num_examples == 6
        for stack in ("encoder", "decoder"):
            mass = np.array(task_stats.prompt_mass[stack])
            assert mass.shape == (2,) and (mass >= 0).all() and (mass <= 1).all() and mass.max() > 0.01
            values = task_stats.entropy_values(stack)
            assert (values >= 0).all() and (values <= math.log(64) + 1e-5).all()
    # the tasks' prompts differ, so their masses do
    assert stats["superglue/cb"].prompt_mass["encoder"] != stats["superglue/copa"].prompt_mass["encoder"]


def test_analysis_leaves_the_model_as_it_was():
    model = make_model("hyperprompt-global")
    model.train()
    batch = padded_batch()
    forward = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                   task_ids=batch["task_ids"])
    model.eval()
    with torch.no_grad():
        before = model(**forward).logits
    implementation = model.base.config._attn_implementation
    model.train()
    analyze_attention(model, [batch])
    assert model.training  # mode restored
    assert model.base.config._attn_implementation == implementation
    model.eval()
    with torch.no_grad():
        after = model(**forward).logits
    assert torch.equal(before, after)
    assert model._attention_observer is None  # normal forwards compute no attention weights


def test_reduce_layer_by_hand():
    """Two heads, one prompt column, three keys of which the last is padding."""
    weights = torch.tensor([[[[0.5, 0.25, 0.25, 0.0]], [[0.2, 0.4, 0.1, 0.3]]]])  # [1, 2, 1, 4]
    weights = weights.expand(1, 2, 3, 4).clone()
    mask = torch.tensor([True, True, False]).expand(1, 1, 3, 3)
    mass, entropy, valid = reduce_layer(weights, prompt_length=1, attention_mask=mask)
    assert valid.tolist() == [[True, True, False]]
    assert mass[0, 0].item() == pytest.approx((0.5 + 0.2) / 2)
    # head 0: [0.25, 0.25] -> log 2; head 1: [0.4, 0.1] (the 0.3 on padding is dropped) -> [0.8, 0.2]
    expected = (math.log(2) - (0.8 * math.log(0.8) + 0.2 * math.log(0.2))) / 2
    assert entropy[0, 0].item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="KV cache"):
        reduce_layer(weights[..., :1, :], prompt_length=1, attention_mask=None)


def test_analysis_imports_only_model_and_data():
    """STYLE: analysis sits beside training (cli -> training/analysis -> model, data)."""
    import ast
    from pathlib import Path

    import hyperprompt.analysis

    for path in Path(hyperprompt.analysis.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                assert not name.startswith(("hyperprompt.training", "hyperprompt.cli")), f"{path.name} imports {name}"
