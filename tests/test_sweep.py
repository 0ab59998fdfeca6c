"""Sweeps: the `sweep` section, its search space, the Optuna study (resume, pruning, budget), the
report's recommendation, and the trial command a cluster runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import REPO, ner_yaml, write_conll_splits, write_standard
from nlpstd.errors import StandardError
from nlpstd.spec import load_standard
from nlpstd.sweep import space
from nlpstd.sweep.report import configurations, recommend, write_recommended, write_report
from nlpstd.sweep.study import _queue, open_study, run_sweep

GRID = """
    sweep:
      strategy: grid
      variants:
        slow: {finetune.lr: 1.0e-4}
        fast: {finetune.lr: 3.0e-3}
      params:
        finetune.batch_size: [8, 16]
"""


def sweep_standard(tmp_path: Path, tiny_base: Path, sweep: str, recipe: str = "") -> Path:
    """The tiny NER standard with a sweep section; `recipe` (a `finetune:` line) replaces its fine-tuning recipe."""
    write_conll_splits(tmp_path)
    text = ner_yaml(tiny_base)
    if recipe:
        text = "".join(recipe if line.startswith("finetune:") else line for line in text.splitlines(keepends=True))
    return write_standard(tmp_path, text + textwrap.dedent(sweep))


def ended(out: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{out / 'study.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


# -- the section


def test_a_sweep_axis_must_name_a_key_of_the_standard(tmp_path, tiny_base):
    path = sweep_standard(tmp_path, tiny_base, """
        sweep:
          params:
            finetune.lrate: [1.0e-4]
    """)
    with pytest.raises(StandardError) as error:
        load_standard(path)
    assert error.value.field == "sweep.params.finetune.lrate"
    assert error.value.line == path.read_text().splitlines().index("    finetune.lrate: [1.0e-4]") + 1
    assert "'finetune.lrate' is not a key of the standard" in str(error.value) and "lr" in str(error.value)


def test_a_sweep_value_that_makes_an_invalid_standard_is_refused_at_its_line(tmp_path, tiny_base):
    path = sweep_standard(tmp_path, tiny_base, """
        sweep:
          params:
            finetune.batch_size: [8, -4]
    """)
    with pytest.raises(StandardError) as error:
        load_standard(path)
    assert error.value.field == "sweep.params.finetune.batch_size[1]"
    assert "finetune.batch_size: must be > 0" in str(error.value)


def test_a_variant_is_checked_as_a_whole_standard(tmp_path, tiny_base):
    path = sweep_standard(tmp_path, tiny_base, """
        sweep:
          variants:
            scratch: {model: {size: tiny}}
    """)
    with pytest.raises(StandardError) as error:
        load_standard(path)
    assert error.value.field == "sweep.variants.scratch"
    assert "pretrain.enabled" in str(error.value)


def test_a_grid_refuses_a_range(tmp_path, tiny_base):
    path = sweep_standard(tmp_path, tiny_base, """
        sweep:
          params:
            finetune.lr: {low: 1.0e-5, high: 1.0e-3, log: true}
    """)
    with pytest.raises(StandardError, match="a grid takes a list of values"):
        load_standard(path)


def test_a_random_search_needs_a_number_of_trials(tmp_path, tiny_base):
    path = sweep_standard(tmp_path, tiny_base, """
        sweep:
          strategy: random
          params:
            finetune.lr: {low: 1.0e-5, high: 1.0e-3, log: true}
    """)
    with pytest.raises(StandardError) as error:
        load_standard(path)
    assert error.value.field == "sweep.trials"


def test_a_range_must_be_ordered(tmp_path, tiny_base):
    path = sweep_standard(tmp_path, tiny_base, """
        sweep:
          strategy: bayes
          trials: 4
          params:
            finetune.lr: {low: 1.0e-3, high: 1.0e-5}
    """)
    with pytest.raises(StandardError, match="low 0.001 must be below high 1e-05"):
        load_standard(path)


ENSEMBLE_EXPORT = """
        export: {formats: [safetensors, onnx], serving: {format: onnx}}  # an ensemble serves its ONNX graph
