"""Fair comparisons: several methods trained with one recipe -- same data, steps and seeds -- into one table.

A comparison recipe is a training recipe (``docs/training.md``) with an optional ``compare`` section::

    model: t5-tiny
    tasks: [superglue/cb, superglue/copa]
    max_steps: 300
    compare:
      methods: [mtl, prompt-tuning, hyperprompt-global]   # default for --methods
      seeds: 3                                             # default for --seeds
      method_settings:                                     # per method, instead of the recipe's method_settings
        prompt-tuning: {prompt_length: 20}
      majority: true                                       # add the majority-class reference row
      single_task: [superglue/cb]                          # and MTL trained on each of these tasks alone

Each (method, seed) trains with :func:`~hyperprompt.training.train` into ``OUT/runs/<method>/seed-<seed>/``
(seeds are ``seed, seed + 1, ...`` from the recipe's ``seed``; every method of a seed before the next seed). A run whose ``results.json`` exists is
finished and is not recomputed; a run directory without one is resumed from its latest checkpoint.
Several ``compare`` calls may share one ``OUT`` (e.g. one per core or per GPU): each run is claimed by the
process training it (a ``flock`` on ``OUT/runs/<method>/seed-<seed>.lock``,
:mod:`~hyperprompt.training.run_lock`; the kernel drops it when that process ends), the others move on to
the next unclaimed run, and the call that finishes last writes the tables. The processes of one
``accelerate launch`` train each run together and take no lock: give a running launch its ``OUT`` alone.
``OUT/recipe.yaml`` keeps the recipe, so a later call with a different one stops instead of mixing runs; a
method's ``method_settings`` may change once its runs are deleted (the other methods' runs are kept).
With ``majority: true`` the table ends with a reference row that trains nothing: each task's most frequent
training target given for every evaluation example, scored with the same metrics. ``single_task`` lists tasks
that ``mtl`` also learns one at a time (same recipe and seeds, ``OUT/runs/mtl-single/<task>/seed-<seed>/``):
the reference row of single-task fine-tuning, with those tasks' columns only (its average is n/a).

The table (``OUT/comparison.md``, ``OUT/comparison.csv``) has one row per method, named by its label (the
method with its distinguishing settings, ``MethodConfig.label``): each task's metrics and
the benchmark average (mean ± sample std over seeds) of the per-task best checkpoints (the paper's
protocol; with evaluation only at the end, the final model), added parameters (% of the backbone), and
the training step time -- the median over a run's ``train_log.jsonl`` windows of ``batch_size /
examples_per_s`` (evaluation and checkpointing excluded), averaged over seeds -- relative to ``mtl``.
"""

from __future__ import annotations

import collections
import copy
import csv
import dataclasses
import io
import json
import math
import shutil
import statistics
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from accelerate import PartialState
from transformers import AutoConfig

from hyperprompt.data.metrics import benchmark_score, task_score
from hyperprompt.errors import TrainingInterrupted
from hyperprompt.files import write_text_atomic
from hyperprompt.model.config import MethodConfig
from hyperprompt.model.io import replace_directory
from hyperprompt.model.params import BackboneShape, added_parameters
from hyperprompt.model.presets import count_backbone_parameters
from hyperprompt.training.config import ConfigError, TrainConfig, apply_override
from hyperprompt.training.loop import train
from hyperprompt.training.recipe import resolve
from hyperprompt.training.run_lock import RunLock

RECIPE_NAME = "recipe.yaml"
RESULTS_NAME = "results.json"
#: keys of a saved ``method_config.json`` that describe the files, not the method
_SAVED_META_KEYS = ("format_version", "base_model_name_or_path", "backbone")


class ComparisonError(ConfigError):
    """A comparison that cannot run as asked (bad recipe, or OUT holds a different comparison)."""


