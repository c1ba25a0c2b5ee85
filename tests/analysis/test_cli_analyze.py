"""`hyperprompt analyze` end to end on checkpoints written by `hyperprompt train` and by the demo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from matplotlib.image import imread

from hyperprompt.analysis import entropy_figure, prompt_mass_figure
from hyperprompt.cli import main as cli_main

RECIPE = """\
model: t5-tiny
model_overrides: {{dropout_rate: 0.0}}
method: {method}
method_settings: {settings}
tokenizer: trained
tokenizer_vocab_size: 300
data_dir: {data_dir}
tasks: [superglue/cb, superglue/copa]
max_input_length: 48
max_target_length: 6
batch_size: 8
max_steps: 2
save_every: 2
log_every: 1
eval: {{batch_size: 16, max_examples_per_task: 4}}
num_threads: 1
"""


def run_cli(argv: list[str]) -> int:
    """`hyperprompt ARGV` in this process, through the CLI's one error boundary."""
    return cli_main.main(argv)


def check_pngs(out, names):
    for name in names:
        path = out / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] > 300 and image.std() > 0, name


def test_analyze_is_a_cli_command():
    assert "analyze" in cli_main.COMMANDS


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    shared_data = Path(os.environ.get("HYPERPROMPT_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    root = tmp_path_factory.mktemp("train")
    runs = {}
    for method, settings in (("hyperprompt-global", "{encoder_prompt_length: 4, decoder_prompt_length: 2}"),
                             ("prefix-tuning", "{encoder_prompt_length: 3, decoder_prompt_length: 2}")):
        recipe = root / f"{method}.yaml"
        recipe.write_text(RECIPE.format(method=method, settings=settings, data_dir=shared_data))
        assert run_cli(["train", str(recipe), "--out", str(root / method)]) == 0
        runs[method] = root / method
    return runs


def test_analyze_train_checkpoints_with_baseline(trained_runs, tmp_path, capsys):
    out = tmp_path / "analysis"
    code = run_cli(["analyze", str(trained_runs["hyperprompt-global"] / "final"), "--baseline",
                    str(trained_runs["prefix-tuning"]), "--examples", "5", "--tasks", "cb", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "analysis.json").read_text())
    assert list(report["model"]["tasks"]) == ["superglue/cb"] == list(report["baseline"]["tasks"])
    assert report["model"]["method"] == "hyperprompt-global" and report["baseline"]["method"] == "prefix-tuning"
    assert report["model"]["prompt_length"] == {"encoder": 4, "decoder": 2}
    entry = report["model"]["tasks"]["superglue/cb"]
    assert entry["num_examples"] == 5
    for stack in ("encoder", "decoder"):
        assert len(entry[stack]["prompt_mass"]) == 2
        assert all(0 <= m <= 1 for m in entry[stack]["prompt_mass"])
    check_pngs(out, ["prompt_mass_encoder.png", "prompt_mass_decoder.png", "entropy_encoder.png", "entropy_decoder.png"])
    # the figures are drawn from the written numbers
    line = prompt_mass_figure(report, "encoder").axes[0].get_lines()[0]
    assert list(line.get_ydata()) == entry["encoder"]["prompt_mass"]
    assert "superglue/cb" in capsys.readouterr().out


def test_analyze_demo_runs(tmp_path):
    from hyperprompt.training.demo import run_demo

    run_demo(tmp_path / "demo", steps=2, plot=False)
    out = tmp_path / "analysis"
    code = run_cli(["analyze", str(tmp_path / "demo" / "hyperprompt-global"), "--baseline",
                    str(tmp_path / "demo" / "mtl"), "--examples", "6", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "analysis.json").read_text())
    assert list(report["model"]["tasks"]) == ["synthetic/first", "synthetic/last", "synthetic/reverse", "synthetic/max"]
    assert report["baseline"]["method"] == "mtl"
    for entry in report["baseline"]["tasks"].values():
        assert entry["encoder"]["prompt_mass"] is None and entry["decoder"]["prompt_mass"] is None
    assert report["model"]["entropy"]["encoder"]["count"] == sum(report["model"]["entropy"]["encoder"]["histogram"])
    # a mass figure for each stack the demo's HyperPrompt puts prompts in
    prompted = [stack for stack, length in report["model"]["prompt_length"].items() if length > 0]
    assert prompted
    check_pngs(out, [f"prompt_mass_{stack}.png" for stack in prompted] + ["entropy_encoder.png", "entropy_decoder.png"])
    assert sorted(p.name for p in out.glob("*.png")) == sorted(
        [f"prompt_mass_{stack}.png" for stack in prompted] + ["entropy_encoder.png", "entropy_decoder.png"])
    stairs = [p for p in entropy_figure(report, "decoder").axes[0].patches if not p.get_label().startswith("_")]
    assert list(stairs[1].get_data()[0]) == report["baseline"]["entropy"]["decoder"]["density"]


def test_analyze_reports_errors(trained_runs, tmp_path, capsys):
    code = run_cli(["analyze", str(trained_runs["prefix-tuning"]), "--tasks", "superglue/rte", "--out", str(tmp_path)])
    assert code == 1
    assert "not trained on" in capsys.readouterr().err
    assert run_cli(["analyze", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 1
