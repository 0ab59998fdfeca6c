"""A standard's sweep on a cluster, as written: the KFP pipeline of its planned trials and the Katib Experiment."""

from __future__ import annotations

import builtins
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from katib_schema import EXPERIMENT

from conftest import GPU_RUNTIME
from nlpstd.errors import NlpstdError
from nlpstd.spec import load_standard, load_standard_text
from nlpstd.sweep import space
from pipelines.images import images
from pipelines.katib import SCRATCH, katib_experiment
from pipelines.sweep import compile_sweep

IMAGE = "registry.example.com/ml/nlpstd-gpu:0.1.0-abc"

GRID = """
sweep:
  strategy: grid
  variants:
    small-lr: {finetune.lr: 1.0e-4}
    big-lr: {finetune.lr: 1.0e-3}
  params:
    finetune.batch_size: [8, 16]
  parallelism: 2
"""

RANDOM = """
sweep:
  strategy: {strategy}
  params:
    finetune.lr: {{low: 1.0e-5, high: 1.0e-3, log: true}}
    finetune.batch_size: {{low: 8, high: 32, step: 8}}
    finetune.warmup_ratio: {{low: 0.0, high: 0.2}}
    finetune.group_by_length: [true, false]
  trials: 5
  parallelism: 3
  seed: 7
"""


def sweep_standard(base: Path, sweep: str, name: str = "sweep.yaml") -> Path:
    """The tiny NER standard on the GPU runtime with a sweep section, beside the base (its data files)."""
    path = base.parent / name
    path.write_text(base.read_text().replace("runtime: {threads: 1}\n", "") + GPU_RUNTIME + sweep)
    return path


@pytest.fixture
def grid_standard(ner_standard: Path) -> Path:
    return sweep_standard(ner_standard, GRID, "grid.yaml")


@pytest.fixture
def random_standard(ner_standard: Path) -> Path:
    return sweep_standard(ner_standard, RANDOM.format(strategy="random"), "random.yaml")


def compiled(standard: Path, tmp_path: Path) -> tuple[dict, dict]:
    """The two YAML documents: the pipeline spec and its Kubernetes platform settings."""
    refs = images()
    path = compile_sweep(load_standard(standard), refs.cpu, refs.gpu, tmp_path / "build")
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def loop(spec: dict) -> tuple[dict, dict]:
    """The for-loop task of the root DAG and its component."""
    (task,) = [t for name, t in spec["root"]["dag"]["tasks"].items() if name != "sweep-report"]
    return task, spec["components"][task["componentRef"]["name"]]


def executor(spec: dict, component_name: str) -> dict:
    return spec["deploymentSpec"]["executors"][spec["components"][component_name]["executorLabel"]]


# -- the KFP sweep pipeline ---------------------------------------------------------------------------

def test_the_loop_iterates_over_the_planned_points(grid_standard: Path, tmp_path: Path):
    spec, _ = compiled(grid_standard, tmp_path)
    task, _ = loop(spec)
    items = [json.loads(item) for item in json.loads(task["parameterIterator"]["items"]["raw"])]
    assert items == space.plan(load_standard(grid_standard))
    assert len(items) == 4 and {"variant": "big-lr", "finetune.batch_size": 16} in items


def test_at_most_sweep_parallelism_trials_run_at_once(grid_standard: Path, tmp_path: Path):
    spec, _ = compiled(grid_standard, tmp_path)
    task, _ = loop(spec)
    assert task["iteratorPolicy"]["parallelismLimit"] == 2


def test_a_random_sweep_compiles_the_same_seeded_points_every_time(random_standard: Path, tmp_path: Path):
    first, _ = compiled(random_standard, tmp_path / "a")
    second, _ = compiled(random_standard, tmp_path / "b")
    items = loop(first)[0]["parameterIterator"]["items"]["raw"]
    assert items == loop(second)[0]["parameterIterator"]["items"]["raw"]
    assert len(json.loads(items)) == 5


def test_each_iteration_runs_one_trial_task_with_its_point(grid_standard: Path, tmp_path: Path):
    spec, _ = compiled(grid_standard, tmp_path)
    task, component = loop(spec)
    trial = component["dag"]["tasks"]["sweep-trial"]
    assert trial["inputs"]["parameters"]["point"] == {"componentInputParameter": task["parameterIterator"]["itemInput"]}
    assert trial["inputs"]["parameters"]["standard"] == {"componentInputParameter": "pipelinechannel--standard"}