@dataclass
class Comparison:
    """What to compare: a base recipe, the methods, the seeds and per-method settings.

    Attributes:
        recipe: the training recipe as plain data (without its ``compare`` section).
        methods: method names, in table order.
        seeds: the seed of each repetition.
        method_settings: ``{method: settings}`` replacing the recipe's ``method_settings`` for that method
            (the recipe's apply to its ``method``, or to every method when it names none).
        majority: add the majority-class reference row (:func:`majority_row`).
        single_task: tasks (canonical names, among the recipe's) that ``mtl`` also learns alone.
    """

    recipe: dict[str, Any]
    methods: list[str]
    seeds: list[int]
    method_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    majority: bool = False
    single_task: list[str] = field(default_factory=list)

    def run_config(self, method: str, seed: int) -> TrainConfig:
        """The training recipe of one (method, seed)."""
        data = copy.deepcopy(self.recipe)
        settings = self.method_settings.get(method)
        if settings is None:
            # the recipe's own settings belong to the recipe's own method; a recipe that names no method
            # gives them to every method (a key a method lacks is then an error naming it, never ignored)
            own = data.get("method")
            settings = data.get("method_settings", {}) if own in (None, method) else {}
        data.update(method=method, seed=seed, method_settings=copy.deepcopy(settings))
        try:
            return TrainConfig.from_dict(data)
        except ConfigError as error:
            raise ComparisonError(f"method {method!r}: {error}") from None

    def single_task_config(self, task: str, seed: int) -> TrainConfig:
        """The recipe of ``mtl`` trained on ``task`` alone."""
        config = self.run_config("mtl", seed)
        return dataclasses.replace(config, tasks=[task])

    def saved_form(self) -> dict[str, Any]:
        """What must match between calls that share an output directory (methods and seeds may grow; the
        :data:`RUNTIME_KEYS` may differ)."""
        return {"recipe": _without_runtime_keys(self.recipe), "method_settings": self.method_settings}


#: recipe keys that decide how a run executes on this machine, not what it learns: a comparison may continue
#: with other values (e.g. 1 thread while another job shares the cores, or the data in another folder)
RUNTIME_KEYS = ("num_threads", "data_dir", "cache_dir", "log_every")


def _without_runtime_keys(recipe: Any) -> Any:
    return {k: v for k, v in recipe.items() if k not in RUNTIME_KEYS} if isinstance(recipe, dict) else recipe


def load_comparison(
    path: str | Path,
    methods: list[str] | None = None,
    seeds: int | None = None,
    overrides: list[str] | None = None,
) -> Comparison:
    """Read a comparison recipe; ``methods`` / ``seeds`` (the number of seeds) override its ``compare``
    section, ``overrides`` (``KEY=VALUE``) its training keys; ``method_settings.K=V`` sets K for every compared
    method, over its ``compare.method_settings`` too (a method that lacks K is an error naming it). Every run's
    config is checked here."""
    path = Path(path)
    if not path.is_file():
        raise ComparisonError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ComparisonError(f"{path}: a recipe is a mapping of keys to values")
    section = data.pop("compare", None) or {}
    unknown = sorted(set(section) - {"methods", "seeds", "method_settings", "majority", "single_task"})
    if unknown:
        raise ComparisonError(f"unknown key(s) {unknown} in 'compare'; valid: majority, methods, method_settings, "
                              "seeds, single_task")
    for item in overrides or []:
        apply_override(data, item)
    methods = list(methods or section.get("methods") or [])
    if not methods:
        raise ComparisonError("no methods to compare: pass --methods m1,m2 or set compare.methods in the recipe")
    unknown_methods = [m for m in methods if m not in MethodConfig.registry]
    if unknown_methods:
        raise ComparisonError(f"unknown method(s) {unknown_methods}; choose from {', '.join(sorted(MethodConfig.registry))}")
    if len(set(methods)) != len(methods):
        raise ComparisonError(f"a method is listed twice: {methods}")
    count = int(seeds if seeds is not None else section.get("seeds", 1))
    if count < 1:
        raise ComparisonError(f"seeds must be at least 1, got {count}")
    method_settings = {str(k): dict(v or {}) for k, v in (section.get("method_settings") or {}).items()}
    for item in overrides or []:  # `--set method_settings.K=V` wins over compare.method_settings, for every method
        key, _, value = item.partition("=")
        if key.strip().startswith("method_settings."):
            for method in methods:
                if method in method_settings:
                    apply_override(method_settings[method], f"{key.strip().removeprefix('method_settings.')}={value}")
    first_seed = int(data.get("seed", 0))
    majority = section.get("majority", False)
    if not isinstance(majority, bool):
        raise ComparisonError(f"compare.majority must be true or false, got {majority!r}")
    single = section.get("single_task") or []
    if not isinstance(single, list) or not all(isinstance(t, str) for t in single):
        raise ComparisonError(f"compare.single_task must be a list of task names, got {single!r}")
    unknown_tasks = [t for t in single if t not in (data.get("tasks") or [])]
    if unknown_tasks:
        raise ComparisonError(f"compare.single_task: {unknown_tasks} are not among the recipe's tasks "
                              f"({', '.join(data.get('tasks') or [])}); use the names as 'tasks' writes them")
    comparison = Comparison(data, methods, [first_seed + k for k in range(count)], method_settings, majority=majority,
                            single_task=list(single))
    for method in methods:  # fail now, not after hours of training
        comparison.run_config(method, comparison.seeds[0])
    return comparison


