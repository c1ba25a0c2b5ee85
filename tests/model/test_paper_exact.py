"""HyperPrompt-Global as the paper writes it (``paper_exact``), checked against the equations computed here.

He et al., ICML 2022 (docs/method.md): I^m_tau = h_t([k_tau; z_m]) with h_t a two-layer ReLU MLP;
D^m_tau = W^D I^m_tau reshaped to [b, d_model], U^m_tau = W^U I^m_tau reshaped to [h*d_kv, b] (one pair
for keys, one for values); P^m_tau = U^m_tau ReLU(D^m_tau P_tau) row by row, for each of the l rows of P_tau.
"""

from __future__ import annotations

import pytest
import torch
from transformers import T5ForConditionalGeneration

from hyperprompt import HyperPromptConfig, HyperPromptModel
from hyperprompt.model.config import MethodConfig
from hyperprompt.model.presets import t5_config

TASKS = ["alpha", "beta", "gamma"]


def global_model(**settings) -> HyperPromptModel:
    base = T5ForConditionalGeneration(t5_config("t5-tiny", dropout_rate=0.0, num_decoder_layers=3))
    config = HyperPromptConfig(task_names=TASKS, variant="global", encoder_prompt_length=3,
                               decoder_prompt_length=2, task_embedding_dim=8, layer_task_embedding_dim=6,
                               task_hidden_dim=10, **settings)
    return HyperPromptModel.from_base(base, config).double()


def paper_prompts(generator, task: int, stack: str) -> torch.Tensor:
    """P^m_{tau,k}, P^m_{tau,v} for every layer m of ``stack`` from the paper's equations, one
    (task, layer) at a time with plain matrix products: [M, 2, h, l, d_kv]."""
    first, last = generator.task_mlp[0], generator.task_mlp[2]
    d, b = generator.d_model, generator.bottleneck
    h, d_kv = generator.num_heads, generator.d_kv
    offset = 0 if stack == "encoder" else generator.num_layers["encoder"]
    P = generator.prompts[stack][task]  # noqa: N806  P_tau: [l, d]
    layers = []
    for m in range(generator.num_layers[stack]):
        k, z = generator.task_embedding[task], generator.layer_embedding[offset + m]
        I = last.weight @ torch.relu(first.weight @ torch.cat([k, z]) + first.bias) + last.bias  # noqa: E741, N806
        kv = []
        for which in (0, 1):  # keys, values: W^{D_k}, W^{U_k} and W^{D_v}, W^{U_v}
            D = (generator.down_generator[which].T @ I).reshape(b, d)  # noqa: N806  W^D I -> [b, d]
            U = (generator.up_generator[which].T @ I).reshape(h * d_kv, b)  # noqa: N806  W^U I -> [h*d_kv, b]
            rows = torch.stack([U @ torch.relu(D @ p) for p in P])  # [l, h*d_kv]
            kv.append(rows.reshape(len(P), h, d_kv).transpose(0, 1))  # [h, l, d_kv]
        layers.append(torch.stack(kv))
    return torch.stack(layers)


def test_paper_exact_global_matches_the_papers_equations():
    model = global_model(paper_exact=True)
    with torch.no_grad():
        for task in range(len(TASKS)):
            prompts = model.task_prompts(task)
            for stack in ("encoder", "decoder"):
                expected = paper_prompts(model.hyperprompt, task, stack)
                assert prompts[stack].shape == expected.shape
                torch.testing.assert_close(prompts[stack], expected, rtol=1e-12, atol=1e-12)


def test_default_global_is_not_the_papers_equations():
    """The default LayerNorm on I changes the function: the same weights give other prompts (so the test
    above can tell the two apart)."""
    model = global_model()
    assert model.config.normalize_layer_task_embedding and model.config.scale_generators
    with torch.no_grad():
        assert not torch.allclose(model.task_prompts(0)["encoder"], paper_prompts(model.hyperprompt, 0, "encoder"))


def test_scale_generators_is_a_reparameterisation():
    """scale_generators alone: W^D, W^U stored t times larger and multiplied by 1/t give the paper's
    prompts exactly (it changes the optimiser's step, not the function)."""
    exact, scaled = global_model(paper_exact=True), global_model(normalize_layer_task_embedding=False)
    state = exact.hyperprompt.state_dict()
    t = exact.config.layer_task_embedding_dim
    state = {k: v * t if k in ("down_generator", "up_generator") else v for k, v in state.items()}
    scaled.hyperprompt.load_state_dict(state)
    with torch.no_grad():
        for stack in ("encoder", "decoder"):
            torch.testing.assert_close(scaled.task_prompts(1)[stack], exact.task_prompts(1)[stack],
                                       rtol=1e-12, atol=1e-12)


def test_paper_exact_settings_labels_and_saved_config():
    exact = HyperPromptConfig(task_names=TASKS, paper_exact=True)
    assert (exact.normalize_layer_task_embedding, exact.scale_generators) == (False, False)
    default = HyperPromptConfig(task_names=TASKS)
    assert (default.normalize_layer_task_embedding, default.scale_generators) == (True, True)
    assert exact.label == "hyperprompt-global (paper-exact)"
    assert default.label == "hyperprompt-global (LayerNorm on I + 1/t generators)"
    assert HyperPromptConfig(task_names=TASKS, scale_generators=False).label == "hyperprompt-global (LayerNorm on I)"
    assert HyperPromptConfig(task_names=TASKS, normalize_layer_task_embedding=False,
                             scale_generators=False).label == "hyperprompt-global (paper-exact)"
    assert HyperPromptConfig(task_names=TASKS, variant="share").label == "hyperprompt-share"
    assert MethodConfig(task_names=TASKS).label == "mtl"
    adapter, hyperformer = (MethodConfig.registry[m] for m in ("adapter", "hyperformer++"))
    assert adapter(task_names=TASKS).label == "adapter"  # the authors' defaults carry no mark
    assert adapter(task_names=TASKS, layer_norm=False).label == "adapter (no output layer norm)"
    assert hyperformer(task_names=TASKS).label == "hyperformer++"
    assert (hyperformer(task_names=TASKS, conditional_layer_norm=False).label
            == "hyperformer++ (no conditional layer norm)")
    assert (hyperformer(task_names=TASKS, conditional_layer_norm=False, scale_generators=True).label
            == "hyperformer++ (no conditional layer norm + 1/t generators)")
    prefix, prefix_self = (MethodConfig.registry[m] for m in ("prefix-tuning", "prefix-tuning-self"))
    assert prefix(task_names=TASKS).label == "prefix-tuning"
    assert prefix(task_names=TASKS, reparameterize=False).label == "prefix-tuning (prefixes stored directly)"
    assert prefix_self(task_names=TASKS).label == "prefix-tuning-self"  # stored directly by definition
    assert MethodConfig.from_dict(exact.to_dict()) == exact  # the resolved flags are what is saved
    with pytest.raises(ValueError, match="scale_generators=true contradicts paper_exact=true"):
        HyperPromptConfig(task_names=TASKS, paper_exact=True, scale_generators=True)
