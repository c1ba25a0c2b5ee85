"""Bad input and faults (issue 14's audit): each test reproduces one defect the audit found.

Nothing outside the run directory is written, a mismatched resume refuses, bad numbers are refused
with a message naming the option, NaN recovery works, stale files are cleaned.
"""

from __future__ import annotations

import json

import pytest
import yaml

from hyperprompt.data import load_task_spec
from hyperprompt.data.task import check_task_name
from hyperprompt.training.checkpoint import child_path


def _user_task(directory, name: str):
    rows = [{"text": f"{i} {'a' * (i % 3)}", "label": i % 2} for i in range(40)]
    (directory / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"name": name, "train": "rows.jsonl", "validation": "rows.jsonl", "input_template": "x: {text}",
            "target_field": "label", "labels": ["even", "odd"]}
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("name", ["/some/dir", "user/../../../victim", "../victim", "user/..", "a/b/c",
                                  ".hidden", "user/.x", "User/Caps", "user/a b", "user\\..\\x"])
def test_a_task_name_that_could_leave_the_run_directory_is_refused(tmp_path, name):
    spec = _user_task(tmp_path, name)
    with pytest.raises(ValueError, match=r"is not a valid task name.*user/sentiment"):
        load_task_spec(spec, register=False)


@pytest.mark.parametrize("name", ["user/sentiment", "glue/mnli_matched", "superglue/cb", "mytask", "user/v1.2-x"])
def test_ordinary_task_names_pass(name):
    assert check_task_name(name) == name


def test_child_path_stays_inside(tmp_path):
    assert child_path(tmp_path, "user/a") == tmp_path / "user/a"
    for bad in ("/etc", "../x", "a/../../x", "."):
        with pytest.raises(ValueError, match="outside"):
            child_path(tmp_path, bad)


def test_train_with_an_escaping_task_name_writes_nothing_outside(tmp_path, tools):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    data = tmp_path / "data"
    data.mkdir()
    spec = _user_task(data, "user/../../../victim")
    recipe = {**tools.SYNTHETIC_RECIPE, "tasks": ["user/../../../victim", "synthetic/first"],
              "task_files": [str(spec)], "max_steps": 2, "save_every": 2}
    run_dir = tmp_path / "deep" / "er" / "run"
    result = tools.run_cli("train", tools.write_recipe(tmp_path / "r.yaml", recipe), "--out", run_dir)
    assert result.returncode != 0
    assert "is not a valid task name" in result.stderr
    assert "Traceback" not in result.stderr
    assert (victim / "precious.txt").read_text() == "keep me"
    # the recipe is resolved before anything is written: not even the run directory exists
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "r.yaml", "victim"]


# --- item 2: --resume with another recipe refuses ---------------------------------------------------------

def test_resume_with_another_task_order_refuses_and_keeps_the_config(tmp_path, tools):
    recipe = {**tools.SYNTHETIC_RECIPE, "tasks": ["synthetic/first", "synthetic/last"], "max_steps": 2, "save_every": 2}
    run = tmp_path / "run"
    assert tools.run_cli("train", tools.write_recipe(tmp_path / "a.yaml", recipe), "--out", run).returncode == 0
    saved = (run / "config.yaml").read_text()
    swapped = {**recipe, "tasks": ["synthetic/last", "synthetic/first"], "max_steps": 4}
    result = tools.run_cli("train", tools.write_recipe(tmp_path / "b.yaml", swapped), "--out", run, "--resume")
    assert result.returncode == 1
    assert "cannot resume" in result.stderr and "tasks: checkpoint ['synthetic/first', 'synthetic/last'], recipe " \
        "['synthetic/last', 'synthetic/first']" in result.stderr
    assert "Traceback" not in result.stderr
    assert (run / "config.yaml").read_text() == saved
    other = {**recipe, "method": "mtl", "method_settings": {}, "max_steps": 4}
    result = tools.run_cli("train", tools.write_recipe(tmp_path / "c.yaml", other), "--out", run, "--resume")
    assert result.returncode == 1 and "method: checkpoint 'hyperprompt-global', recipe 'mtl'" in result.stderr