def run_dir(out_dir: str | Path, method: str, seed: int) -> Path:
    return Path(out_dir) / "runs" / method / f"seed-{seed}"


def single_task_dir(out_dir: str | Path, task: str, seed: int) -> Path:
    """Where ``mtl`` learns ``task`` alone (task names are checked: ``glue/sst2`` -> ``glue_sst2``)."""
    return Path(out_dir) / "runs" / "mtl-single" / task.replace("/", "_") / f"seed-{seed}"


#: what a finished run keeps in an archive (``run_comparison(archive=...)``): all the tables read, a few kB
ARCHIVED_FILES = (RESULTS_NAME, "train_log.jsonl", "metrics.jsonl", "config.yaml", "final/model/method_config.json",
                  "final/model/backbone/config.json")


def archive_run(directory: Path, archived: Path) -> None:
    """Copy the small files of the finished run ``directory`` to ``archived`` (``results.json`` last, so an
    archived run is complete once it has one)."""
    for name in (*ARCHIVED_FILES[1:], ARCHIVED_FILES[0]):
        if (directory / name).is_file():
            target = archived / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(directory / name, target)


def restore_runs(archive: Path, out: Path) -> list[Path]:
    """Copy every archived finished run that ``out`` lacks into ``out`` (what the tables need; no weights).
    Returns the restored run directories.

    Each copy is made in a temporary folder and renamed into place, under the run's :class:`RunLock`: a run
    another process is restoring or training is left to it, and a reader never sees half a run."""
    restored = []
    for results in sorted(archive.glob(f"runs/**/{RESULTS_NAME}")):
        relative = results.parent.relative_to(archive)
        target = out / relative
        if (target / RESULTS_NAME).is_file():
            continue
        lock = RunLock(target)
        if lock.acquire() is not None:
            continue  # another process holds it; it restores or trains it
        try:
            if (target / RESULTS_NAME).is_file():  # restored by another process since the check above
                continue
            staging = target.with_name(f".{target.name}.restore-{uuid.uuid4().hex[:8]}")
            try:
                archive_run(results.parent, staging)
                replace_directory(staging, target)  # an unfinished copy of this run here is superseded
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            restored.append(target)
        finally:
            lock.release()
    return restored