"""


def test_a_variant_cannot_vary_the_seed_of_an_ensemble(tmp_path, tiny_base):
    path = sweep_standard(tmp_path, tiny_base, ENSEMBLE_EXPORT + """
        sweep:
          variants:
            single: {finetune.lr: 1.0e-3}
            ensemble: {finetune.seeds: [1, 2], seed: 7}
    """)
    with pytest.raises(StandardError) as error:
        load_standard(path)
    assert error.value.field == "sweep.variants.ensemble.seed"
    assert error.value.line == path.read_text().splitlines().index("    ensemble: {finetune.seeds: [1, 2], seed: 7}") + 1
    assert "vary finetune.seeds instead" in str(error.value)


@pytest.mark.parametrize("recipe, variants", [
    ("finetune: {epochs: 1, lr: 3.0e-3, batch_size: 8, seeds: [3, 4]}\n", ""),  # the recipe trains one
    ("", """
          variants:
            single: {finetune.lr: 1.0e-3}
            ensemble: {finetune.seeds: [1, 2]}"""),  # one variant trains one
], ids=["recipe", "variant"])
def test_a_seed_axis_is_refused_where_a_trial_trains_an_ensemble(tmp_path, tiny_base, recipe: str, variants: str):
    path = sweep_standard(tmp_path, tiny_base, ENSEMBLE_EXPORT + """
        sweep:""" + variants + """
          params:
            seed: [1, 2]
    """, recipe=recipe)
    with pytest.raises(StandardError) as error:
        load_standard(path)
    assert error.value.field == "sweep.params.seed"


def test_a_seed_axis_over_single_models_is_a_sweep(tmp_path, tiny_base):
    path = sweep_standard(tmp_path, tiny_base, """
        sweep:
          params:
            seed: [1, 2]
    """)
    assert load_standard(path).sweep.params["seed"] == [1, 2]


# -- the space


def test_a_grid_is_every_combination_variants_outermost(tmp_path, tiny_base):
    std = load_standard(sweep_standard(tmp_path, tiny_base, GRID))
    assert space.grid(std.sweep) == [
        {"variant": "slow", "finetune.batch_size": 8}, {"variant": "slow", "finetune.batch_size": 16},
        {"variant": "fast", "finetune.batch_size": 8}, {"variant": "fast", "finetune.batch_size": 16},
    ]


def test_a_trial_standard_has_the_points_changes_and_no_sweep(tmp_path, tiny_base):
    std = load_standard(sweep_standard(tmp_path, tiny_base, GRID))
    trial = space.trial_standard(std, {"variant": "fast", "finetune.batch_size": 16})
    assert (trial.finetune.lr, trial.finetune.batch_size, trial.sweep) == (3e-3, 16, None)
    assert trial.finetune.epochs == std.finetune.epochs and trial.data == std.data


def test_a_variant_replaces_a_whole_section(tmp_path, tiny_base):
    std = load_standard(sweep_standard(tmp_path, tiny_base, """
        sweep:
          variants:
            rank4: {finetune.method: lora, finetune.lora: {r: 4}}
    """))
    trial = space.trial_standard(std, {"variant": "rank4"})
    assert (trial.finetune.method, trial.finetune.lora.r, trial.finetune.lora.alpha) == ("lora", 4, 16)


def test_a_random_plan_draws_the_same_points_from_the_same_seed(tmp_path, tiny_base):
    std = load_standard(sweep_standard(tmp_path, tiny_base, """
        sweep:
          strategy: random
          trials: 5
          params:
            finetune.lr: {low: 1.0e-5, high: 1.0e-2, log: true}
            finetune.batch_size: {low: 8, high: 32, step: 8}
    """))
    points = space.plan(std)
    assert points == space.plan(std) and len(points) == 5
    assert all(1e-5 <= p["finetune.lr"] <= 1e-2 and p["finetune.batch_size"] in (8, 16, 24, 32) for p in points)
    assert len({p["finetune.lr"] for p in points}) == 5


# -- the recommendation


def result(number: int, variant: str, value: float, parameters: int, seed: int = 1, passes: bool = True) -> dict:
    return {"number": number, "point": {"variant": variant, "seed": seed}, "changes": {"model.hidden": parameters, "seed": seed},
            "value": value, "train_metric": value + 0.01, "passes_gate": passes, "parameters": parameters,
            "flops": parameters * 10.0, "train_seconds": parameters / 100, "spec_hash": f"h{number}", "metric": "f1"}


def measured(result: dict, int8_value: float | None, int8_passes: bool = True) -> dict:
    """`result` with a footprint: fp32 figures, and int8's (None: int8 was skipped)."""
    int8 = int8_value is not None
    return {**result, "label": result["point"]["variant"], "state": "complete", "trial_seconds": 1.0, "changes": {"finetune.lr": 1e-3},
            "inference_flops": result["parameters"] * 2.0, "inference_tokens": 12, "cpu_ms": result["parameters"] / 1000,
            "cpu_threads": 1, "disk_bytes": result["parameters"] * 4, "int8_validation": {"f1": int8_value} if int8 else None,
            "int8_value": int8_value, "int8_metric_drop": result["value"] - int8_value if int8 else None,
            "int8_passes_gate": int8 and int8_passes, "int8_cpu_ms": result["parameters"] / 3000 if int8 else None,
            "int8_disk_bytes": result["parameters"] if int8 else None, "int8_skipped": None if int8 else "onnx not installed"}


