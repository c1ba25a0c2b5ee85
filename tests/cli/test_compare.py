"""`hyperprompt compare`: real tiny runs, a table that equals the per-run results, resuming without retraining."""

from __future__ import annotations

import csv
import json
import os
import statistics
from pathlib import Path

import pytest
import yaml

from hyperprompt.cli.main import main
from hyperprompt.training import compare as compare_module
from hyperprompt.training.compare import ComparisonError, load_comparison

RECIPE = {
    "model": "t5-tiny",
    "model_overrides": {"d_model": 32, "d_ff": 64, "num_heads": 2, "d_kv": 16, "num_layers": 1},
    "tasks": ["synthetic/conflict_first", "synthetic/conflict_last"],
    "task_prefix": True,
    "max_input_length": 32,
    "max_target_length": 4,
    "batch_size": 8,
    "max_steps": 4,
    "log_every": 2,
    "save_every": 4,
    "optimizer": {"name": "adamw", "lr": 3.0e-3},
    "eval": {"max_examples_per_task": 8, "batch_size": 8, "max_new_tokens": 2},
    "compare": {"methods": ["mtl", "prompt-tuning"], "seeds": 2,
                "method_settings": {"prompt-tuning": {"prompt_length": 2}}},
}


def run_cli(*argv: str) -> int:
    return main(["compare", *argv])  # `hyperprompt compare`, through the CLI's error boundary


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "compare-tiny.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path) as f:
        return {row["method"]: row for row in csv.DictReader(f)}


def test_compare_writes_table_equal_to_runs_and_resumes_without_retraining(recipe, tmp_path, monkeypatch, capsys):
    calls = []

    def recording_train(config, out_dir, resume=False):
        calls.append((config.method, config.seed, resume))
        return real_train(config, out_dir, resume=resume)

    real_train = compare_module.train
    monkeypatch.setattr(compare_module, "train", recording_train)
    out = tmp_path / "cmp"
    assert run_cli(str(recipe), "--out", str(out)) == 0
    # every method of a seed before the next seed
    assert calls == [("mtl", 0, False), ("prompt-tuning", 0, False), ("mtl", 1, False), ("prompt-tuning", 1, False)]
    table = read_csv(out / "comparison.csv")
    assert list(table) == ["mtl", "prompt-tuning"]
    tasks = RECIPE["tasks"]
    for method, row in table.items():
        results = [json.loads((out / "runs" / method / f"seed-{s}" / "results.json").read_text()) for s in (0, 1)]
        assert [r["method"] for r in results] == [method, method]
        for task in tasks:
            values = [r["best_per_task"]["tasks"][task]["metrics"]["accuracy"] for r in results]
            assert float(row[f"{task}/accuracy_mean"]) == pytest.approx(statistics.fmean(values), abs=1e-12)
            assert float(row[f"{task}/accuracy_std"]) == pytest.approx(statistics.stdev(values), abs=1e-12)
        averages = [r["best_per_task"]["average"] for r in results]
        assert float(row["average_mean"]) == pytest.approx(statistics.fmean(averages), abs=1e-12)
        assert row["seeds"] == "2"
        step_times = []
        for seed in (0, 1):
            log = (out / "runs" / method / f"seed-{seed}" / "train_log.jsonl").read_text().splitlines()
            step_times.append(statistics.median(8 / json.loads(line)["examples_per_s"] for line in log))
        assert float(row["step_time_s"]) == pytest.approx(statistics.fmean(step_times), rel=1e-12)
    assert table["mtl"]["added_parameters"] == "0" and float(table["mtl"]["step_time_vs_mtl"]) == 1.0
    assert int(table["prompt-tuning"]["added_parameters"]) == 2 * 2 * 32  # tasks x prompt_length x d_model
    relative = float(table["prompt-tuning"]["step_time_s"]) / float(table["mtl"]["step_time_s"])
    assert float(table["prompt-tuning"]["step_time_vs_mtl"]) == pytest.approx(relative, rel=1e-12)
    markdown = (out / "comparison.md").read_text()
    assert markdown.startswith("| method | conflict_first accuracy | conflict_last accuracy | average |")
    mean, std = float(table["mtl"]["average_mean"]), float(table["mtl"]["average_std"])
    assert "| mtl | " in markdown and f"**{mean:.2f} ± {std:.2f}**" in markdown
    assert [row["label"] for row in table.values()] == ["mtl", "prompt-tuning"]
    first_table = (out / "comparison.csv").read_text()

    calls.clear()
    assert run_cli(str(recipe), "--out", str(out)) == 0  # everything finished: nothing retrains
    assert calls == []
    assert (out / "comparison.csv").read_text() == first_table

    (out / "runs" / "mtl" / "seed-1" / "results.json").unlink()  # an interrupted run is resumed, not restarted
    assert run_cli(str(recipe), "--out", str(out), "--seeds", "2") == 0
    assert calls == [("mtl", 1, True)]
    assert (out / "comparison.csv").read_text() == first_table
    assert "| prompt-tuning |" in capsys.readouterr().out

    # --archive: finished runs' small files kept elsewhere; a lost OUT is rebuilt from them without training
    archive = tmp_path / "archive"
    calls.clear()
    assert run_cli(str(recipe), "--out", str(out), "--archive", str(archive)) == 0 and calls == []
    archived = sorted(str(p.relative_to(archive)) for p in archive.rglob("*") if p.is_file())
    assert archived == sorted(["recipe.yaml", *(f"runs/{m}/seed-{s}/{name}" for m in ("mtl", "prompt-tuning")
                                                 for s in (0, 1) for name in compare_module.ARCHIVED_FILES)])
    fresh = tmp_path / "cmp-lost"
    assert run_cli(str(recipe), "--out", str(fresh), "--archive", str(archive)) == 0 and calls == []
    assert (fresh / "comparison.csv").read_text() == first_table
    assert run_cli(str(recipe), "--out", str(tmp_path / "cmp-other"), "--archive", str(archive),
                   "--set", "max_steps=5") == 2  # the archive holds another recipe's runs
    assert "archive holds a comparison of another recipe (changed: recipe.max_steps); choose another --archive" in \
        capsys.readouterr().err