def run_comparison(
    comparison: Comparison, out_dir: str | Path, log: Callable[[str], None] = print, archive: str | Path | None = None
) -> list[dict[str, Any]] | None:
    """Train every unfinished (method, seed) run, then write the tables; return the table rows, or None without
    writing them when runs claimed by other processes are still unfinished (they write the tables).

    ``archive``: a second folder (e.g. under version control) that keeps the small files of every finished
    run (:data:`ARCHIVED_FILES`, no weights) and the recipe; finished runs found there count as finished
    here, so a comparison that spans sessions survives the loss of ``out_dir``.

    Several ``compare`` processes (one per GPU, or one per session) may share one ``out_dir``: each run is
    claimed by a :class:`~hyperprompt.training.run_lock.RunLock` and trained by one of them. Under
    ``accelerate launch`` every process runs this; each run trains on all of them (no lock is taken: they
    train it together), and only the main process restores and writes the recipe and the tables. Do not
    start another launch, or a plain ``compare``, on the ``out_dir`` of a running ``accelerate launch``:
    its runs are not locked."""
    out = Path(out_dir)
    archive = Path(archive) if archive is not None else None
    state = PartialState()
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        check_recipe(out / RECIPE_NAME, comparison)
        if archive is not None:
            archive.mkdir(parents=True, exist_ok=True)
            check_recipe(archive / RECIPE_NAME, comparison, flag="--archive")
            for directory in restore_runs(archive, out):
                log(f"restored the finished run {directory} from {archive}")
    state.wait_for_everyone()
    # seed-major order: load drift on a shared machine then affects every method's step time alike,
    # and an interrupted comparison already has whole seeds of every method
    pairs = [(m, s, None) for s in comparison.seeds for m in comparison.methods]
    pairs += [("mtl", s, t) for s in comparison.seeds for t in comparison.single_task]
    busy: dict[str, Path] = {}  # runs other compare processes are training (one process, not under accelerate)
    for index, (method, seed, task) in enumerate(pairs, 1):
        directory = run_dir(out, method, seed) if task is None else single_task_dir(out, task, seed)
        name = method if task is None else f"mtl on {task} alone"
        if (directory / RESULTS_NAME).is_file():
            log(f"[{index}/{len(pairs)}] {name} seed {seed}: finished, kept ({directory})")
            if archive is not None and state.is_main_process:
                archive_run(directory, archive / directory.relative_to(out))
            continue
        lock = RunLock(directory) if state.num_processes == 1 else None
        holder = lock.acquire() if lock is not None else None
        if holder is not None:
            log(f"[{index}/{len(pairs)}] {name} seed {seed}: being trained by {holder} ({lock.path}); left to it")
            busy[f"{name} seed {seed}"] = directory
            continue
        try:
            if (directory / RESULTS_NAME).is_file():  # finished by another process since the check above
                continue
            resume = directory.is_dir()
            log(f"[{index}/{len(pairs)}] {name} seed {seed}: {'resuming' if resume else 'training'} -> {directory}")
            config = comparison.run_config(method, seed) if task is None else comparison.single_task_config(task, seed)
            train(config, directory, resume=resume)
        except TrainingInterrupted as stop:
            raise TrainingInterrupted(stop.step, stop.checkpoint, (
                f"interrupted at step {stop.step} of {name} seed {seed}; run the same command again to continue "
                "the comparison (finished runs are kept, the interrupted one resumes).")) from None
        finally:
            if lock is not None:
                lock.release()
        if archive is not None and state.is_main_process:
            archive_run(directory, archive / directory.relative_to(out))
    busy = {name: directory for name, directory in busy.items() if not (directory / RESULTS_NAME).is_file()}
    if busy:
        log(f"tables not written: {len(busy)} run(s) are still being trained by other processes ({', '.join(busy)}); "
            "the call that finishes last writes them, or run the same command again once they are done")
        return None
    rows = [summarize_method(out, method, comparison.seeds) for method in comparison.methods]
    if comparison.single_task:
        rows.append(single_task_row(out, comparison))
    if comparison.majority:
        rows.append(majority_row(comparison))
    if state.is_main_process:
        write_tables(out, rows)
    return rows


def check_recipe(path: Path, comparison: Comparison, flag: str = "--out") -> None:
    """Save the recipe on the first call; later calls must use the same training recipe (``flag``: the option
    that named the folder, for the message). A method's ``method_settings`` may change only while the folder
    holds no run of that method (``runs/<method>``, and ``runs/mtl-single`` for ``mtl``): delete a method's
    runs to retrain it with new settings, the other methods' runs are kept."""
    current = comparison.saved_form()
    if not path.is_file():
        write_text_atomic(path, yaml.safe_dump(current, sort_keys=False))
        return
    saved = yaml.safe_load(path.read_text()) or {}
    saved_recipe = _without_runtime_keys(saved.get("recipe"))  # files written before RUNTIME_KEYS hold them
    if saved_recipe != current["recipe"]:
        raise ComparisonError(
            f"{path.parent} holds a comparison of another recipe (changed: "
            f"{', '.join(_changed(saved_recipe, current['recipe'], 'recipe.'))}); choose another {flag}, or delete the "
            "runs that no longer apply and the saved recipe.yaml"
        )
    old, new = saved.get("method_settings") or {}, current["method_settings"]
    changed = [m for m in sorted(set(old) | set(new)) if old.get(m, {}) != new.get(m, {})]
    stale = {m: folders for m in changed if (folders := _method_run_folders(path.parent, m))}
    if stale:
        details = "; ".join(f"{m}: {', '.join(_changed(old.get(m, {}), new.get(m, {})))} (runs in "
                            f"{', '.join(map(str, folders))})" for m, folders in stale.items())
        raise ComparisonError(
            f"{path.parent}: the method_settings of {', '.join(stale)} changed since its runs were trained ({details}); "
            f"delete those folders to retrain with the new settings (the other methods' runs are kept), or choose "
            f"another {flag}"
        )
    if changed:  # settings of methods that have no runs here yet
        write_text_atomic(path, yaml.safe_dump(current, sort_keys=False))