def test_trials_that_differ_only_in_seed_are_one_configuration(tmp_path, tiny_base):
    configs = configurations([result(0, "a", 0.80, 100, seed=1), result(1, "a", 0.84, 100, seed=2), result(2, "b", 0.9, 200)])
    by_variant = {c["variant"]: c for c in configs}
    assert by_variant["a"]["trials"] == [0, 1]
    assert by_variant["a"]["value"] == pytest.approx(0.82) and by_variant["a"]["spread"] == pytest.approx(0.0283, abs=1e-4)
    assert "seed" not in by_variant["a"]["changes"]


def test_the_recommendation_is_the_smallest_within_tolerance_of_the_best(tmp_path, tiny_base):
    std = load_standard(sweep_standard(tmp_path, tiny_base, GRID))  # tolerance 0.01 by default
    configs = configurations([result(0, "small", 0.70, 1_000), result(1, "medium", 0.895, 5_000), result(2, "large", 0.90, 20_000)])
    chosen, reason = recommend(std, configs)
    assert chosen["variant"] == "medium"
    assert "within 0.01 of the best" in reason


def test_passes_gate_recommends_the_smallest_that_passes(tmp_path, tiny_base):
    std = load_standard(sweep_standard(tmp_path, tiny_base, GRID + "      objective: {recommend: passes-gate}\n"))
    configs = configurations([result(0, "small", 0.70, 1_000, passes=False), result(1, "medium", 0.80, 5_000),
                              result(2, "large", 0.90, 20_000)])
    assert recommend(std, configs)[0]["variant"] == "medium"
    none, reason = recommend(std, configurations([result(0, "small", 0.7, 1_000, passes=False)]))
    assert none is None and "no configuration passes the gate" in reason


def test_latency_as_the_cost_recommends_the_fastest_within_tolerance_not_the_smallest(tmp_path, tiny_base):
    std = load_standard(sweep_standard(tmp_path, tiny_base, GRID + "      objective: {cost: latency}\n"))
    fewer_parameters = {**measured(result(0, "deep-thin", 0.90, 1_000), int8_value=None), "cpu_ms": 9.0}
    faster = {**measured(result(1, "shallow-wide", 0.90, 2_000), int8_value=None), "cpu_ms": 3.0}
    chosen, reason = recommend(std, configurations([fewer_parameters, faster]))
    assert chosen["variant"] == "shallow-wide" and "the fewest CPU ms per example at batch 1" in reason