def test_compare_refuses_another_recipe_in_the_same_out(recipe, tmp_path):
    comparison = load_comparison(recipe, methods=["mtl"], seeds=1)
    out = tmp_path / "cmp"
    out.mkdir()
    compare_module.check_recipe(out / "recipe.yaml", comparison)
    changed = load_comparison(recipe, methods=["mtl"], seeds=1, overrides=["max_steps=5"])
    with pytest.raises(ComparisonError, match="changed: recipe.max_steps"):
        compare_module.check_recipe(out / "recipe.yaml", changed)
    compare_module.check_recipe(out / "recipe.yaml", load_comparison(recipe, methods=["mtl", "adapter"], seeds=3))
    # how a run executes is not what it learns: another thread count or data folder continues the comparison
    compare_module.check_recipe(out / "recipe.yaml", load_comparison(
        recipe, methods=["mtl"], seeds=1, overrides=["num_threads=2", "data_dir=/elsewhere", "log_every=7"]))
    saved = yaml.safe_load((out / "recipe.yaml").read_text())  # and a file that still holds them is read as before
    (out / "recipe.yaml").write_text(yaml.safe_dump({**saved, "recipe": {**saved["recipe"], "num_threads": 4}}))
    compare_module.check_recipe(out / "recipe.yaml", comparison)


def test_a_methods_settings_may_change_once_its_runs_are_deleted(recipe, tmp_path):
    """A baseline found to be set up badly is retrained alone: its settings may change when OUT holds none of its
    runs; while it does, the call stops and names the folder and the changed key. The other methods' runs stay."""
    out = tmp_path / "cmp"
    out.mkdir()
    compare_module.check_recipe(out / "recipe.yaml", load_comparison(recipe, seeds=1))
    (out / "runs" / "prompt-tuning" / "seed-0").mkdir(parents=True)
    (out / "runs" / "mtl" / "seed-0").mkdir(parents=True)
    data = yaml.safe_load(recipe.read_text())
    data["compare"]["method_settings"]["prompt-tuning"] = {"prompt_length": 3}
    recipe.write_text(yaml.safe_dump(data))
    changed = load_comparison(recipe, seeds=1)
    with pytest.raises(ComparisonError, match=r"method_settings of prompt-tuning changed .*prompt_length.*"
                                              r"runs/prompt-tuning\).*delete those folders"):
        compare_module.check_recipe(out / "recipe.yaml", changed)
    (out / "runs" / "prompt-tuning" / "seed-0").rmdir()
    (out / "runs" / "prompt-tuning").rmdir()
    compare_module.check_recipe(out / "recipe.yaml", changed)  # no prompt-tuning runs left: accepted and saved
    assert yaml.safe_load((out / "recipe.yaml").read_text())["method_settings"]["prompt-tuning"] == {"prompt_length": 3}
    data["compare"]["method_settings"]["mtl"] = {"freeze_backbone": True}  # mtl has runs: refused
    recipe.write_text(yaml.safe_dump(data))
    with pytest.raises(ComparisonError, match=r"method_settings of mtl changed .*freeze_backbone"):
        compare_module.check_recipe(out / "recipe.yaml", load_comparison(recipe, seeds=1))


