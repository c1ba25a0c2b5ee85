"""The optimizer: every Adafactor option of a recipe reaches transformers' Adafactor, and acts."""

from __future__ import annotations

import pytest
import torch
from transformers import Adafactor, T5ForConditionalGeneration

from hyperprompt.model.presets import t5_config
from hyperprompt.training import ConfigError, load_config
from hyperprompt.training.optim import build_optimizer, learning_rate

ADAFACTOR_KEYS = ("scale_parameter", "relative_step", "warmup_init", "clip_threshold", "decay_rate", "beta1")


def tiny_t5() -> T5ForConditionalGeneration:
    return T5ForConditionalGeneration(t5_config("t5-tiny", vocab_size=64))


def adafactor(**options) -> Adafactor:
    config = load_config(base={"tasks": ["cb"], "optimizer": {"name": "adafactor", **options}})
    optimizer = build_optimizer(tiny_t5(), config)
    assert isinstance(optimizer, Adafactor)
    return optimizer


def test_default_adafactor_is_t5s_fine_tuning():
    """Mesh TF's AdafactorOptimizer as T5 fine-tuned: parameter scaling on, external constant LR 1e-3."""
    defaults = adafactor().defaults
    assert {k: defaults[k] for k in ("lr", *ADAFACTOR_KEYS)} == {
        "lr": 1e-3, "scale_parameter": True, "relative_step": False, "warmup_init": False,
        "clip_threshold": 1.0, "decay_rate": -0.8, "beta1": None}


@pytest.mark.parametrize("options", [
    {"scale_parameter": False},
    {"relative_step": True},
    {"relative_step": True, "warmup_init": True},
    {"clip_threshold": 0.5},
    {"decay_rate": -0.5},
    {"beta1": 0.9},
], ids=lambda o: ",".join(o))
def test_each_adafactor_option_reaches_the_optimizer(options):
    defaults = adafactor(**options).defaults
    for key, value in options.items():
        assert defaults[key] == value, key
    # relative_step replaces the external LR (Adafactor refuses both)
    assert defaults["lr"] == (None if options.get("relative_step") else 1e-3)


def test_scale_parameter_scales_the_first_update_by_the_parameter_rms():
    """Same model, same gradient: with scale_parameter the update is RMS(param) times the update
    without it (whose RMS is about lr): the option changes the step, not only a stored flag."""
    steps = {}
    for scale in (False, True):
        torch.manual_seed(0)
        model = tiny_t5()
        weight = model.shared.weight
        with torch.no_grad():
            weight.mul_(0.1 / weight.pow(2).mean().sqrt())  # RMS 0.1 (> Adafactor's floor 1e-3)
        before = weight.detach().clone()
        optimizer = build_optimizer(model, load_config(base={"tasks": ["cb"], "optimizer": {"scale_parameter": scale}}))
        ids = torch.randint(2, 64, (2, 5))
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        steps[scale] = (weight.detach() - before).pow(2).mean().sqrt().item()
    assert steps[False] == pytest.approx(1e-3, rel=0.1)
    assert steps[True] == pytest.approx(0.1 * steps[False], rel=1e-4)


def test_relative_step_trains_with_the_loops_lr_assignment():
    """The loop writes the schedule's LR into every group each step; with relative_step Adafactor ignores it."""
    model = tiny_t5()
    config = load_config(base={"tasks": ["cb"], "optimizer": {"relative_step": True, "scale_parameter": False}})
    optimizer = build_optimizer(model, config)
    ids = torch.randint(2, 64, (2, 5))
    before = model.shared.weight.detach().clone()
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(0, config)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    # first step: relative step size min(1e-2, 1/sqrt(1)) = 1e-2, so the update has RMS 1e-2, not lr 1e-3
    assert (model.shared.weight.detach() - before).pow(2).mean().sqrt().item() == pytest.approx(1e-2, rel=0.05)


def test_adafactor_option_errors_name_the_key():
    def error(**options) -> str:
        with pytest.raises(ConfigError) as info:
            load_config(base={"tasks": ["cb"], "optimizer": options})
        return str(info.value)

    assert error(warmup_init=True).startswith("config key 'optimizer.warmup_init': needs optimizer.relative_step: true")
    assert error(clip_threshold=0) == "config key 'optimizer.clip_threshold': must be positive, got 0.0"
    assert error(decay_rate=0.8).startswith("config key 'optimizer.decay_rate': must be negative")
    assert error(beta1=1.0) == "config key 'optimizer.beta1': must be in [0, 1) or null, got 1.0"
    assert error(scale_parameters=True).startswith(
        "unknown config key 'optimizer.scale_parameters' (did you mean 'optimizer.scale_parameter'?)")
    assert error(relative_step="yes") == "config key 'optimizer.relative_step': expected true or false, got 'yes'"
