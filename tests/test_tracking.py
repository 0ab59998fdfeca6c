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


# -- a fresh local store, opened by two runs at the same moment

_OPEN_A_RUN_AT_THE_SIGNAL = """
import sys, time
from pathlib import Path

from nlpstd.spec import load_standard
from nlpstd.tracking import RunTracking

standard, barrier, me = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
std = load_standard(standard)
(barrier / me).touch()
while len(list(barrier.iterdir())) < 2:  # both processes imported everything: go together
    time.sleep(0.001)
with RunTracking(std).run() as tracking:
    print(tracking.run_id)
"""


def test_two_runs_opening_a_fresh_sqlite_store_at_once_both_succeed(ner_standard: Path, tmp_path: Path, monkeypatch):
    import os
    import subprocess
    import sys

    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    (tmp_path / "fresh").mkdir()
    (tmp_path / "barrier").mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    children = [subprocess.Popen([sys.executable, "-c", _OPEN_A_RUN_AT_THE_SIGNAL, str(ner_standard), str(tmp_path / "barrier"), name],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    outputs = [child.communicate(timeout=120) for child in children]

    assert [child.returncode for child in children] == [0, 0], [err[-1500:] for _, err in outputs]
    run_ids = {out.strip().splitlines()[-1] for out, _ in outputs}
    client = MlflowClient(uri)
    assert len(run_ids) == 2
    assert {client.get_run(run_id).info.status for run_id in run_ids} == {"FINISHED"}


def test_a_run_that_loses_the_race_to_create_its_experiment_joins_the_winners(mlflow_uri: str, monkeypatch):
    import mlflow

    from nlpstd.tracking import _experiment_id, tracking_client

    winner = tracking_client().create_experiment("raced")
    real = mlflow.MlflowClient.get_experiment_by_name
    answers = iter([None])  # the first lookup ran before the other process created it

    def looked_up_too_early(self, name):
        return next(answers, real(self, name))

    monkeypatch.setattr(mlflow.MlflowClient, "get_experiment_by_name", looked_up_too_early)

    assert _experiment_id("raced") == winner
