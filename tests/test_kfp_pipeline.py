"""The Kubeflow pipeline as compiled: tasks, dependencies, the gate's condition, images, GPU node pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import GPU_RUNTIME
from nlpstd.errors import NlpstdError
from nlpstd.spec import load_standard, load_standard_text
from nlpstd.stages.task import check_pipeline_shape
from pipelines.images import images
from pipelines.pipeline import compile_pipeline

pytest_plugins = ["tests.kfp_api"]  # the kfp_api fixture: a test KFP API server on 127.0.0.1

@pytest.fixture
def gpu_pretrain_standard(pretrain_standard: Path) -> Path:
    text = pretrain_standard.read_text()
    assert "runtime: {threads: 1}\n" in text, "the fixture's runtime section is replaced, not repeated"
    pretrain_standard.write_text(text.replace("runtime: {threads: 1}\n", "") + GPU_RUNTIME)
    return pretrain_standard


def compiled(standard: Path, tmp_path: Path) -> tuple[dict, dict]:
    """The two YAML documents: the pipeline spec and its Kubernetes platform settings."""
    refs = images()
    path = compile_pipeline(load_standard(standard), refs.cpu, refs.gpu, tmp_path / "build")
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def all_tasks(spec: dict) -> dict[str, dict]:
    """Every task of the pipeline, those inside condition branches included."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return {name: task for name, task in tasks.items() if not name.startswith("condition-")}


def executor(spec: dict, task: dict) -> dict:
    component = spec["components"][task["componentRef"]["name"]]
    return spec["deploymentSpec"]["executors"][component["executorLabel"]]


def test_pipeline_has_the_five_stage_tasks(gpu_pretrain_standard: Path, tmp_path: Path):
    spec, _ = compiled(gpu_pretrain_standard, tmp_path)
    assert sorted(all_tasks(spec)) == ["data-prep", "evaluate", "export", "finetune", "pretrain"]


def test_tasks_depend_on_the_stage_before(gpu_pretrain_standard: Path, tmp_path: Path):
    spec, _ = compiled(gpu_pretrain_standard, tmp_path)
    root = spec["root"]["dag"]["tasks"]
    assert "dependentTasks" not in root["data-prep"]
    assert root["pretrain"]["dependentTasks"] == ["data-prep"]
    assert sorted(root["finetune"]["dependentTasks"]) == ["data-prep", "pretrain"]
    assert root["finetune"]["inputs"]["artifacts"]["pretrained"]["taskOutputArtifact"]["producerTask"] == "pretrain"
    assert sorted(root["evaluate"]["dependentTasks"]) == ["data-prep", "finetune"]


