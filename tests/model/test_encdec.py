"""Every method on the encoder-decoders beyond T5 (BART, mBART, BERT2BERT): the properties the T5 suite
checks, on tiny random models built from configs."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from transformers import BertConfig, BertModel

from hyperprompt.model import MethodConfig, MultiTaskT5
from hyperprompt.model.layout import BackboneShape, backbone_layout
from hyperprompt.model.params import added_parameters
from hyperprompt.model.presets_encdec import ENCDEC_TINY_PRESETS

FAMILIES = list(ENCDEC_TINY_PRESETS)  # bart-tiny, mbart-tiny, bert2bert-tiny
TASKS = ["alpha", "beta", "gamma"]
METHODS = ["mtl", "prompt-tuning", "prefix-tuning", "adapter", "hyperformer++",
           "hyperprompt-share", "hyperprompt-sep", "hyperprompt-global"]
SMALL = {
    "prompt-tuning": {"prompt_length": 3},
    "prefix-tuning": {"encoder_prompt_length": 3, "decoder_prompt_length": 2},
    "hyperprompt-share": {"encoder_prompt_length": 3, "decoder_prompt_length": 2},
    "hyperprompt-sep": {"encoder_prompt_length": 3, "decoder_prompt_length": 2},
    "hyperprompt-global": {"encoder_prompt_length": 3, "decoder_prompt_length": 2},
}

# EncoderDecoderModel warns on every loss it computes (it will move to the model's loss function)
pytestmark = pytest.mark.filterwarnings("ignore:Version v4.12.0 introduces:FutureWarning")


def make_model(family: str, method: str, base=None, **settings) -> MultiTaskT5:
    base = base if base is not None else ENCDEC_TINY_PRESETS[family](dropout=0.0)
    config = MethodConfig.from_dict({"method": method, "task_names": TASKS, **SMALL.get(method, {}), **settings})
    model = MultiTaskT5.registry[method].from_base(base, config)
    if method in ("adapter", "hyperformer++"):  # near-identity at init: make them visibly act
        with torch.no_grad():
            for _, parameter in model.added_named_parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def batch(batch_size: int = 4, length: int = 9, target: int = 5):
    input_ids = torch.randint(3, 384, (batch_size, length))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, length - 3:] = 0  # right padding
    attention_mask[2, length - 5:] = 0
    input_ids[attention_mask == 0] = 0
    labels = torch.randint(3, 384, (batch_size, target))
    return input_ids, attention_mask, labels


# --- layout ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_layout_tags_self_and_cross_attention_slots(family):
    model = make_model(family, "hyperprompt-global")
    layout = backbone_layout(model.base)
    assert layout.num_layers == {"encoder": 2, "decoder": 2}
    assert (layout.d_model, layout.num_heads, layout.head_dim) == (64, 4, 16)
    tagged = [m for m in model.base.modules() if getattr(m, "_prompt_slot", None) is not None]
    assert len(tagged) == 6 and {m._prompt_slot for m in tagged} == {(s, i) for s in ("encoder", "decoder", "cross")
                                                                    for i in range(2)}
    cross = [m for name, m in model.base.named_modules() if name.endswith(("encoder_attn", "crossattention.self"))]
    assert [m._prompt_slot for m in cross] == [("cross", 0), ("cross", 1)]  # prefix tuning's cross prefixes


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", METHODS)
def test_parameter_formula_matches_modules(family, method):
    model = make_model(family, method)
    counted = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("base."))
    assert model.num_added_parameters() == counted
    assert added_parameters(model.config, BackboneShape.from_config(model.base.config)) == counted


def test_unsupported_backbones_give_errors_naming_the_supported_ones():
    encoder_only = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=16))
    with pytest.raises(ValueError, match="unsupported model class BertModel.*BartForConditionalGeneration.*"
                                         "EncoderDecoderModel"):
        make_model("bart-tiny", "hyperprompt-global", base=encoder_only)


# --- disabled == plain; conditioning changes the output; mixed == alone; every added weight used -------

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", METHODS)
def test_disabled_plain_conditioned_mixed(family, method):
    base = ENCDEC_TINY_PRESETS[family](dropout=0.0)
    plain = copy.deepcopy(base).eval()
    model = make_model(family, method, base).eval()
    ids, mask, labels = batch(batch_size=5)
    task_ids = torch.tensor([0, 2, 1, 0, 2])
    out = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids)
    out.loss.backward()
    for name, parameter in model.added_named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    with torch.no_grad():
        reference = plain(input_ids=ids, attention_mask=mask, labels=labels).logits
        with model.conditioning_disabled():
            disabled = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        other_tasks = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=(task_ids + 1) % 3).logits
        for task in range(3):
            rows = (task_ids == task).nonzero().flatten()
            alone = model(input_ids=ids[rows], attention_mask=mask[rows], labels=labels[rows],
                          task_ids=task_ids[rows]).logits
            assert (out.logits[rows] - alone).abs().max() <= 1e-5
    assert (disabled - reference).abs().max() <= 1e-6
    conditioned = method != "mtl"
    assert ((out.logits.detach() - reference).abs().max() > 1e-4) == conditioned
    assert ((out.logits.detach() - other_tasks).abs().max() > 1e-4) == conditioned  # task ids matter


# --- prompts in both self-attentions, never in cross-attention; causality ------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_prompts_reach_both_self_attentions_and_never_cross_attention(family):
    model = make_model(family, "hyperprompt-global").eval()
    ids, mask, labels = batch()
    seen = []

    def observer(slot, weights, prompt_length, **_):
        seen.append((slot, prompt_length, weights))

    with torch.no_grad(), model.observe_attention(observer):
        model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=[0, 1, 2, 0])
    lengths = sorted((slot, length) for slot, length, _ in seen if slot[0] != "cross")
    assert lengths == [(("decoder", 0), 2), (("decoder", 1), 2), (("encoder", 0), 3), (("encoder", 1), 3)]
    cross = [(length, w) for slot, length, w in seen if slot[0] == "cross"]
    assert len(cross) == 2 and all(length == 0 and w.shape[-1] == ids.shape[1] for length, w in cross)
    for slot, length, weights in seen:
        if slot[0] == "decoder":
            first = weights[:, :, 0]  # query position 0: all prompts and only the first real token
            assert (first[..., :length].sum(-1) > 0).all() and first[..., length + 1:].abs().max() == 0
        if slot[0] == "encoder":  # padding hides keys, never prompts
            assert weights[0, :, :, length + 6:].abs().max() == 0 and (weights[0, :, :, :length] > 0).all()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("apply_to", ["encoder", "decoder"])
def test_each_stack_is_conditioned_on_its_own(family, apply_to):
    base = ENCDEC_TINY_PRESETS[family](dropout=0.0)
    plain = copy.deepcopy(base).eval()
    model = make_model(family, "hyperprompt-share", base, apply_to=apply_to).eval()
    ids, mask, labels = batch()
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=[0, 1, 2, 0])
        expected = plain(input_ids=ids, attention_mask=mask, labels=labels)
        before = got.logits[:, 0]
        model.hyperprompt.prompts[apply_to][0].add_(1.0)
        after = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=[0, 1, 2, 0]).logits[:, 0]
    same_encoder = torch.allclose(got.encoder_last_hidden_state, expected.encoder_last_hidden_state, atol=1e-6)
    assert same_encoder == (apply_to == "decoder")
    assert (after[0] - before[0]).abs().max() > 1e-4 and (after[1] - before[1]).abs().max() == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_decoder_causality(family):
    model = make_model(family, "hyperprompt-sep").eval()
    ids, mask, labels = batch()
    decoder_input_ids = torch.cat([torch.zeros(4, 1, dtype=torch.long), labels[:, :-1]], dim=1)
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids,
                          task_ids=[0, 1, 2, 1]).logits
        changed = decoder_input_ids.clone()
        changed[:, 3] = (changed[:, 3] + 7) % 384
        logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=changed, task_ids=[0, 1, 2, 1]).logits
    assert (logits[:, :3] - reference[:, :3]).abs().max() == 0
    assert (logits[:, 3:] - reference[:, 3:]).abs().max() > 0


# --- generation -------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["prompt-tuning", "prefix-tuning", "adapter", "hyperformer++",
                                    "hyperprompt-global"])
def test_generate_cache_argmax_and_beams(family, method):
    model = make_model(family, method).eval()
    ids, mask, _ = batch(batch_size=3)
    task_ids = torch.tensor([2, 0, 1])
    greedy = model.generate(input_ids=ids, attention_mask=mask, task_ids=task_ids, max_new_tokens=4,
                            min_new_tokens=4, do_sample=False)
    no_cache = model.generate(input_ids=ids, attention_mask=mask, task_ids=task_ids, max_new_tokens=4,
                              min_new_tokens=4, do_sample=False, use_cache=False)
    assert torch.equal(greedy, no_cache)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=greedy[:, :-1], task_ids=task_ids).logits
    assert torch.equal(logits.argmax(-1), greedy[:, 1:])
    beams = model.generate(input_ids=ids, attention_mask=mask, task_ids=task_ids, max_new_tokens=3, num_beams=2,
                           num_return_sequences=2, do_sample=False)
    assert beams.shape[0] == 6
    for row in range(3):
        alone = model.generate(input_ids=ids[row:row + 1], attention_mask=mask[row:row + 1],
                               task_ids=task_ids[row:row + 1], max_new_tokens=3, num_beams=2,
                               num_return_sequences=2, do_sample=False)
        assert torch.equal(beams[2 * row:2 * row + 2, :alone.shape[1]], alone)


# --- save / load, frozen backbone, isolation, gradient checkpointing ----------------------------------

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method,freeze", [("hyperprompt-global", False), ("hyperprompt-sep", True),
                                           ("adapter", True), ("prompt-tuning", False)])
def test_save_load_identical(tmp_path, family, method, freeze):
    model = make_model(family, method, freeze_backbone=freeze).eval()
    ids, mask, labels = batch()
    task_ids = torch.tensor([2, 1, 0, 1])
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits
    model.save_pretrained(tmp_path / "saved")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = MultiTaskT5.from_pretrained(tmp_path / "saved").eval()
    assert type(loaded.base) is type(model.base) and loaded.config == model.config
    with torch.no_grad():
        got = loaded(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits
    assert torch.equal(got, expected)
    generated = model.generate(input_ids=ids, attention_mask=mask, task_ids=task_ids, max_new_tokens=3)
    assert torch.equal(loaded.generate(input_ids=ids, attention_mask=mask, task_ids=task_ids, max_new_tokens=3),
                       generated)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["hyperprompt-global", "adapter", "prefix-tuning"])
def test_frozen_backbone_trains_only_added_weights(family, method):
    model = make_model(family, method, freeze_backbone=True)
    backbone = {n: p.detach().clone() for n, p in model.base.named_parameters()}
    added = {n: p.detach().clone() for n, p in model.added_named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, mask, labels = batch()
    model.train()
    model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=[0, 1, 2, 0]).loss.backward()
    optimizer.step()
    norms = {id(p) for p in model.backbone_parameters_to_train()}  # adapters also train the layer norms
    assert bool(norms) == (method == "adapter")
    assert all(torch.equal(p, backbone[n]) for n, p in model.base.named_parameters() if id(p) not in norms)
    assert all(not torch.equal(p, added[n]) for n, p in model.added_named_parameters())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["hyperprompt-sep", "prefix-tuning", "adapter"])
def test_per_task_weights_get_gradient_only_from_their_task(family, method):
    model = make_model(family, method)
    ids, mask, labels = batch()
    model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=torch.full((4,), 1)).loss.backward()
    per_task = model.per_task_parameters()
    assert per_task
    for name, parameter in per_task.items():
        assert torch.count_nonzero(parameter.grad[0]) == 0 and torch.count_nonzero(parameter.grad[2]) == 0, name
        assert parameter.grad[1].abs().sum() > 0, name


def training_gradients(model) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    ids, mask, labels = batch()
    model.train()
    model.zero_grad(set_to_none=True)
    model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=torch.tensor([0, 1, 2, 1])).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["hyperprompt-global", "adapter"])
def test_gradient_checkpointing_gives_same_gradients(family, method):
    model = make_model(family, method)
    reference = training_gradients(model)
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    got = training_gradients(model)
    assert got.keys() == reference.keys()
    for name, grad in reference.items():
        assert torch.allclose(got[name], grad, atol=1e-6), name


@pytest.mark.parametrize("family", FAMILIES)
def test_prefix_tuning_prefixes_reach_cross_attention(family):
    model = make_model(family, "prefix-tuning", reparameterize=False).eval()
    assert set(model.prefixes) == {"encoder", "decoder", "cross"}
    ids, mask, labels = batch()
    task_ids = torch.tensor([0, 1, 2, 0])
    seen = {}
    with torch.no_grad(), model.observe_attention(lambda slot, prompt_length, **_: seen.update({slot: prompt_length})):
        model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids)
    assert seen[("cross", 0)] == seen[("cross", 1)] == model.config.cross_prompt_length
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits
        model.prefixes["cross"][0].add_(1.0)
        after = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=task_ids).logits
    changed = (after - before).abs().amax(dim=(1, 2))
    assert changed[0] > 1e-4 and changed[3] > 1e-4 and changed[1] == 0 and changed[2] == 0  # task 0's rows only


@pytest.mark.parametrize("family", FAMILIES)
def test_backbone_parameters_are_counted_from_the_config_alone(family):
    """`compare` counts a finished run's backbone from its saved config (meta device, no weights)."""
    from hyperprompt.model.presets import count_backbone_parameters

    model = make_model(family, "hyperprompt-global")
    assert count_backbone_parameters(model.base.config) == model.num_backbone_parameters()
