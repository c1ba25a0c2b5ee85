"""Real language is learned: a short SST-2 run of the pretrained ``minilm-bert2bert`` preset beats the
majority class on the full validation set (issue 13)."""

from __future__ import annotations

import pytest

from hyperprompt.training import load_config, train

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


# --- real language is learned -------------------------------------------------------------------------

SST2_STEPS = 250
#: HyperPrompt-Global with the MiniLM recipes' settings (MTL passes the same test too: checked by hand, 2 min;
#: one method keeps the suite's time in bounds)
SETTINGS = {
    "hyperprompt-global": {"encoder_prompt_length": 8, "decoder_prompt_length": 4, "hypernetwork_init_scale": 0.1},
}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(SETTINGS))
def test_short_sst2_run_beats_the_majority_class(tmp_path, shared_data, method):
    """250 steps on MiniLM-BERT2BERT (batch 16, inputs <= 48 tokens; ~3 minutes on 2 quiet cores): the full
    SST-2 validation set (872 sentences, 50.9% majority class) is classified clearly above the majority.
    Learning starts late: the label-token accuracy sat at chance until about step 180 in our probes."""
    recipe = {
        "model": "minilm-bert2bert",
        "model_overrides": {"decoder_layers": 2, "cross_attention_init": "self"},
        "method": method,
        "method_settings": SETTINGS[method],
        "tasks": ["glue/sst2"],
        "data_dir": str(shared_data / "glue"),
        "max_input_length": 48,
        "max_target_length": 4,
        "batch_size": 16,
        "optimizer": {"name": "adamw", "lr": 1.0e-4},
        "schedule": {"name": "constant", "warmup_steps": 10},
        "max_steps": SST2_STEPS,
        "save_every": SST2_STEPS,
        "keep_last": 1,
        "log_every": 20,
        "eval": {"batch_size": 128},
        "num_threads": 2,
        "seed": 0,
    }
    results = train(load_config(base=recipe), tmp_path / "run")
    sst2 = results["final"]["tasks"]["glue/sst2"]
    assert sst2["num_examples"] == 872
    assert sst2["metrics"]["accuracy"] >= 65.0, sst2  # majority class: 50.9