def test_compare_settings_and_errors(recipe, capsys):
    comparison = load_comparison(recipe, methods=["prompt-tuning", "hyperprompt-share"], seeds=3)
    assert comparison.seeds == [0, 1, 2]
    assert comparison.run_config("prompt-tuning", 2).method_config(["a"]).prompt_length == 2
    config = comparison.run_config("hyperprompt-share", 1)
    assert (config.method, config.seed, config.method_settings) == ("hyperprompt-share", 1, {})
    with pytest.raises(ComparisonError, match="unknown method.*'promt-tuning'"):
        load_comparison(recipe, methods=["promt-tuning"])
    bad = yaml.safe_load(recipe.read_text())
    bad["compare"]["method_settings"]["prompt-tuning"] = {"prompt_len": 3}
    recipe.write_text(yaml.safe_dump(bad))
    with pytest.raises(ComparisonError, match="method 'prompt-tuning'.*prompt_len"):
        load_comparison(recipe)
    assert run_cli(str(recipe), "--methods", "mtl,prompt-tuning") == 2
    assert "prompt_len" in capsys.readouterr().err


def test_a_method_setting_from_the_command_line_wins_over_the_recipes(recipe):
    """``--set method_settings.K=V`` reaches every compared method, also one with compare.method_settings (it was
    silently dropped there); it is part of the comparison's identity, and a method that lacks K is named."""
    plain = load_comparison(recipe, methods=["prompt-tuning"])
    changed = load_comparison(recipe, methods=["prompt-tuning"], overrides=["method_settings.prompt_length=5"])
    assert plain.run_config("prompt-tuning", 0).method_config(["a"]).prompt_length == 2
    assert changed.run_config("prompt-tuning", 0).method_config(["a"]).prompt_length == 5
    assert changed.saved_form() != plain.saved_form()
    global_run = load_comparison(recipe, methods=["hyperprompt-global"],
                                 overrides=["method_settings.encoder_prompt_length=3"]).run_config("hyperprompt-global", 0)
    assert global_run.method_config(["a"]).encoder_prompt_length == 3  # no compare.method_settings entry: the recipe's
    with pytest.raises(ComparisonError, match="method 'mtl'.*prompt_length"):
        load_comparison(recipe, methods=["mtl", "prompt-tuning"], overrides=["method_settings.prompt_length=5"])


def test_rows_are_labelled_with_the_settings_they_used(tmp_path):
    """A Global run with paper_exact is labelled so in both tables; the default Global would not be."""
    data = {k: v for k, v in RECIPE.items() if k != "compare"}
    data["compare"] = {"methods": ["hyperprompt-global"], "seeds": 1,
                       "method_settings": {"hyperprompt-global": {"paper_exact": True, "encoder_prompt_length": 2,
                                                                  "decoder_prompt_length": 1}}}
    path = tmp_path / "global.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "cmp"
    assert run_cli(str(path), "--out", str(out)) == 0
    assert read_csv(out / "comparison.csv")["hyperprompt-global"]["label"] == "hyperprompt-global (paper-exact)"
    assert "| hyperprompt-global (paper-exact) | " in (out / "comparison.md").read_text()
    results = json.loads((out / "runs" / "hyperprompt-global" / "seed-0" / "results.json").read_text())
    assert results["method_label"] == "hyperprompt-global (paper-exact)"


