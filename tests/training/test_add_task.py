"""Adding a task to a trained model by learning only its rows (issue 15, part 1): old tasks bit-identical,
only the new rows trained, the extended model reloads exactly, bad requests refused."""

from __future__ import annotations

import json

import pytest
import torch

from hyperprompt.cli.main import main
from hyperprompt.training import load_run_checkpoint
from hyperprompt.training.evaluate import evaluate_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("add-task")
    recipe = root / "recipe.yaml"
    recipe.write_text(json.dumps({
        "model": "t5-tiny", "tokenizer": "byt5", "method": "hyperprompt-global",
        "method_settings": {"encoder_prompt_length": 3, "decoder_prompt_length": 2},
        "tasks": ["synthetic/first", "synthetic/last"], "max_input_length": 16, "max_target_length": 8,
        "batch_size": 16, "optimizer": {"name": "adamw", "lr": 3e-3}, "max_steps": 20, "save_every": 20,
        "log_every": 10, "eval": {"max_examples_per_task": 16, "batch_size": 16}, "num_threads": 1}))
    assert main(["train", str(recipe), "--out", str(root / "run")]) == 0
    return root


@pytest.mark.parametrize("train", ["embedding", "embedding+prompts"])
def test_a_task_added_by_its_embedding_leaves_old_tasks_bit_identical(trained, train, capsys, tools):
    out = trained / f"added-{train}"
    torch.set_num_threads(1)
    assert main(["add-task", str(trained / "run"), "--task", "synthetic/max", "--out", str(out), "--train", train,
                 "--steps", "15", "--batch-size", "8", "--eval-examples", "16"]) == 0
    assert "synthetic/max (task id 2) added" in capsys.readouterr().out
    old = load_run_checkpoint(trained / "run" / "final").model
    new = load_run_checkpoint(out / "final").model
    assert new.config.task_names == ["synthetic/first", "synthetic/last", "synthetic/max"]
    with torch.no_grad():  # every old task's outputs, bit for bit
        assert torch.equal(old(**tools.batch_for([0, 1, 1, 0])).logits, new(**tools.batch_for([0, 1, 1, 0])).logits)
    old_weights, new_weights = old.added_state_dict(), new.added_state_dict()
    trained_names = {"hyperprompt.task_embedding"} | (
        {"hyperprompt.prompts.encoder", "hyperprompt.prompts.decoder"} if train == "embedding+prompts" else set())
    for name, tensor in new_weights.items():
        if name in trained_names:
            assert torch.equal(tensor[:2], old_weights[name])  # old rows untouched
            assert not torch.equal(tensor[2], old_weights[name].mean(0))  # the new row was trained
        elif name in new.per_task_parameters():
            assert torch.equal(tensor[:2], old_weights[name]) and torch.equal(tensor[2], old_weights[name].mean(0))
        else:
            assert torch.equal(tensor, old_weights[name]), name
    assert all(torch.equal(p, q) for p, q in zip(old.base.parameters(), new.base.parameters(), strict=True))
    results = json.loads((out / "results.json").read_text())
    assert results["trained_numbers"] == (new.hyperprompt.task_embedding.shape[1] if train == "embedding" else
                                          new.hyperprompt.task_embedding.shape[1] + (3 + 2) * 64)
    # the saved model reloads exactly: evaluation reproduces the recorded score of the new task
    scores = evaluate_checkpoint(out / "final", tasks=["synthetic/max"], max_examples=16)
    assert scores["tasks"]["synthetic/max"]["metrics"] == results["after"]["metrics"]