def test_the_recommendation_serves_int8_when_its_int8_graph_passes(tmp_path, tiny_base):
    std = load_standard(sweep_standard(tmp_path, tiny_base, GRID))
    configs = configurations([measured(result(0, "small", 0.895, 1_000), int8_value=0.890),
                              measured(result(1, "large", 0.90, 20_000), int8_value=0.899)])
    chosen, reason = recommend(std, configs)
    assert chosen["variant"] == "small" and chosen["serving"] == "onnx-int8"
    assert "within 0.01 of the best" in reason and "so it serves onnx-int8" in reason


def test_the_recommendation_stays_fp32_when_its_int8_graph_fails_or_is_missing(tmp_path, tiny_base):
    std = load_standard(sweep_standard(tmp_path, tiny_base, GRID))
    failing = configurations([measured(result(0, "small", 0.895, 1_000), int8_value=0.85, int8_passes=False),
                              measured(result(1, "large", 0.90, 20_000), int8_value=0.899)])
    chosen, reason = recommend(std, failing)
    assert chosen["variant"] == "small" and "serving" not in chosen  # int8 does not change which is chosen
    assert "does not pass the gate" in reason
    skipped = configurations([measured(result(0, "small", 0.895, 1_000), int8_value=None)])
    assert "serving" not in recommend(std, skipped)[0]


def test_an_int8_recommendation_loads_and_exports_and_serves_int8(tmp_path, tiny_base):
    std = load_standard(sweep_standard(tmp_path, tiny_base, GRID))
    chosen, reason = recommend(std, configurations([measured(result(0, "small", 0.895, 1_000), int8_value=0.890)]))
    write_recommended(std, chosen, reason, tmp_path / "recommended.yaml")
    recommended = load_standard(tmp_path / "recommended.yaml")
    assert recommended.export.formats == ["safetensors", "onnx-int8"] and recommended.export.serving.format == "onnx-int8"
    assert recommended.finetune.lr == 1e-3 and recommended.sweep is None


def test_the_report_table_shows_each_configurations_footprint_fp32_and_int8(tmp_path, tiny_base):
    std = load_standard(sweep_standard(tmp_path, tiny_base, GRID))
    results = [measured(result(0, "small", 0.895, 1_000), int8_value=0.890), measured(result(1, "large", 0.90, 20_000), int8_value=None)]
    write_report(std, results, tmp_path / "report")
    lines = (tmp_path / "report" / "report.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| configuration |"))
    for column in ("inference FLOPs", "CPU ms/example (batch 1)", "disk MB", "int8 f1", "int8 CPU ms/example", "int8 disk MB", "int8 gate"):
        assert f"| {column} |" in header
    small, large = (next(line for line in lines if line.startswith(f"| {name} |")) for name in ("small", "large"))
    assert "| 2e+03 | 1.00 | 0.0 |" in small and "| 0.8900 | 0.33 | 0.0 |" in small and small.endswith("| pass | pass |")
    assert "| 4e+04 | 20.00 | 0.1 |" in large and "| - | - | - |" in large and large.endswith("| pass | - |")
    assert (tmp_path / "report" / "plots" / "capability_vs_latency.png").is_file()


def test_a_latency_sweep_draws_each_plot_once_and_training_time_beside_it(tmp_path, tiny_base):
    std = load_standard(sweep_standard(tmp_path, tiny_base, GRID + "      objective: {cost: latency}\n"))
    results = [measured(result(0, "small", 0.895, 1_000), int8_value=0.890), measured(result(1, "large", 0.90, 20_000), int8_value=None)]
    write_report(std, results, tmp_path / "report")
    plots = [line.rsplit("/", 1)[-1].rstrip(")") for line in (tmp_path / "report" / "report.md").read_text().splitlines()
             if line.startswith("![")]
    assert len(plots) == len(set(plots)), plots
    assert {"capability_vs_latency.png", "capability_vs_seconds.png"} <= set(plots)


# -- the study


