"""Recipes: loading, overrides, the documented error messages, schedules, the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperprompt.training import ConfigError, TrainConfig, load_config
from hyperprompt.training.optim import learning_rate

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BASE = {"tasks": ["cb"]}


def error_of(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(base=BASE, overrides=list(overrides))
    return str(info.value)


def test_overrides_parse_yaml_values_and_dotted_keys():
    config = load_config(base=BASE, overrides=[
        "optimizer.lr=3e-4", "max_steps=1e3", "tasks=cb,copa", "eval.max_examples_per_task=null",
        "method_settings.encoder_prompt_length=8", "mixture={rate: equal}", "precision=bf16"])
    assert config.optimizer.lr == pytest.approx(3e-4)  # YAML 1.1 reads 3e-4 as a string
    assert config.max_steps == 1000 and isinstance(config.max_steps, int)
    assert config.tasks == ["cb", "copa"]
    assert config.eval.max_examples_per_task is None
    assert config.method_settings == {"encoder_prompt_length": 8}
    assert config.mixture.rate == "equal" and config.mixture.mixed is True
    assert config.method_config(["a", "b"]).encoder_prompt_length == 8


def test_recipe_file_then_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("tasks: [cb]\nbatch_size: 8\noptimizer: {name: adamw}\n")
    config = load_config(recipe, ["batch_size=4"])
    assert (config.batch_size, config.optimizer.name, config.optimizer.lr) == (4, "adamw", 1e-3)
    saved = tmp_path / "saved.yaml"
    config.save(saved)
    assert load_config(saved) == config


def test_unknown_key_lists_the_valid_keys_and_the_closest():
    message = error_of("optimzer.lr=1")
    assert message.startswith("unknown config key 'optimzer' (did you mean 'optimizer'?). Valid keys at the top level:")
    assert "batch_size" in message and "max_steps" in message
    message = error_of("optimizer.lrr=1")
    assert message.startswith("unknown config key 'optimizer.lrr' (did you mean 'optimizer.lr'?). "
                              "Valid keys at 'optimizer': name, lr,")


def test_a_comparison_recipe_given_to_train_points_to_compare():
    with pytest.raises(ConfigError, match=r"unknown config key 'compare' \(a comparison recipe: run `hyperprompt "
                                          r"compare` on it"):
        load_config(CONFIGS / "compare-synthetic.yaml")


def test_bad_values_name_the_key_and_what_it_expects():
    assert error_of("batch_size=big") == "config key 'batch_size': expected an integer, got 'big'"
    assert error_of("task_prefix=maybe") == "config key 'task_prefix': expected true or false, got 'maybe'"
    assert error_of("optimizer.name=sgd") == "config key 'optimizer.name': 'sgd' is not one of 'adafactor', 'adamw'"
    assert error_of("schedule.name=exp") == ("config key 'schedule.name': 'exp' is not one of "
                                             "'constant', 'linear', 'cosine'")
    assert error_of("batch_size=0") == "config key 'batch_size': must be a positive integer, got 0"
    assert error_of("optimizer.lr=-1") == "config key 'optimizer.lr': must be positive, got -1.0"
    assert error_of("eval=3") == "config key 'eval': expected a mapping of keys, got 3"
    assert error_of("method=hyperprompt").startswith("config key 'method': 'hyperprompt' is not one of ")
    assert "'hyperprompt-global'" in error_of("method=hyperprompt")
    message = error_of("method_settings.prompt_len=3")
    assert message.startswith("config key 'method_settings': unknown key(s) ['prompt_len'] for method "
                              "'hyperprompt-global'; valid keys:")
    assert "encoder_prompt_length" in message
    assert error_of("tasks=[]").startswith("config key 'tasks': give at least one task name")
    assert error_of("=3") == "--set '=3': expected KEY=VALUE, e.g. --set optimizer.lr=3e-4"


def test_missing_or_broken_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("tasks: [cb\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(broken)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("tiny-*.yaml")) + sorted((CONFIGS / "paper").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_recipes_load(path):
    config = load_config(path)
    assert config.tasks and config.method


def test_paper_recipes_follow_the_paper():
    for path in sorted((CONFIGS / "paper").glob("*.yaml")):
        config = load_config(path)
        assert (config.batch_size, config.max_input_length, config.max_target_length) == (128, 512, 32)
        assert (config.optimizer.name, config.optimizer.lr, config.schedule.name) == ("adafactor", 1e-3, "constant")
        # the rest of Adafactor as T5 fine-tuned with Mesh TensorFlow (multiply_by_parameter_scale=True)
        assert (config.optimizer.scale_parameter, config.optimizer.relative_step) == (True, False), path
        assert (config.mixture.rate, config.eval_every, config.save_every) == ("proportional", 2000, 2000)
        assert len(config.tasks) == 8
    names = sorted(path.name for path in (CONFIGS / "paper").glob("*.yaml"))
    assert len(names) == 16
    # beside the paper's T5 v1.0 (pre-trained on a mixture including GLUE and SuperGLUE): backbones that
    # never saw them, for MTL and Global on both benchmarks
    models = {load_config(CONFIGS / "paper" / name).model for name in names}
    assert models == {"google-t5/t5-base", "google/t5-v1_1-base", "google/t5-base-lm-adapt"}
    for tag in ("t5v11base", "t5lmbase"):
        for bench in ("glue", "superglue"):
            assert {f"{bench}-{tag}-mtl.yaml", f"{bench}-{tag}-hyperprompt-global.yaml"} <= set(names)
    for name in names:  # each says whether its backbone saw the benchmarks in pre-training
        assert "GLUE" in (CONFIGS / "paper" / name).read_text().split("\nmodel:")[0].split("# Backbone:")[1]


def test_learning_rate_schedules():
    def lr(step: int, **schedule) -> float:
        config = TrainConfig.from_dict({"tasks": ["cb"], "max_steps": 110, "optimizer": {"lr": 1.0},
                                        "schedule": schedule})
        return learning_rate(step, config)

    assert [lr(s, name="constant", warmup_steps=10) for s in (0, 4, 9, 10, 109)] == [0.1, 0.5, 1.0, 1.0, 1.0]
    assert lr(10, name="linear", warmup_steps=10) == 1.0
    assert lr(60, name="linear", warmup_steps=10) == pytest.approx(0.5)
    assert lr(110, name="linear", warmup_steps=10, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert lr(60, name="cosine", warmup_steps=10) == pytest.approx(0.5)
    assert lr(110, name="cosine", warmup_steps=10) == pytest.approx(0.0)