# --- item 3: numeric options are validated -----------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (["evaluate", "RUN", "--batch-size", "-5"], "--batch-size: must be positive, got -5"),
    (["evaluate", "RUN", "--batch-size", "0"], "--batch-size: must be positive, got 0"),
    (["evaluate", "RUN", "--max-examples", "-3"], "--max-examples: must be at least 0, got -3"),
    (["predict", "RUN", "--task", "x", "--batch-size", "-5"], "--batch-size: must be positive, got -5"),
    (["predict", "RUN", "--task", "x", "--num-beams", "0"], "--num-beams: must be positive, got 0"),
    (["train", "r.yaml", "--out", "o", "--max-steps", "0"], "--max-steps: must be positive, got 0"),
    (["train", "r.yaml", "--out", "o", "--resume-from", "x"], "--resume-from: expected an integer, got 'x'"),
    (["compare", "r.yaml", "--seeds", "0"], "--seeds: must be positive, got 0"),
    (["analyze", "RUN", "--out", "o", "--examples", "-1"], "--examples: must be at least 0, got -1"),
    (["params", "--tasks", "0"], "--tasks: must be positive, got 0"),
    (["demo", "--steps", "-2"], "--steps: must be positive, got -2"),
])
def test_bad_numbers_are_refused_naming_the_option(argv, message, capsys):
    from hyperprompt.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# --- item 4: NaN recovery, --resume-from, checksums --------------------------------------------------------

def test_nan_recovery_resumes_from_the_checkpoint_before_the_bad_one(tmp_path, tools):
    recipe = tools.write_recipe(tmp_path / "r.yaml", {**tools.SYNTHETIC_RECIPE, "max_steps": 4, "save_every": 2,
                                                     "keep_last": 1})
    run = tmp_path / "run"
    assert tools.run_cli("train", recipe, "--out", run).returncode == 0
    # continue with a learning rate that breaks the weights at step 5: step 6's loss is NaN
    result = tools.run_cli("train", recipe, "--out", run, "--resume", "--max-steps", "8",
                           "--set", "optimizer.lr=1e9", "--set", "save_every=1")
    assert result.returncode == 3, result.stderr
    assert "non-finite loss (nan) at step 6" in result.stderr
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert checkpoints == ["step-00000004", "step-00000005"]  # keep_last=1, but the good one is kept
    assert (run / "checkpoints" / "step-00000005" / "NONFINITE").is_file()
    assert f"the last checkpoint known to be good is {run / 'checkpoints' / 'step-00000004'}" in result.stderr
    # the user lowers the learning rate and resumes: from step 4, not from the weights that gave NaN
    result = tools.run_cli("train", recipe, "--out", run, "--resume", "--max-steps", "8", "--set", "save_every=1")
    assert result.returncode == 0, result.stderr
    assert "skipping it" in result.stderr and "resumed from" in result.stdout + result.stderr
    assert "step-00000004 (step 4)" in result.stdout + result.stderr
    assert json.loads((run / "results.json").read_text())["train"]["steps"] == 8


def test_resume_from_a_chosen_step_moves_later_checkpoints_aside(tmp_path, tools):
    recipe = tools.write_recipe(tmp_path / "r.yaml", {**tools.SYNTHETIC_RECIPE, "max_steps": 6, "save_every": 2,
                                                     "keep_last": 3})
    run, reference = tmp_path / "run", tmp_path / "reference"
    assert tools.run_cli("train", recipe, "--out", run).returncode == 0
    assert tools.run_cli("train", recipe, "--out", reference).returncode == 0
    result = tools.run_cli("train", recipe, "--out", run, "--resume-from", "2")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000004",
                                                                       "step-00000006"]
    (abandoned,) = (run / "abandoned").iterdir()
    assert sorted(p.name for p in abandoned.iterdir()) == ["step-00000004", "step-00000006"]
    # the continuation from step 2 is exact: same weights as the uninterrupted run
    ours, theirs = tools.model_weights(run / "final"), tools.model_weights(reference / "final")
    assert all(ours[k].equal(theirs[k]) for k in theirs)
    result = tools.run_cli("train", recipe, "--out", run, "--resume-from", "3")
    assert result.returncode == 1 and "has no checkpoint of step 3 (it has: 2, 4, 6)" in result.stderr