def test_a_task_added_by_prefix_tuning_learns_its_prompts_directly(trained, capsys, tools):
    """The baseline: the new task's prompts P^m in every layer are stored and learned, nothing else."""
    out = trained / "added-prefix"
    torch.set_num_threads(1)
    assert main(["add-task", str(trained / "run"), "--task", "synthetic/max", "--out", str(out), "--train", "prefix",
                 "--steps", "15", "--batch-size", "8", "--eval-examples", "16"]) == 0
    old = load_run_checkpoint(trained / "run" / "final").model
    new = load_run_checkpoint(out / "final").model
    assert new.config.direct_prompt_tasks == [2] and new.config.task_groups == [2, 1]
    with torch.no_grad():
        assert torch.equal(old(**tools.batch_for([0, 1, 1, 0])).logits, new(**tools.batch_for([0, 1, 1, 0])).logits)
        generated = new.hyperprompt.generated(torch.tensor([2]))  # from the mean rows, where training started
        used = new.hyperprompt(torch.tensor([2]))
    for stack, table in used.items():
        assert torch.equal(table[:, 0], new.hyperprompt.direct_prompts[stack][2])  # the stored prompts are used
        assert not torch.allclose(table, generated[stack])  # and were trained away from the generated ones
    old_weights, new_weights = old.added_state_dict(), new.added_state_dict()
    for name, tensor in new_weights.items():
        if name.startswith("hyperprompt.direct_prompts."):
            assert not tensor[:2].any()  # unused rows of the generated tasks
        elif name in new.per_task_parameters():
            assert torch.equal(tensor[:2], old_weights[name]) and torch.equal(tensor[2], old_weights[name].mean(0))
        else:
            assert torch.equal(tensor, old_weights[name]), name
    results = json.loads((out / "results.json").read_text())
    assert results["trained_numbers"] == sum(t[2].numel() for n, t in new_weights.items() if "direct_prompts" in n)
    assert main(["add-task", str(trained / "run"), "--task", "synthetic/max", "--out", str(trained / "mean-rows"),
                 "--train", "embedding", "--steps", "1", "--batch-size", "8", "--eval-examples", "16"]) == 0
    embedding = json.loads((trained / "mean-rows" / "results.json").read_text())
    assert results["before"]["metrics"] == embedding["before"]["metrics"]  # both start from the mean rows
    scores = evaluate_checkpoint(out / "final", tasks=["synthetic/max"], max_examples=16)
    assert scores["tasks"]["synthetic/max"]["metrics"] == results["after"]["metrics"]


def test_a_task_added_by_prompt_tuning_learns_soft_input_tokens(trained, tools):
    """The other baseline: soft input tokens for the new task only, on the frozen model (its hyper-prompts from
    the mean rows). Batches of old tasks pass unchanged (bit-identical); in a batch with the new task the old
    rows get masked padding, equal to float rounding."""
    out = trained / "added-prompt"
    torch.set_num_threads(1)
    assert main(["add-task", str(trained / "run"), "--task", "synthetic/max", "--out", str(out), "--train", "prompt",
                 "--steps", "15", "--batch-size", "8", "--lr", "0.3", "--eval-examples", "16"]) == 0
    old = load_run_checkpoint(trained / "run" / "final").model
    new = load_run_checkpoint(out / "final").model
    assert new.config.input_prompt_tasks == [2] and new.input_prompts.shape == (3, 16, 64)
    with torch.no_grad():
        assert torch.equal(old(**tools.batch_for([0, 1, 1, 0])).logits, new(**tools.batch_for([0, 1, 1, 0])).logits)
        batch = tools.batch_for([0, 2, 1])
        mixed = new(**batch).logits
        old_rows = {k: v[[0, 2]] for k, v in batch.items()}
        torch.testing.assert_close(mixed[[0, 2]], old(**old_rows).logits, rtol=1e-5, atol=1e-5)
        new.has_input_prompt[2] = False  # without its soft tokens the new task's row differs: they are used
        assert not torch.allclose(new(**batch).logits[1], mixed[1])
    old_weights, new_weights = old.added_state_dict(), new.added_state_dict()
    per_task = new.per_task_parameters()
    for name, tensor in new_weights.items():  # nothing old moved
        if name in per_task and name != "input_prompts":
            assert torch.equal(tensor[:2], old_weights[name]), name
        elif name not in per_task:
            assert torch.equal(tensor, old_weights[name]), name
    results = json.loads((out / "results.json").read_text())
    assert results["trained_parameters"] == ["input_prompts"] and results["trained_numbers"] == 16 * 64
    assert results["last_loss"] < results["first_loss"]
    scores = evaluate_checkpoint(out / "final", tasks=["synthetic/max"], max_examples=16)
    assert scores["tasks"]["synthetic/max"]["metrics"] == results["after"]["metrics"]