def test_the_trial_task_asks_for_the_gpus_and_the_training_resources(grid_standard: Path, tmp_path: Path):
    spec, _ = compiled(grid_standard, tmp_path)
    resources = executor(spec, "comp-sweep-trial")["container"]["resources"]
    assert (resources["accelerator"]["resourceType"], resources["accelerator"]["resourceCount"]) == ("nvidia.com/gpu", "2")
    assert (resources["resourceCpuRequest"], resources["resourceMemoryRequest"], resources["resourceMemoryLimit"]) == ("8", "32Gi", "40Gi")


def test_the_trial_task_runs_on_the_gpu_node_pool_with_shared_memory_and_the_work_volume(grid_standard: Path, tmp_path: Path):
    spec, platform = compiled(grid_standard, tmp_path)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(executors) == ["exec-sweep-trial"]
    settings = executors["exec-sweep-trial"]
    assert settings["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert settings["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert settings["emptyDirMounts"] == [{"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "4Gi", "volumeName": "dshm"}]
    assert settings["pvcMount"][0]["constant"] == "nlpstd-checkpoints"


def test_the_trial_task_retries_and_neither_task_is_cached(grid_standard: Path, tmp_path: Path):
    spec, _ = compiled(grid_standard, tmp_path)
    trial = loop(spec)[1]["dag"]["tasks"]["sweep-trial"]
    assert trial["retryPolicy"]["maxRetryCount"] == 3
    assert trial.get("cachingOptions", {}).get("enableCache", False) is False
    assert spec["root"]["dag"]["tasks"]["sweep-report"].get("cachingOptions", {}).get("enableCache", False) is False


def test_trials_run_on_the_gpu_image_and_the_report_on_the_cpu_image(grid_standard: Path, tmp_path: Path):
    spec, _ = compiled(grid_standard, tmp_path)
    refs = images()
    assert executor(spec, "comp-sweep-trial")["container"]["image"] == refs.gpu
    report = executor(spec, "comp-sweep-report")["container"]
    assert report["image"] == refs.cpu
    assert "accelerator" not in report["resources"]
    assert (report["resources"]["resourceCpuRequest"], report["resources"]["resourceMemoryRequest"]) == ("2", "8Gi")


def test_the_report_waits_for_the_loop_and_takes_every_trials_result(grid_standard: Path, tmp_path: Path):
    spec, _ = compiled(grid_standard, tmp_path)
    name = next(n for n in spec["root"]["dag"]["tasks"] if n != "sweep-report")
    report = spec["root"]["dag"]["tasks"]["sweep-report"]
    assert report["dependentTasks"] == [name]
    source = report["inputs"]["artifacts"]["results"]["taskOutputArtifact"]
    assert source["producerTask"] == name
    collected = loop(spec)[1]["dag"]["outputs"]["artifacts"][source["outputArtifactKey"]]
    assert collected["artifactSelectors"] == [{"outputArtifactKey": "result", "producerSubtask": "sweep-trial"}]
    assert spec["components"]["comp-sweep-report"]["inputDefinitions"]["artifacts"]["results"]["isArtifactList"] is True


def test_the_standard_parameter_defaults_to_the_resolved_sweep_standard(grid_standard: Path, tmp_path: Path):
    spec, _ = compiled(grid_standard, tmp_path)
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert load_standard_text(parameters["standard"]["defaultValue"]).spec_hash() == load_standard(grid_standard).spec_hash()
    assert parameters["work_dir"]["defaultValue"] == "/var/lib/nlpstd-work"
    assert spec["pipelineInfo"]["name"] == "nlpstd-tiny-ner-sweep"


def test_a_standard_without_a_sweep_is_a_clear_error(ner_standard: Path, tmp_path: Path):
    with pytest.raises(NlpstdError, match="no sweep section"):
        compile_sweep(load_standard(ner_standard), "cpu", "gpu", tmp_path)


@pytest.mark.slow
def test_a_local_run_trains_each_point_shares_prepared_data_and_recommends_one(ner_standard: Path, tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch):
    import warnings

    from kfp import local

    from pipelines.sweep import build_sweep_pipeline

    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # kfp.local indents task logs by swapping builtins.print; two parallel trials swap it from two threads
    # and can leave the indenting one in place for every later test: put the real one back afterwards
    monkeypatch.setattr(builtins, "print", builtins.print)
    ner_standard.write_text(ner_standard.read_text() + "sweep: {params: {finetune.lr: [3.0e-3, 1.0e-3]}}\n")
    std = load_standard(ner_standard)
    warnings.filterwarnings("ignore", module=r"kfp\.local")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"), raise_on_error=True)
    build_sweep_pipeline(std, "cpu", "gpu")(standard=json.dumps(std.to_dict()), work_dir=str(tmp_path / "work"))
    (report,) = (tmp_path / "root").glob("*/sweep-report")
    trials = json.loads((report / "report" / "trials.json").read_text())["trials"]
    assert sorted(t["point"]["finetune.lr"] for t in trials) == [1.0e-3, 3.0e-3]
    assert [t["number"] for t in sorted(trials, key=lambda t: t["point"]["finetune.lr"], reverse=True)] == [0, 1], "numbered as planned"
    assert len(list((tmp_path / "work").glob("*/sweep/data-prep-*"))) == 1, "both trials read one prepared data set"
    assert load_standard(report / "recommended").sweep is None
    assert "# Sweep: tiny-ner" in (report / "card").read_text()


# -- the Katib Experiment ------------------------------------------------------------------------------

def experiment(standard: Path, namespace: str | None = None) -> dict:
    return katib_experiment(load_standard(standard), IMAGE, namespace)


def container(manifest: dict) -> dict:
    (only,) = manifest["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"]
    return only


def parameters(manifest: dict) -> dict[str, dict]:
    return {p["name"]: p for p in manifest["spec"]["parameters"]}


@pytest.mark.parametrize("strategy", ["grid", "random", "bayes"])
def test_the_experiment_is_a_valid_katib_v1beta1_experiment(ner_standard: Path, strategy: str):
    sweep = GRID if strategy == "grid" else RANDOM.format(strategy=strategy) + "  pruning: {pruner: median}\n"
    manifest = experiment(sweep_standard(ner_standard, sweep), namespace="team-ml")
    jsonschema.validate(manifest, EXPERIMENT)
    spec = manifest["spec"]
    assert spec["parallelTrialCount"] <= spec["maxTrialCount"] and spec["maxFailedTrialCount"] <= spec["maxTrialCount"]
    assert manifest["metadata"] == {"name": "nlpstd-tiny-ner-sweep", "namespace": "team-ml",
                                    "labels": {"app.kubernetes.io/part-of": "nlpstd"}}


def test_the_schema_rejects_what_katib_would(grid_standard: Path):
    manifest = experiment(grid_standard)
    manifest["spec"]["trialTemplate"]["trialSpec"]["metadata"] = {"name": "fixed"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, EXPERIMENT)


@pytest.mark.parametrize("strategy, algorithm", [("grid", "grid"), ("random", "random"), ("bayes", "tpe")])
def test_each_strategy_maps_to_its_katib_algorithm_seeded_like_the_local_sweep(ner_standard: Path, strategy: str, algorithm: str):
    sweep = GRID if strategy == "grid" else RANDOM.format(strategy=strategy)
    manifest = experiment(sweep_standard(ner_standard, sweep))
    assert manifest["spec"]["algorithm"]["algorithmName"] == algorithm
    settings = {s["name"]: s["value"] for s in manifest["spec"]["algorithm"]["algorithmSettings"]}
    assert settings["random_state"] == ("42" if strategy == "grid" else "7")
    assert ("n_startup_trials" in settings) == (strategy == "bayes")


def test_the_objective_maximizes_the_validation_metric_the_trial_prints(grid_standard: Path):
    objective = experiment(grid_standard)["spec"]["objective"]
    assert (objective["type"], objective["objectiveMetricName"]) == ("maximize", "validation-f1")
    assert "train-f1" in objective["additionalMetricNames"]
    assert "goal" not in objective, "reaching the gate must not end the search early"
    assert {s["name"]: s["value"] for s in objective["metricStrategies"]}["validation-f1"] == "latest"


def test_variants_and_lists_become_categorical_parameters_of_strings(grid_standard: Path):
    found = parameters(experiment(grid_standard))
    assert found["variant"] == {"name": "variant", "parameterType": "categorical", "feasibleSpace": {"list": ["small-lr", "big-lr"]}}
    assert found["finetune.batch_size"]["feasibleSpace"] == {"list": ["8", "16"]}


def test_ranges_become_int_or_double_parameters_and_a_log_range_samples_log_uniform(random_standard: Path):
    found = parameters(experiment(random_standard))
    assert found["finetune.lr"] == {"name": "finetune.lr", "parameterType": "double",
                                    "feasibleSpace": {"min": "1e-05", "max": "0.001", "distribution": "logUniform"}}
    assert found["finetune.batch_size"] == {"name": "finetune.batch_size", "parameterType": "int",
                                            "feasibleSpace": {"min": "8", "max": "32", "step": "8"}}
    assert found["finetune.warmup_ratio"]["feasibleSpace"] == {"min": "0.0", "max": "0.2"}
    assert found["finetune.group_by_length"]["feasibleSpace"] == {"list": ["true", "false"]}


def test_max_trial_count_is_the_grid_size_or_the_number_of_trials(ner_standard: Path, random_standard: Path):
    assert experiment(random_standard)["spec"]["maxTrialCount"] == 5
    assert experiment(sweep_standard(ner_standard, GRID))["spec"]["maxTrialCount"] == 4
    capped = experiment(sweep_standard(ner_standard, GRID + "  trials: 3\n"))["spec"]
    assert (capped["maxTrialCount"], capped["parallelTrialCount"]) == (3, 2)


def test_pruning_asks_katib_for_median_stopping(random_standard: Path):
    assert "earlyStopping" not in experiment(random_standard)["spec"]
    random_standard.write_text(random_standard.read_text() + "  pruning: {pruner: median, startup_trials: 3, warmup_evaluations: 2}\n")
    stopping = experiment(random_standard)["spec"]["earlyStopping"]
    assert stopping["algorithmName"] == "medianstop"
    assert {s["name"]: s["value"] for s in stopping["algorithmSettings"]} == {"min_trials_required": "3", "start_step": "2"}


def test_trial_parameters_are_identifiers_that_reference_the_search_parameters(random_standard: Path):
    manifest = experiment(random_standard)
    template = manifest["spec"]["trialTemplate"]
    names = {p["name"] for p in manifest["spec"]["parameters"]}
    for parameter in template["trialParameters"]:
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", parameter["name"]), parameter
        assert parameter["reference"] in names or parameter["reference"] == "${trialSpec.Name}", parameter
    assert {p["reference"] for p in template["trialParameters"]} >= names, "every search parameter reaches the trial"


def test_every_substitution_in_the_trial_template_is_a_defined_trial_parameter(random_standard: Path):
    template = experiment(random_standard)["spec"]["trialTemplate"]
    text = json.dumps(template["trialSpec"])  # Katib substitutes into the template's JSON text
    used = set(re.findall(r"\$\{trialParameters\.(.+?)\}", text))
    assert used == {p["name"] for p in template["trialParameters"]}


def test_the_trial_command_carries_each_trial_parameter(random_standard: Path):
    manifest = experiment(random_standard)
    command = " ".join(container(manifest)["command"] + container(manifest)["args"])
    for parameter in manifest["spec"]["trialTemplate"]["trialParameters"]:
        assert f"${{trialParameters.{parameter['name']}}}" in command, parameter["name"]


def test_the_trial_container_runs_on_the_gpu_node_pool(grid_standard: Path):
    manifest = experiment(grid_standard)
    pod = manifest["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    trial = container(manifest)
    assert trial["image"] == IMAGE and trial["name"] == manifest["spec"]["trialTemplate"]["primaryContainerName"]
    assert trial["resources"] == {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"memory": "40Gi", "nvidia.com/gpu": "2"}}
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
    assert volumes["work"]["persistentVolumeClaim"] == {"claimName": "nlpstd-checkpoints"}
    assert manifest["spec"]["trialTemplate"]["trialSpec"]["spec"]["backoffLimit"] == 3


def test_the_standard_reaches_the_trial_as_an_environment_variable(grid_standard: Path):
    env = {e["name"]: e["value"] for e in container(experiment(grid_standard))["env"]}
    assert load_standard_text(env["NLPSTD_STANDARD"]).spec_hash() == load_standard(grid_standard).spec_hash()


def katib_substitutes(manifest: dict, point: dict, trial: str = "nlpstd-tiny-ner-sweep-x7k2p") -> dict:
    """The trial's Job as Katib makes it: each `${trialParameters.<name>}` replaced in the template's
    JSON text by the value as Katib holds it (a list entry, or a number as text)."""
    template = manifest["spec"]["trialTemplate"]
    values = {key: value if isinstance(value, str) else json.dumps(value) for key, value in point.items()}
    text = json.dumps(template["trialSpec"])
    for parameter in template["trialParameters"]:
        value = trial if parameter["reference"] == "${trialSpec.Name}" else values[parameter["reference"]]
        text = text.replace(f"${{trialParameters.{parameter['name']}}}", value)
    return json.loads(text)


@pytest.mark.parametrize("sweep", ["grid", "random"])
def test_the_trial_shell_line_hands_nlpstd_the_standard_and_a_point_of_the_plan(
        ner_standard: Path, tmp_path: Path, sweep: str):
    standard = sweep_standard(ner_standard, GRID if sweep == "grid" else RANDOM.format(strategy="random"))
    std = load_standard(standard)
    point = space.plan(std)[-1]
    job = katib_substitutes(katib_experiment(std, IMAGE), point)
    (trial,) = job["spec"]["template"]["spec"]["containers"]
    # a stand-in nlpstd records what it was given and prints a figure, as `nlpstd trial` does
    fake = tmp_path / "bin" / "nlpstd"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"json.dump(sys.argv[1:], open({str(tmp_path / 'argv.json')!r}, 'w'))\nprint('validation-f1=0.5')\n")
    fake.chmod(0o755)
    metrics = tmp_path / "metrics.log"
    # Katib's StdOut collector keeps `sh -c` and appends its redirection and completion mark to the line
    line = trial["args"][0].replace(SCRATCH, str(tmp_path / "scratch")) + f" 1>{metrics} 2>&1 && echo completed > {tmp_path / 'done'}"
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"} | {e["name"]: e["value"] for e in trial["env"]}
    subprocess.run(trial["command"] + [line], env=env, check=True)
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[0] == "trial"
    assert load_standard(argv[1]).spec_hash() == std.spec_hash()
    assert json.loads(argv[argv.index("--point") + 1]) == point
    assert argv[argv.index("--out") + 1].endswith("/nlpstd-tiny-ner-sweep/nlpstd-tiny-ner-sweep-x7k2p")
    assert "validation-f1=0.5" in metrics.read_text() and (tmp_path / "done").is_file()


def test_text_values_holding_a_quote_are_refused(ner_standard: Path):
    standard = sweep_standard(ner_standard, "sweep:\n  params:\n    description: [\"it's small\", plain]\n")
    with pytest.raises(NlpstdError, match="description.*quote"):
        experiment(standard)


def test_an_axis_mixing_text_and_numbers_is_refused(ner_standard: Path):
    standard = sweep_standard(ner_standard, "sweep:\n  params:\n    finetune.lr: [1.0e-4, \"3.0e-4\"]\n")
    with pytest.raises(NlpstdError, match="finetune.lr.*one kind"):
        experiment(standard)


# -- the command line --------------------------------------------------------------------------------

def test_sweep_command_writes_the_pipeline_and_the_katib_experiment(grid_standard: Path, tmp_path: Path, capsys,
                                                                     monkeypatch: pytest.MonkeyPatch):
    from pipelines.__main__ import main

    monkeypatch.setenv("KFP_NAMESPACE", "team-ml")
    assert main(["sweep", str(grid_standard), "--out", str(tmp_path / "build")]) == 0
    pipeline, manifest = tmp_path / "build" / "nlpstd-tiny-ner-sweep.yaml", tmp_path / "build" / "nlpstd-tiny-ner-sweep.katib.yaml"
    out = capsys.readouterr().out
    assert str(pipeline) in out and str(manifest) in out
    assert next(yaml.safe_load_all(pipeline.read_text()))["pipelineInfo"]["name"] == "nlpstd-tiny-ner-sweep"
    written = yaml.safe_load(manifest.read_text())
    jsonschema.validate(written, EXPERIMENT)
    assert written == katib_experiment(load_standard(grid_standard), images().gpu, "team-ml")


def test_sweep_command_without_a_sweep_section_says_so(ner_standard: Path, tmp_path: Path, capsys):
    from pipelines.__main__ import main

    assert main(["sweep", str(ner_standard), "--out", str(tmp_path / "build")]) == 2
    assert "no sweep section" in capsys.readouterr().err
    assert not (tmp_path / "build").exists()