def test_a_silently_corrupted_checkpoint_is_detected_and_skipped(tmp_path, tools):
    recipe = tools.write_recipe(tmp_path / "r.yaml", {**tools.SYNTHETIC_RECIPE, "max_steps": 4, "save_every": 2})
    run = tmp_path / "run"
    assert tools.run_cli("train", recipe, "--out", run).returncode == 0
    newest = run / "checkpoints" / "step-00000004" / "model" / "backbone" / "model.safetensors"
    data = bytearray(newest.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte inside a tensor: still loads, silently wrong
    newest.write_bytes(bytes(data))
    result = tools.run_cli("train", recipe, "--out", run, "--resume", "--max-steps", "6")
    assert result.returncode == 0, result.stderr
    assert "differs from checksums.json (corrupted): model/backbone/model.safetensors" in result.stderr
    assert "step-00000002 (step 2)" in result.stdout + result.stderr


# --- item 5: a fresh run does not reuse leftovers ----------------------------------------------------------

def test_a_fresh_run_refuses_a_non_empty_directory_and_resume_starts_over(tmp_path, tools):
    run = tmp_path / "run"
    run.mkdir()
    (run / "tokenizer").mkdir()  # left by a failed run of another recipe
    (run / "tokenizer" / "tokenizer_config.json").write_text("{}")
    recipe = tools.write_recipe(tmp_path / "r.yaml", {**tools.SYNTHETIC_RECIPE, "max_steps": 2, "save_every": 2})
    result = tools.run_cli("train", recipe, "--out", run)
    assert result.returncode == 1
    assert f"{run} is not empty (tokenizer): pass --resume" in result.stderr
    result = tools.run_cli("train", recipe, "--out", run, "--resume")  # no checkpoint: starts over
    assert result.returncode == 0, result.stderr
    assert (run / "tokenizer" / "tokenizer_config.json").read_text() != "{}"


# --- item 6: one-line errors instead of tracebacks ----------------------------------------------------------

def test_bad_models_and_output_directories_give_one_line_errors(tmp_path, tools):
    base = {**tools.SYNTHETIC_RECIPE, "max_steps": 2}
    result = tools.run_cli("train", tools.write_recipe(tmp_path / "m.yaml", {**base, "model": "t5-tiniest"}),
                           "--out", tmp_path / "a")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("config key 'model': 't5-tiniest' is neither a built-in preset (t5-tiny, t5-mini, llama-tiny, "
            "mistral-tiny, qwen2-tiny, qwen3-tiny, gemma2-tiny, gemma3-tiny, phi3-tiny, olmo2-tiny, bart-tiny, "
            "mbart-tiny, bert2bert-tiny, minilm-bert2bert) nor a local folder" in result.stderr)
    assert "need network access" in result.stderr
    recipe = tools.write_recipe(tmp_path / "r.yaml", base)
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = tools.run_cli("train", recipe, "--out", afile)
    assert result.returncode == 1 and f"--out {afile} is a file" in result.stderr
    result = tools.run_cli("train", recipe, "--out", afile / "run")
    assert result.returncode == 1 and "cannot write in --out" in result.stderr and "Traceback" not in result.stderr


def test_a_failed_write_names_the_file_and_keeps_the_checkpoint(tmp_path, tools):
    import subprocess
    import sys

    recipe = tools.write_recipe(tmp_path / "r.yaml", {**tools.SYNTHETIC_RECIPE, "max_steps": 4, "save_every": 2})
    run = tmp_path / "run"
    # a file size limit makes writes beyond it fail (EFBIG) like a full disk would (ENOSPC): checkpoints
    # of t5-tiny are ~1.5 MB, so the first checkpoint fits and the tokenisation cache too
    script = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000)); "
              "from hyperprompt.cli.main import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", script, "train", str(recipe), "--out", str(run)],
                            env=tools.cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: could not write " in result.stderr and "File too large" in result.stderr
    assert "run again with --resume" in result.stderr