def test_the_reference_rows_majority_and_single_task(tmp_path, shared_data):
    """``compare.majority``: a row computed from the real CB and STS-B files, checked by hand here;
    ``compare.single_task``: mtl trained on CB alone, its row equal to that run's results."""
    data = {k: v for k, v in RECIPE.items() if k != "compare"}
    data.update(tasks=["superglue/cb", "glue/stsb"], data_dir=str(shared_data), max_input_length=16,
                max_steps=2, save_every=2, eval={"max_examples_per_task": 40, "batch_size": 8, "max_new_tokens": 2})
    data["compare"] = {"methods": ["mtl"], "seeds": 1, "majority": True, "single_task": ["superglue/cb"]}
    path = tmp_path / "majority.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "cmp"
    assert run_cli(str(path), "--out", str(out)) == 0
    table = read_csv(out / "comparison.csv")
    assert list(table) == ["mtl", "mtl-single", "majority"]
    single = json.loads((out / "runs" / "mtl-single" / "superglue_cb" / "seed-0" / "results.json").read_text())
    assert single["tasks"] == ["superglue/cb"]
    cb = single["best_per_task"]["tasks"]["superglue/cb"]["metrics"]
    assert float(table["mtl-single"]["superglue/cb/accuracy_mean"]) == pytest.approx(cb["accuracy"])
    assert table["mtl-single"]["glue/stsb/pearson_mean"] == "" and table["mtl-single"]["average_mean"] == "nan"
    row = table["majority"]
    cb_train = [json.loads(line)["label"] for line in (shared_data / "superglue" / "CB" / "train.jsonl").open()]
    cb_val = [json.loads(line)["label"] for line in (shared_data / "superglue" / "CB" / "val.jsonl").open()][:40]
    most = max(set(cb_train), key=cb_train.count)
    assert float(row["superglue/cb/accuracy_mean"]) == pytest.approx(100 * cb_val.count(most) / 40)
    assert float(row["glue/stsb/pearson_mean"]) == 0.0 and float(row["glue/stsb/spearman_mean"]) == 0.0
    assert row["added_parameters"] == "0" and row["step_time_s"] == "" and row["step_time_vs_mtl"] == ""
    markdown = (out / "comparison.md").read_text()
    assert "| majority class (most frequent training target) |" in markdown
    assert "| mtl, one model per task (single-task fine-tuning) |" in markdown and "**n/a**" in markdown
    bad = {**data, "compare": {**data["compare"], "single_task": ["superglue/rte"]}}
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ComparisonError, match=r"single_task: \['superglue/rte'\] are not among the recipe's tasks"):
        load_comparison(path)


def test_one_seed_table_shows_no_spread():
    """One seed has no sample std: the table gives the mean alone, never a misleading "± 0.00"."""
    from hyperprompt.training.compare import comparison_markdown

    row = {"method": "mtl", "label": "mtl", "seeds": [0], "metrics": {("glue/sst2", "accuracy"): (78.33, 0.0)},
           "average": (46.01, 0.0), "step_time": 0.5, "added_parameters": 0, "added_percent": 0.0}
    one = comparison_markdown([row])
    assert "| mtl | 78.33 | **46.01** |" in one and "±" not in one.splitlines()[2] and "One run over 1 seed" in one
    two = comparison_markdown([{**row, "seeds": [0, 1], "average": (46.01, 1.5)}])
    assert "**46.01 ± 1.50**" in two and "Mean ± sample std over 2 seed(s)" in two