def test_bad_add_task_requests_are_refused(trained, capsys):
    assert main(["add-task", str(trained / "run"), "--task", "synthetic/first", "--out", str(trained / "x")]) == 1
    assert "already has a task named 'synthetic/first'" in capsys.readouterr().err
    assert main(["add-task", str(trained / "run"), "--task", "synthetic/nope", "--out", str(trained / "x")]) == 1
    assert "unknown task 'synthetic/nope'" in capsys.readouterr().err


def test_other_methods_add_a_task_by_their_task_rows(trained, capsys, tools):
    recipe = json.loads((trained / "recipe.yaml").read_text())
    recipe.update(method="prompt-tuning", method_settings={"prompt_length": 3}, max_steps=5, save_every=5)
    (trained / "pt.yaml").write_text(json.dumps(recipe))
    assert main(["train", str(trained / "pt.yaml"), "--out", str(trained / "pt")]) == 0
    assert main(["add-task", str(trained / "pt"), "--task", "synthetic/max", "--out", str(trained / "pt-x")]) == 1
    assert "needs a HyperPrompt-Global model" in capsys.readouterr().err
    assert main(["add-task", str(trained / "pt"), "--task", "synthetic/max", "--out", str(trained / "pt-x"),
                 "--train", "prompt"]) == 1
    assert "--train prompt gives a HyperPrompt model soft input tokens" in capsys.readouterr().err
    assert main(["add-task", str(trained / "pt"), "--task", "synthetic/max", "--out", str(trained / "pt-added"),
                 "--train", "task-rows", "--steps", "5", "--eval-examples", "8"]) == 0
    old = load_run_checkpoint(trained / "pt" / "final").model
    new = load_run_checkpoint(trained / "pt-added" / "final").model
    with torch.no_grad():
        assert torch.equal(old(**tools.batch_for([1, 0])).logits, new(**tools.batch_for([1, 0])).logits)
    assert torch.equal(new.prompts[:2], old.prompts) and not torch.equal(new.prompts[2], old.prompts.mean(0))


def test_reparameterised_prefix_tuning_keeps_old_tasks_prefixes_bit_identical():
    """The prefix MLP runs over each add-task group apart (MethodConfig.task_groups), as HyperPrompt's
    generators do: an old task's prefixes never depend on how many tasks were added after it."""
    from transformers import T5Config, T5ForConditionalGeneration

    from hyperprompt.model.extend import with_new_tasks
    from hyperprompt.model.prefix_tuning import PrefixTuningConfig, PrefixTuningModel

    torch.manual_seed(0)
    base = T5ForConditionalGeneration(T5Config(vocab_size=64, d_model=128, d_kv=16, num_heads=8, d_ff=64,
                                               num_layers=2, num_decoder_layers=2))
    for old_tasks in (1, 3, 4):
        model = PrefixTuningModel(base, PrefixTuningConfig(task_names=[f"t{i}" for i in range(old_tasks)],
                                                           reparameterize=True)).eval()
        extended = with_new_tasks(with_new_tasks(model, ["new0"]), ["new1", "new2"]).eval()
        assert extended.config.task_groups == [old_tasks, 1, 2]
        with torch.no_grad():
            before, after = model.prefix_tables(), extended.prefix_tables()
        for kind, table in before.items():
            assert torch.equal(after[kind][:, :old_tasks], table), kind


def test_a_new_task_whose_answers_the_model_cannot_hold_is_warned_about(trained, capsys):
    """family/reverse's answers ('e d c b a') are 9 bytes + EOS; the model was trained with max_target_length 8."""
    out = trained / "added-long"
    assert main(["add-task", str(trained / "run"), "--task", "family/reverse", "--out", str(out), "--train", "embedding",
                 "--steps", "1", "--eval-examples", "4"]) == 0
    printed = capsys.readouterr().out
    assert "warning: family/reverse: " in printed and "longer than max_target_length=8" in printed
    assert json.loads((out / "results.json").read_text())["warnings"] == [
        line for line in printed.splitlines() if line.startswith("warning:")]