def test_a_truncated_tokenisation_cache_is_rebuilt(tmp_path, tools):
    recipe = tools.write_recipe(tmp_path / "r.yaml", {**tools.SYNTHETIC_RECIPE, "max_steps": 2, "save_every": 2})
    run = tmp_path / "run"
    assert tools.run_cli("train", recipe, "--out", run).returncode == 0
    for cache in (run / "cache").glob("*.npz"):
        cache.write_bytes(cache.read_bytes()[:50])
    result = tools.run_cli("train", recipe, "--out", run, "--resume", "--max-steps", "3")
    assert result.returncode == 0, result.stderr
    assert "is unreadable" in result.stderr and "tokenising again" in result.stderr


# --- item 7: errors with a place ---------------------------------------------------------------------------

def test_invalid_utf8_in_a_data_file_names_file_and_line(tmp_path):
    from hyperprompt.data.sources import iter_table

    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"text": "ok", "label": 0}\n{"text": "caf\xe9", "label": 1}\n')
    with pytest.raises(ValueError, match=rf"{path}:2: not valid UTF-8"):
        list(iter_table(path))
    csv_path = tmp_path / "rows.tsv"
    csv_path.write_bytes(b"text\tlabel\nok\t0\nbad \xff\t1\n")
    with pytest.raises(ValueError, match=rf"{csv_path}:3: not valid UTF-8"):
        list(iter_table(csv_path))


def test_a_long_tsv_field_is_read(tmp_path):
    from hyperprompt.data.sources import iter_table

    path = tmp_path / "long.tsv"
    path.write_text("text\tlabel\n" + "x" * 300_000 + "\t1\n")
    ((_, row),) = list(iter_table(path))
    assert len(row["text"]) == 300_000


# --- items 7 and 8: predict reads a user task's own fields from the model folder, errors have a line -------

def test_predict_formats_a_user_tasks_raw_records_from_the_model_folder_alone(tmp_path, tools):
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"review": f"{'good' if i % 2 else 'bad'} film {i}", "stars": i % 2} for i in range(60)]
    (data / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"name": "user/reviews", "train": "reviews.jsonl", "validation": "reviews.jsonl",
            "input_template": "reviews: {review}", "target_field": "stars", "labels": {0: "negative", 1: "positive"}}
    (data / "reviews.yaml").write_text(yaml.safe_dump(spec))
    recipe = {**tools.SYNTHETIC_RECIPE, "tasks": ["user/reviews", "synthetic/first"],
              "task_files": [str(data / "reviews.yaml")], "max_input_length": 32, "max_steps": 2, "save_every": 2}
    run = tmp_path / "run"
    assert tools.run_cli("train", tools.write_recipe(tmp_path / "r.yaml", recipe), "--out", run).returncode == 0
    assert yaml.safe_load((run / "final" / "user_tasks.yaml").read_text())[0]["input_template"] == "reviews: {review}"
    import shutil

    shutil.rmtree(data)  # the model folder alone must do
    records = tmp_path / "in.jsonl"
    records.write_text('{"review": "it was nice"}\n{"review": "dull", "stars": 0}\n')
    out = tmp_path / "out.jsonl"
    result = tools.run_cli("predict", run / "final", "--task", "user/reviews", "--input", records, "--output", out)
    assert result.returncode == 0, result.stderr
    predicted = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["review"] for p in predicted] == ["it was nice", "dull"] and predicted[1]["stars"] == 0
    assert all(p["label_name"] in ("negative", "positive", None) for p in predicted)
    # the same input text as training built: predict's formatting equals the training example's
    from hyperprompt.training import load_run_checkpoint
    from hyperprompt.training.predict import input_text

    loaded = load_run_checkpoint(run / "final")
    (task,) = loaded.tasks(["user/reviews"], for_prediction=True)
    assert input_text(task, {"review": "it was nice"}) == "reviews: it was nice"
    # a record without the input field names the line and the field the user wrote
    records.write_text('{"review": "fine"}\n{"text": "wrong field"}\n')
    result = tools.run_cli("predict", run / "final", "--task", "user/reviews", "--input", records, "--output", out)
    assert result.returncode == 1
    assert f"error: {records} line 2: user/reviews: the example lacks the input field(s) ['review']" in result.stderr
    records.write_bytes(b'{"review": "fine"}\n{"review": "caf\xe9"}\n')
    result = tools.run_cli("predict", run / "final", "--task", "user/reviews", "--input", records, "--output", out)
    assert result.returncode == 1 and f"{records} line 2: not valid UTF-8" in result.stderr


