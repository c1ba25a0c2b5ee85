"""The encoder-decoder presets as ``model:`` in a recipe: a run through ``train`` saves a checkpoint that
loads on its own and evaluates to the recorded metrics."""

from __future__ import annotations

import warnings

import pytest

from hyperprompt.training import load_config, load_run_checkpoint, train
from hyperprompt.training.evaluate import evaluate_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.mark.parametrize("model,method", [("bart-tiny", "hyperprompt-global"), ("bert2bert-tiny", "adapter"),
                                          ("mbart-tiny", "prefix-tuning")])
def test_train_with_an_encoder_decoder_preset(tmp_path, tools, model, method):
    settings = {} if method == "adapter" else {"encoder_prompt_length": 3, "decoder_prompt_length": 2}
    recipe = {**tools.SYNTHETIC_RECIPE, "model": model, "method": method, "method_settings": settings,
              "model_overrides": {"dropout_rate": 0.0}}
    out = tmp_path / "run"
    results = train(load_config(base=recipe), out)
    log = tools.jsonl(out / "train_log.jsonl")
    assert len(log) == 8 and log[-1]["loss"] < log[0]["loss"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded, tokenizer, config, _ = load_run_checkpoint(out / "final")
        assert config.model == model and tokenizer.eos_token_id == 1
        assert type(loaded.base).__name__ == {"bart-tiny": "BartForConditionalGeneration",
                                              "mbart-tiny": "MBartForConditionalGeneration",
                                              "bert2bert-tiny": "EncoderDecoderModel"}[model]
        assert evaluate_checkpoint(out / "final")["tasks"] == results["final"]["tasks"]


def test_unknown_override_of_a_preset_names_the_valid_ones(tools):
    from hyperprompt.errors import ConfigError
    from hyperprompt.training.builder import build_model, build_tokenizer

    config = load_config(base={**tools.SYNTHETIC_RECIPE, "model": "bart-tiny", "model_overrides": {"d_kv": 8}})
    with pytest.raises(ConfigError, match=r"model_overrides.*\['d_kv'\].*d_model, num_heads"):
        build_model(config, build_tokenizer(config, []), config.method_config(["a"]))