def _method_run_folders(root: Path, method: str) -> list[Path]:
    folders = [root / "runs" / method] + ([root / "runs" / "mtl-single"] if method == "mtl" else [])
    return [folder for folder in folders if folder.is_dir()]


def _changed(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The flattened keys (``a.b``) whose values differ between two nested mappings."""
    old, new = _flat(old, prefix), _flat(new, prefix)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flat(value, f"{prefix}{key}."))
    return flat


# --- collecting results ---------------------------------------------------------------------------

def step_time(directory: Path, batch_size: int) -> float:
    """Seconds per training step: the median over ``train_log.jsonl`` windows of ``batch_size / examples_per_s``."""
    log_path = directory / "train_log.jsonl"
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not records:
        raise ComparisonError(f"{log_path} has no training records")
    return statistics.median(batch_size / r["examples_per_s"] for r in records)


def saved_method_config(directory: Path) -> MethodConfig:
    """The method config a finished run saved with its final model."""
    meta = json.loads((directory / "final" / "model" / "method_config.json").read_text())
    for key in _SAVED_META_KEYS:
        meta.pop(key, None)
    return MethodConfig.from_dict(meta)


def parameter_counts(directory: Path) -> tuple[int, int]:
    """(added, backbone) parameters of a finished run, from its saved configs and the closed-form formulas."""
    backbone_config = AutoConfig.from_pretrained(directory / "final" / "model" / "backbone")
    added = added_parameters(saved_method_config(directory), BackboneShape.from_config(backbone_config))
    return added, count_backbone_parameters(backbone_config)


def read_run(directory: Path) -> dict[str, Any]:
    """One finished run: per-task metrics and average (best checkpoint per task), step time, parameters,
    and its label (the method with its distinguishing settings, e.g. ``hyperprompt-global (paper-exact)``)."""
    results = json.loads((directory / RESULTS_NAME).read_text())
    best = results["best_per_task"]
    batch_size = results["train"]["examples"] // max(1, results["train"]["steps"])
    added, backbone = parameter_counts(directory)
    return {
        "label": saved_method_config(directory).label,
        "metrics": {task: dict(r["metrics"]) for task, r in best["tasks"].items()},
        "average": best["average"],
        "step_time": step_time(directory, batch_size),
        "added_parameters": added,
        "backbone_parameters": backbone,
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize_method(out_dir: Path, method: str, seeds: list[int]) -> dict[str, Any]:
    """A table row: each task metric and the average as (mean, std) over seeds, parameters, step time."""
    runs = [read_run(run_dir(out_dir, method, seed)) for seed in seeds]
    first = runs[0]
    metrics = {
        (task, metric): mean_std([run["metrics"][task][metric] for run in runs])
        for task, values in first["metrics"].items() for metric in values
    }
    return {
        "method": method,
        "label": first["label"],
        "seeds": seeds,
        "metrics": metrics,
        "average": mean_std([run["average"] for run in runs]),
        "added_parameters": first["added_parameters"],
        "added_percent": 100 * first["added_parameters"] / first["backbone_parameters"],
        "step_time": statistics.fmean(run["step_time"] for run in runs),
    }


def single_task_row(out_dir: Path, comparison: Comparison) -> dict[str, Any]:
    """The reference row of ``mtl`` trained on each ``single_task`` task alone: those tasks' metrics (mean, std
    over seeds; best checkpoint, as the other rows), their step time; no average (it would cover other tasks)."""
    metrics: dict[tuple[str, str], tuple[float, float]] = {}
    step_times = []
    for task in comparison.single_task:
        runs = [read_run(single_task_dir(out_dir, task, seed)) for seed in comparison.seeds]
        for metric in runs[0]["metrics"][task]:
            metrics[(task, metric)] = mean_std([run["metrics"][task][metric] for run in runs])
        step_times += [run["step_time"] for run in runs]
    return {"method": "mtl-single", "label": "mtl, one model per task (single-task fine-tuning)",
            "seeds": comparison.seeds, "metrics": metrics, "average": (math.nan, math.nan),
            "added_parameters": 0, "added_percent": 0.0, "step_time": statistics.fmean(step_times)}


def majority_row(comparison: Comparison) -> dict[str, Any]:
    """The reference row that trains nothing: per task, its most frequent training target (ties: the first
    seen) as the prediction for every evaluation example (the recipe's split and example cap), scored with
    the task's official metrics. A regression task (STS-B) gets a constant, whose correlations are 0."""
    config = comparison.run_config(comparison.methods[0], comparison.seeds[0])
    recipe = resolve(config)
    metrics, scores = {}, {}
    for task in recipe.tasks:
        guess = collections.Counter(ex["targets"] for ex in task.load("train")).most_common(1)[0][0]
        references = task.load(config.eval.split)[:config.eval.max_examples_per_task]
        values = task.compute_metrics([guess] * len(references), references)
        values = {name: 0.0 if math.isnan(value) else value for name, value in values.items()}
        metrics.update({(task.name, name): (value, 0.0) for name, value in values.items()})
        scores[task.name] = task_score(values)
    return {"method": "majority", "label": "majority class (most frequent training target)",
            "seeds": comparison.seeds, "metrics": metrics, "average": (benchmark_score(scores), 0.0),
            "added_parameters": 0, "added_percent": 0.0, "step_time": None}


# --- tables -----------------------------------------------------------------------------------------

def _relative_step_times(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    reference = next((row["step_time"] for row in rows if row["method"] == "mtl"), None)
    return {row["method"]: None if reference is None or row["step_time"] is None else row["step_time"] / reference
            for row in rows}


def _columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    columns: list[tuple[str, str]] = []
    for row in rows:
        columns += [key for key in row["metrics"] if key not in columns]
    return columns


def comparison_csv(rows: list[dict[str, Any]]) -> str:
    """The table as CSV, full precision: ``<task>/<metric>_mean``, ``..._std`` columns and the rest."""
    columns = _columns(rows)
    relative = _relative_step_times(rows)
    header = ["method", "label", "seeds"]
    for task, metric in columns:
        header += [f"{task}/{metric}_mean", f"{task}/{metric}_std"]
    header += ["average_mean", "average_std", "added_parameters", "added_percent", "step_time_s", "step_time_vs_mtl"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        line: list[Any] = [row["method"], row["label"], len(row["seeds"])]
        for key in columns:
            line += list(row["metrics"].get(key, ("", "")))
        line += [*row["average"], row["added_parameters"], row["added_percent"],
                 "" if row["step_time"] is None else row["step_time"],
                 "" if relative[row["method"]] is None else relative[row["method"]]]
        writer.writerow(line)  # floats at full precision (str(float) round-trips)
    return buffer.getvalue()


def _short_task(task: str) -> str:
    return task.split("/", 1)[-1]


def comparison_markdown(rows: list[dict[str, Any]]) -> str:
    """The table as Markdown: mean ± std over seeds, two decimals; rows named by their label."""
    columns = _columns(rows)
    relative = _relative_step_times(rows)
    header = ["method", *(f"{_short_task(t)} {m}" for t, m in columns), "average", "added params", "step time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["label"]]
        spread = len(row["seeds"]) > 1  # one seed has no spread: its mean alone, not "± 0.00"
        for key in columns:
            cells.append(_pm(row["metrics"][key], spread) if key in row["metrics"] else "")
        rel = relative[row["method"]]
        timing = "" if row["step_time"] is None else f"{1000 * row['step_time']:.0f} ms" + (
            "" if rel is None else f" ({rel:.2f}x)")
        cells += [f"**{_pm(row['average'], spread)}**", f"{row['added_parameters']:,} ({row['added_percent']:.2f}%)", timing]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = rows[0]["seeds"] if rows else []
    note = (f"\n{'Mean ± sample std' if len(seeds) > 1 else 'One run'} over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); per-task best checkpoint; "
            "added params as % of the backbone; step time: median training step (relative to mtl).\n")
    return "\n".join(lines) + "\n" + note


def _pm(value: tuple[float, float], spread: bool = True) -> str:
    mean, std = value
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.2f} ± {std:.2f}" if spread else f"{mean:.2f}"


def write_tables(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``comparison.csv`` and ``comparison.md`` into ``out_dir``, each atomically (two compare processes
    finishing together may both write them; a reader never sees half a table)."""
    for name, text in (("comparison.csv", comparison_csv(rows)), ("comparison.md", comparison_markdown(rows))):
        write_text_atomic(out_dir / name, text)