def test_predict_streams_in_input_order(tmp_path, tools):
    import io

    from hyperprompt.training import load_run_checkpoint
    from hyperprompt.training.predict import predict_stream

    recipe = tools.write_recipe(tmp_path / "r.yaml", {**tools.SYNTHETIC_RECIPE, "max_steps": 1, "save_every": 1})
    run = tmp_path / "run"
    assert tools.run_cli("train", recipe, "--out", run).returncode == 0
    loaded = load_run_checkpoint(run / "final")
    texts = ["a b c d e f g h", "z", "q r s", "m n", "a", "k l m n o p"]
    source = [json.dumps({"inputs": f"first: {t}", "n": i}).encode() + b"\n" for i, t in enumerate(texts)]

    class Sink(io.StringIO):
        flushed: list[int] = []

        def flush(self):
            self.flushed.append(self.getvalue().count("\n"))

    sink = Sink()
    assert predict_stream(loaded, "synthetic/first", source, "mem", sink, batch_size=2, chunk_size=4) == 6
    rows = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [row["n"] for row in rows] == list(range(6))
    assert sink.flushed == [4, 6]  # written a chunk at a time
    whole = io.StringIO()
    predict_stream(loaded, "synthetic/first", source, "mem", whole, batch_size=6)
    assert whole.getvalue() == sink.getvalue()


# --- item 9: stale staging folders, tokenizer hash ----------------------------------------------------------

def test_stale_staging_folders_are_removed_and_a_resume_reuses_the_cache(tmp_path, tools):
    recipe = tools.write_recipe(tmp_path / "r.yaml", {**tools.SYNTHETIC_RECIPE, "max_steps": 2, "save_every": 2})
    run = tmp_path / "run"
    assert tools.run_cli("train", recipe, "--out", run).returncode == 0
    stale = [run / ".final.tmp-deadbeef", run / "best" / ".overall.tmp-0badf00d", run / "checkpoints" / ".step-00000004.tmp",
             run / ".final.old-12345678"]
    for path in stale:
        path.mkdir()
        (path / "weights").write_bytes(b"0" * 1000)
    caches = sorted(p.name for p in (run / "cache").iterdir())
    result = tools.run_cli("train", recipe, "--out", run, "--resume", "--max-steps", "3", "-v")
    assert result.returncode == 0, result.stderr
    assert not any(path.exists() for path in stale)
    assert f"removed {stale[0]}" in result.stdout + result.stderr
    # the tokenizer reloaded from OUT/tokenizer hashes like the original: the cache is reused, not rebuilt
    assert sorted(p.name for p in (run / "cache").iterdir()) == caches


def test_tokenizer_fingerprint_does_not_depend_on_where_it_was_loaded_from(tmp_path):
    from transformers import AutoTokenizer, ByT5Tokenizer

    from hyperprompt.data import train_tokenizer
    from hyperprompt.data.tokenize import tokenizer_fingerprint

    for index, tokenizer in enumerate((ByT5Tokenizer(), train_tokenizer((f"word{i} text" for i in range(200)),
                                                                        vocab_size=60))):
        tokenizer.save_pretrained(str(tmp_path / f"tok{index}"))
        reloaded = AutoTokenizer.from_pretrained(str(tmp_path / f"tok{index}"))
        assert tokenizer_fingerprint(reloaded) == tokenizer_fingerprint(tokenizer)
