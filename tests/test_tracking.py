"""MLflow: one parent run per `nlpstd run`, a nested run per stage, params, metrics and artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlpstd.runner import run_standard


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_run_logs_parent_and_nested_stage_runs(cls_standard: Path, tmp_path: Path, mlflow_uri: str):
    from mlflow import MlflowClient

    summary = run_standard(cls_standard, tmp_path / "out")
    client = MlflowClient(mlflow_uri)
    parent = client.get_run(summary["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["finetune.lr"] == "0.003"
    assert parent.data.tags["nlpstd.spec_hash"]
    assert "standard.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags["nlpstd.stage"] for r in children) == ["data-prep", "evaluate", "export", "finetune"]
    by_stage = {r.data.tags["nlpstd.stage"]: r for r in children}
    assert "validation_accuracy" in by_stage["evaluate"].data.metrics
    assert len(client.get_metric_history(by_stage["finetune"].info.run_id, "loss")) >= 2
    artifacts = {a.path for a in client.list_artifacts(by_stage["evaluate"].info.run_id, "evaluate")}
    assert "evaluate/report.md" in artifacts


def test_failed_stage_marks_the_runs_failed(cls_standard: Path, tmp_path: Path, mlflow_uri: str):
    from mlflow import MlflowClient

    from nlpstd.errors import GateFailed

    cls_standard.write_text(cls_standard.read_text().replace("min: 0.0", "min: 1.01"))
    with pytest.raises(GateFailed):
        run_standard(cls_standard, tmp_path / "out")
    runs = MlflowClient(mlflow_uri).search_runs(
        [MlflowClient(mlflow_uri).get_experiment_by_name("tiny-cls").experiment_id], "tags.nlpstd.stage = 'export'"
    )
    assert runs[0].info.status == "FAILED"


def test_unreachable_tracking_server_fails_before_any_stage(ner_standard: Path, tmp_path: Path, monkeypatch):
    import socket

    from nlpstd.errors import NlpstdError

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    with pytest.raises(NlpstdError, match=f"MLflow tracking server http://127.0.0.1:{port} does not answer"):
        run_standard(ner_standard, tmp_path / "out")
    assert not (tmp_path / "out").exists(), "nothing ran, nothing was written"


def test_stage_runs_carry_datasets_system_metrics_per_type_scores_and_device(ner_standard: Path, tmp_path: Path, mlflow_uri: str):
    from mlflow import MlflowClient

    summary = run_standard(ner_standard, tmp_path / "out")
    client = MlflowClient(mlflow_uri)
    parent = client.get_run(summary["mlflow_run_id"])
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_stage = {r.data.tags["nlpstd.stage"]: r for r in children}
    inputs = {d.dataset.name: d.dataset.digest for d in by_stage["data-prep"].inputs.dataset_inputs}
    assert set(inputs) == {"train", "validation", "test"}
    assert set(inputs.values()) == {by_stage["data-prep"].data.tags["nlpstd.data_fingerprint"][:16]}
    assert any(name.startswith("system/cpu_utilization") for name in by_stage["finetune"].data.metrics)
    assert "test_f1_PER" in by_stage["evaluate"].data.metrics
    assert by_stage["finetune"].data.tags["nlpstd.device"] == "cpu"