def test_a_grid_sweep_runs_every_point_and_writes_a_runnable_recommendation(tmp_path, tiny_base, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = sweep_standard(tmp_path, tiny_base, GRID)
    summary = run_sweep(path, tmp_path / "out", tracking=False)
    assert summary["trials"] == 4 and summary["pruned"] == 0
    report = tmp_path / "out" / "report"
    assert {p.name for p in (report / "plots").iterdir()} == {
        "capability_vs_parameters.png", "capability_vs_seconds.png", "capability_vs_latency.png", "train_vs_validation.png",
        "search_history.png"}
    recommended = load_standard(report / "recommended.yaml")
    chosen = summary["recommended"]
    assert recommended.name == "tiny-ner-recommended" and recommended.sweep is None
    assert recommended.finetune.lr == chosen["changes"]["finetune.lr"]
    assert recommended.finetune.batch_size == chosen["changes"]["finetune.batch_size"]
    text = (report / "report.md").read_text()
    assert chosen["label"] in text and text.count("| slow,") + text.count("| fast,") == 8  # by configuration and by trial
    trials = json.loads((report / "trials.json").read_text())["trials"]
    assert all(t["parameters"] > 0 and t["flops"] > 0 and 0 <= t["train_metric"] <= 1 for t in trials)
    assert all(t["inference_flops"] > 0 and t["cpu_ms"] > 0 and 0 < t["int8_disk_bytes"] < t["disk_bytes"] for t in trials)


def test_trials_share_prepared_data(tmp_path, tiny_base, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_sweep(sweep_standard(tmp_path, tiny_base, GRID), tmp_path / "out", tracking=False)
    folders = [p.name.split("-")[0] for p in (tmp_path / "out" / "shared").iterdir() if p.is_dir()]
    assert folders == ["data"]  # one prepared-data folder (beside it, the lock trials build it under)


def test_each_trial_is_a_nested_mlflow_run_under_the_sweep_run(tmp_path, tiny_base, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_sweep(sweep_standard(tmp_path, tiny_base, GRID), tmp_path / "out")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["tiny-ner"], output_format="list")
    (parent,) = [r for r in runs if "nlpstd.sweep" in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(r.data.tags["nlpstd.trial"]) for r in children) == [0, 1, 2, 3]
    assert all(r.info.status == "FINISHED" and "validation_f1" in r.data.metrics and "trial.variant" in r.data.params
               for r in children)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials"] == 4
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "sweep")}
    assert {"sweep/report.md", "sweep/recommended.yaml", "sweep/plots"} <= artifacts


def test_a_killed_sweep_reruns_only_the_trials_it_had_not_finished(tmp_path, tiny_base):
    path = sweep_standard(tmp_path, tiny_base, GRID, recipe="finetune: {epochs: 6, lr: 3.0e-3, batch_size: 8, checkpoint_every: 5}\n")
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "nlpstd.cli", "sweep", str(path), "--out", str(out), "--no-tracking"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        # the study's database is read only once trials have results: opening it while the sweep creates it races
        finished = len(list(out.glob("trials/*/result.json"))) >= 2
        if finished and len([t for t in ended(out) if t.state == TrialState.COMPLETE]) >= 2:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    first = {t.number: t.datetime_complete for t in ended(out)}
    assert 2 <= len(first) < 4

    summary = run_sweep(path, out, tracking=False)
    after = ended(out)
    assert summary["trials"] == 4
    assert sorted(space.point_key(t.params) for t in after) == sorted(space.point_key(p) for p in space.grid(load_standard(path).sweep))
    assert {t.number: t.datetime_complete for t in after if t.number in first} == first  # not rerun


def test_a_trial_cut_off_runs_again_at_the_same_point(tmp_path, tiny_base):
    std = load_standard(sweep_standard(tmp_path, tiny_base, GRID))
    study = open_study(std, tmp_path)
    cut_off = study.ask(space.axes(std.sweep))  # left RUNNING, as by kill -9
    target = _queue(std, study)
    assert target == 4
    assert study.trials[cut_off.number].state == TrialState.FAIL
    waiting = [t.system_attrs["fixed_params"] for t in study.get_trials(states=(TrialState.WAITING,))]
    assert waiting.count(cut_off.params) == 1 and len(waiting) == 4