def test_a_run_claimed_by_a_live_process_is_left_to_it_and_a_dead_ones_taken_over(recipe, tmp_path, monkeypatch):
    """Several compare calls may share one OUT: a run locked by a running process is skipped (and the tables wait
    for it); once that process is gone -- killed, so it released nothing itself -- its lock is free."""
    import subprocess
    import sys

    calls = []
    real_train = compare_module.train
    monkeypatch.setattr(compare_module, "train", lambda config, out_dir, resume=False: (
        calls.append((config.method, config.seed)), real_train(config, out_dir, resume=resume))[1])
    out = tmp_path / "cmp"
    run = out / "runs" / "prompt-tuning" / "seed-0"
    holder = (  # another process claims the run with the project's own lock, then waits to be killed
        "import sys, time; from hyperprompt.training.run_lock import RunLock; "
        f"assert RunLock({str(run)!r}).acquire() is None; print('held', flush=True); time.sleep(120)")
    other = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        logged = []
        comparison = load_comparison(recipe, seeds=1)
        assert compare_module.run_comparison(comparison, out, log=logged.append) is None
        assert calls == [("mtl", 0)] and not (out / "comparison.csv").exists()
        assert any(f"prompt-tuning seed 0: being trained by process {other.pid} on " in line for line in logged)
        assert "tables not written: 1 run(s) are still being trained by other processes" in logged[-1]
    finally:
        other.kill()
        other.wait()
    lock = run.with_name("seed-0.lock")
    assert lock.is_file()  # a killed holder leaves its file behind; the kernel dropped its lock
    calls.clear()
    rows = compare_module.run_comparison(comparison, out, log=lambda line: None)
    assert calls == [("prompt-tuning", 0)] and [row["method"] for row in rows] == ["mtl", "prompt-tuning"]
    assert (out / "comparison.csv").is_file() and not lock.exists()  # released (and removed) after training
    assert not list(out.rglob("*.lock*")) and not list(out.rglob(".*.tmp"))


def test_run_lock_excludes_a_second_claim_and_a_released_lock_can_be_claimed_again(tmp_path):
    """One holder at a time, within one process too (two RunLock objects on one run), and release hands the run on."""
    from hyperprompt.training.run_lock import RunLock

    first, second = RunLock(tmp_path / "run"), RunLock(tmp_path / "run")
    assert first.acquire() is None and first.held
    assert second.acquire().startswith(f"process {os.getpid()} on ") and not second.held
    first.release()
    assert not first.held and not (tmp_path / "run.lock").exists()
    assert second.acquire() is None and second.held
    second.release()


def test_restoring_leaves_a_run_claimed_by_another_process_alone(recipe, tmp_path):
    """restore_runs copies an archived run through a staging folder, under the run's lock: a run another process
    holds is not touched (not deleted, not half-copied), one nobody holds replaces an unfinished leftover."""
    from hyperprompt.training.run_lock import RunLock

    archive, out = tmp_path / "archive", tmp_path / "out"
    archived = archive / "runs" / "mtl" / "seed-0"
    archived.mkdir(parents=True)
    (archived / "results.json").write_text("{}")
    (archived / "train_log.jsonl").write_text("")
    leftover = out / "runs" / "mtl" / "seed-0"
    leftover.mkdir(parents=True)
    (leftover / "checkpoint-note").write_text("being trained")
    lock = RunLock(leftover)
    assert lock.acquire() is None
    try:
        assert compare_module.restore_runs(archive, out) == []
        assert (leftover / "checkpoint-note").is_file() and not (leftover / "results.json").exists()
    finally:
        lock.release()
    assert compare_module.restore_runs(archive, out) == [leftover]
    assert sorted(p.name for p in leftover.iterdir()) == ["results.json", "train_log.jsonl"]
    assert sorted(p.name for p in leftover.parent.iterdir()) == ["seed-0"]  # no staging folder or lock left


def test_two_compare_processes_share_one_grid_and_train_each_run_once(recipe, tmp_path):
    """Two real `hyperprompt compare` processes started together on one OUT: every run is trained by exactly one
    of them, and the tables (written by the one that finishes last) cover every run."""
    import os
    import subprocess
    import sys

    out = tmp_path / "cmp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "hyperprompt.cli.main", "compare", str(recipe), "--out", str(out), "--seeds", "2"]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(2)]
    logs = [process.communicate(timeout=600)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], logs
    trained = [line for log in logs for line in log.splitlines() if ": training -> " in line or ": resuming -> " in line]
    runs = [f"{method} seed {seed}" for seed in (0, 1) for method in ("mtl", "prompt-tuning")]
    assert sorted(line.split("] ", 1)[1].split(":")[0] for line in trained) == sorted(runs), logs
    assert not any(": resuming -> " in line for line in trained)
    table = read_csv(out / "comparison.csv")
    assert list(table) == ["mtl", "prompt-tuning"] and {row["seeds"] for row in table.values()} == {"2"}
    assert sum("wrote " in log for log in logs) >= 1 and not list(out.rglob("*.lock*"))
    for log in logs:  # both really competed: each trained some of the runs (not one after the other finished)
        assert any(": training -> " in line for line in log.splitlines()), logs