def test_export_runs_only_when_the_gate_passes(gpu_pretrain_standard: Path, tmp_path: Path):
    spec, _ = compiled(gpu_pretrain_standard, tmp_path)
    (name, condition), = [(n, t) for n, t in spec["root"]["dag"]["tasks"].items() if n.startswith("condition-")]
    assert "export" in spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert "export" not in spec["root"]["dag"]["tasks"]
    gate = condition["inputs"]["parameters"]["pipelinechannel--evaluate-Output"]["taskOutputParameter"]
    assert gate == {"outputParameterKey": "Output", "producerTask": "evaluate"}
    assert condition["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--evaluate-Output'] == true"


def test_disabled_pretraining_leaves_no_pretrain_task(ner_standard: Path, tmp_path: Path):
    spec, _ = compiled(ner_standard, tmp_path)
    tasks = all_tasks(spec)
    assert sorted(tasks) == ["data-prep", "evaluate", "export", "finetune"]
    assert "pretrained" not in tasks["finetune"]["inputs"].get("artifacts", {})


def test_training_tasks_run_on_the_gpu_image_and_the_rest_on_the_cpu_image(gpu_pretrain_standard: Path, tmp_path: Path):
    spec, _ = compiled(gpu_pretrain_standard, tmp_path)
    refs = images()
    for name, task in all_tasks(spec).items():
        expected = refs.gpu if name in ("pretrain", "finetune") else refs.cpu
        assert executor(spec, task)["container"]["image"] == expected, name
    assert refs.cpu.endswith(":" + refs.cpu.rsplit(":", 1)[1]) and refs.cpu.rsplit(":", 1)[1] == refs.gpu.rsplit(":", 1)[1]


def test_only_training_tasks_ask_for_gpus(gpu_pretrain_standard: Path, tmp_path: Path):
    spec, _ = compiled(gpu_pretrain_standard, tmp_path)
    for name, task in all_tasks(spec).items():
        resources = executor(spec, task)["container"].get("resources", {})
        if name in ("pretrain", "finetune"):
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert resources["accelerator"]["resourceCount"] == "2"
            assert (resources["resourceCpuRequest"], resources["resourceMemoryRequest"], resources["resourceMemoryLimit"]) == ("8", "32Gi", "40Gi")
        else:
            assert "accelerator" not in resources, name
            assert (resources["resourceCpuRequest"], resources["resourceMemoryRequest"]) == ("2", "8Gi")


def test_node_pool_settings_apply_to_training_tasks_only(gpu_pretrain_standard: Path, tmp_path: Path):
    spec, platform = compiled(gpu_pretrain_standard, tmp_path)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(executors) == ["exec-finetune", "exec-pretrain"]
    for settings in executors.values():
        assert settings["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
        assert settings["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert settings["emptyDirMounts"] == [{"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "4Gi", "volumeName": "dshm"}]
        assert settings["pvcMount"][0]["constant"] == "nlpstd-checkpoints"


def test_training_tasks_retry_and_only_data_prep_is_cached(gpu_pretrain_standard: Path, tmp_path: Path):
    spec, _ = compiled(gpu_pretrain_standard, tmp_path)
    for name, task in all_tasks(spec).items():
        assert task.get("cachingOptions", {}).get("enableCache", False) == (name == "data-prep"), name
        retries = task.get("retryPolicy", {}).get("maxRetryCount", 0)
        assert retries == (3 if name in ("pretrain", "finetune") else 0), name


def test_standard_parameter_defaults_to_the_resolved_standard(gpu_pretrain_standard: Path, tmp_path: Path):
    spec, _ = compiled(gpu_pretrain_standard, tmp_path)
    default = spec["root"]["inputDefinitions"]["parameters"]["standard"]["defaultValue"]
    assert load_standard_text(default).spec_hash() == load_standard(gpu_pretrain_standard).spec_hash()
    assert spec["root"]["inputDefinitions"]["parameters"]["work_dir"]["defaultValue"] == "/var/lib/nlpstd-work"


def test_a_standard_of_another_shape_is_refused_by_the_compiled_pipeline(ner_standard: Path):
    std = load_standard(ner_standard)
    with pytest.raises(NlpstdError, match="compiled with a pretrain task.*pretrain.enabled: false"):
        check_pipeline_shape(std, has_pretrain_task=True)
    check_pipeline_shape(std, has_pretrain_task=False)


def test_compile_command_writes_the_yaml_into_build(ner_standard: Path, tmp_path: Path, capsys):
    from pipelines.__main__ import main

    assert main(["compile", str(ner_standard), "--out", str(tmp_path / "build")]) == 0
    path = tmp_path / "build" / "nlpstd-tiny-ner.yaml"
    assert path.is_file()
    assert str(path) in capsys.readouterr().out
    assert json.loads(json.dumps(yaml.safe_load_all(path.read_text()).__next__()["pipelineInfo"]))["name"] == "nlpstd-tiny-ner"


# -- submit and schedule through the command line, up to the cluster's API ---------------------------

@pytest.fixture
def cluster_env(kfp_api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("KFP_HOST", kfp_api.host)
    monkeypatch.setenv("KFP_TOKEN", "secret-token")
    monkeypatch.delenv("KFP_NAMESPACE", raising=False)
    monkeypatch.delenv("KFP_TOKEN_FILE", raising=False)
    return kfp_api


def uploaded_pipeline(api) -> dict:
    request = api.request("POST", "/apis/v2beta1/pipelines/upload_version")
    return next(yaml.safe_load_all(request.parts["uploadfile"].data))


def test_submit_uploads_this_pipeline_and_starts_a_run(cluster_env, ner_standard: Path, tmp_path: Path, capsys):
    from pipelines.__main__ import main

    assert main(["submit", str(ner_standard), "--out", str(tmp_path / "build")]) == 0
    spec = uploaded_pipeline(cluster_env)
    assert spec["pipelineInfo"]["name"] == "nlpstd-tiny-ner"
    assert spec["root"]["dag"]["tasks"]["data-prep"]["cachingOptions"] == {"enableCache": True}
    run = cluster_env.request("POST", "/apis/v2beta1/runs")
    assert run.headers["authorization"] == "Bearer secret-token"
    assert run.json["display_name"].startswith("tiny-ner ")
    assert set(run.json["runtime_config"]["parameters"]) == {"data_stamp"}
    experiment = cluster_env.request("POST", "/apis/v2beta1/experiments")
    assert experiment.json["display_name"] == "tiny-ner"
    assert f"{cluster_env.host}/#/runs/details/" in capsys.readouterr().out


def test_schedule_creates_a_recurring_run_from_the_standards_cron(cluster_env, ner_standard: Path, tmp_path: Path, capsys):
    from pipelines.__main__ import main

    ner_standard.write_text(ner_standard.read_text() + '\nschedule: {cron: "30 2 * * 1", experiment: weekly-ner}\n')
    assert main(["schedule", str(ner_standard), "--out", str(tmp_path / "build")]) == 0
    recurring = cluster_env.request("POST", "/apis/v2beta1/recurringruns").json
    assert recurring["trigger"] == {"cron_schedule": {"cron": "0 30 2 * * 1"}}
    assert (int(recurring["max_concurrency"]), recurring["no_catchup"], recurring["mode"]) == (1, True, "ENABLE")
    assert recurring["display_name"] == "tiny-ner retraining"
    assert cluster_env.request("POST", "/apis/v2beta1/experiments").json["display_name"] == "weekly-ner"
    spec = uploaded_pipeline(cluster_env)
    assert spec["root"]["dag"]["tasks"]["data-prep"].get("cachingOptions", {}) == {}, "each scheduled run reads the data afresh"
    assert "export" in spec["components"]["comp-condition-1"]["dag"]["tasks"], "the gate decides export"
    assert "/#/recurringrun/details/" in capsys.readouterr().out


def test_schedule_without_a_schedule_section_is_a_clear_error(cluster_env, ner_standard: Path, capsys):
    from pipelines.__main__ import main

    assert main(["schedule", str(ner_standard)]) == 2
    assert "no schedule section" in capsys.readouterr().err
    assert cluster_env.calls == []


def test_submit_without_a_host_says_what_to_set(ner_standard: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    from pipelines.__main__ import main

    monkeypatch.delenv("KFP_HOST", raising=False)
    assert main(["submit", str(ner_standard)]) == 2
    assert "KFP_HOST" in capsys.readouterr().err


def test_images_without_an_engine_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, capsys):
    import socket

    from pipelines.__main__ import main

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    assert main(["images"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no Docker engine reachable") and "\n" not in err