PRUNED_GRID = """
    sweep:
      strategy: grid
      variants:
        good: {finetune.lr: 3.0e-3}
        frozen: {finetune.lr: 1.0e-9}
      params:
        seed: [1, 2]
      pruning: {pruner: median, startup_trials: 2, warmup_evaluations: 0}
"""


def test_pruning_stops_trials_that_trail_at_an_evaluation(tmp_path, tiny_base, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = sweep_standard(tmp_path, tiny_base, PRUNED_GRID,
                          recipe="finetune: {epochs: 4, lr: 3.0e-3, batch_size: 8, eval_every: 12, checkpoint_every: 12}\n")
    summary = run_sweep(path, tmp_path / "out", tracking=False)
    trials = json.loads((tmp_path / "out" / "report" / "trials.json").read_text())["trials"]
    states = {(t["point"]["variant"], t["point"]["seed"]): t["state"] for t in trials}
    assert states == {("good", 1): "complete", ("good", 2): "complete", ("frozen", 1): "pruned", ("frozen", 2): "pruned"}
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert all(len(t["curve"]) == 1 for t in pruned)  # stopped at the first evaluation
    assert summary["pruned"] == 2 and not any((tmp_path / "out" / "trials" / t["key"]).exists() for t in pruned)
    assert "Pruned" in (tmp_path / "out" / "report" / "report.md").read_text()


def test_max_minutes_stops_starting_trials(tmp_path, tiny_base, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = sweep_standard(tmp_path, tiny_base, GRID + "      max_minutes: 0.0001\n")
    assert run_sweep(path, tmp_path / "out", tracking=False)["trials"] == 1


def test_a_standard_without_a_sweep_is_refused(ner_standard):
    from nlpstd.errors import NlpstdError

    with pytest.raises(NlpstdError, match="no sweep section"):
        run_sweep(ner_standard, ner_standard.parent / "out", tracking=False)


# -- the trial command (what a cluster's trial task and Katib run)


def test_the_trial_command_prints_its_figures_as_name_value_lines(tmp_path, tiny_base):
    path = sweep_standard(tmp_path, tiny_base, GRID)
    point = json.dumps({"variant": "fast", "finetune.batch_size": 8})
    done = subprocess.run([sys.executable, "-m", "nlpstd.cli", "trial", str(path), "--point", point, "--out", str(tmp_path / "t")],
                          cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line and " " not in line)
    written = json.loads((tmp_path / "t" / "result.json").read_text())
    assert float(figures["validation-f1"]) == pytest.approx(written["value"], abs=1e-6)
    assert int(figures["parameters"]) == written["parameters"] and "train-f1" in figures


def test_the_trial_command_refuses_an_axis_the_sweep_does_not_have(tmp_path, tiny_base):
    from nlpstd.cli import main

    path = sweep_standard(tmp_path, tiny_base, GRID)
    assert main(["trial", str(path), "--point", '{"finetune.epochs": 2}', "--out", str(tmp_path / "t")]) == 2


def test_the_sweep_standards_load_and_plan(monkeypatch):
    monkeypatch.setenv("NLPSTD_DATA", str(REPO.parent / "shared" / "data"))
    for path in sorted((REPO / "standards").glob("sweep-*.yaml")):
        std = load_standard(path)
        assert space.plan(std), path
        assert yaml.safe_load(path.read_text())["sweep"]


def test_trials_sharing_a_folder_build_it_one_at_a_time(tmp_path):
    import threading

    from nlpstd.sweep.trial import _building

    order, inside = [], threading.Event()

    def first() -> None:
        with _building(tmp_path / "data-prep-x"):
            inside.set()
            time.sleep(0.3)
            order.append("first built")

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait()
    with _building(tmp_path / "data-prep-x"):  # waits for the first to finish
        order.append("second found it")
    thread.join()
    assert order == ["first built", "second found it"]
