"""The pipeline run through kfp.local: every stage a subprocess, as on a cluster but on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.__main__ import main
from pipelines.local import run_local

pytestmark = pytest.mark.slow  # each task starts a Python process that imports torch


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A tracking store of the test's own, set the way a user sets it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return uri


def test_local_run_goes_through_all_five_stages_and_tracks_each(pretrain_standard: Path, tmp_path: Path, local_env: str):
    from mlflow import MlflowClient

    result = run_local(pretrain_standard, tmp_path / "out")
    assert list(result.stages) == ["data-prep", "pretrain", "finetune", "evaluate", "export"]
    assert (result.exported / "model.safetensors").is_file()
    assert result.stages["pretrain"]["heldout_perplexity"] < result.stages["pretrain"]["initial_heldout_perplexity"]
    client = MlflowClient(local_env)
    parent = client.get_run(result.mlflow_run_id)
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(run.data.tags["nlpstd.stage"] for run in children) == ["data-prep", "evaluate", "export", "finetune", "pretrain"]
    assert all(run.info.status == "FINISHED" for run in children)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["exported"] == str(result.exported)


def test_failed_gate_skips_export_and_says_why(ner_standard: Path, tmp_path: Path, local_env: str, capsys):
    ner_standard.write_text(ner_standard.read_text().replace("min: 0.0", "min: 1.01"))
    assert main(["run", str(ner_standard), "--out", str(tmp_path / "out"), "--no-tracking"]) == 3
    captured = capsys.readouterr()
    assert "export     skipped: the gate failed" in captured.out
    assert captured.err.count("kfp.local ignores these settings of tiny-ner") == 1
    assert "export skipped: the gate failed (f1 " in captured.err and "< min 1.0100" in captured.err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["exported"] is None and "export" not in summary["stages"]
    assert not list((tmp_path / "out" / "pipeline").glob("*/export"))


def test_rerun_serves_data_prep_from_the_cache(ner_standard: Path, tmp_path: Path, local_env: str):
    first = run_local(ner_standard, tmp_path / "out", tracking=False)
    second = run_local(ner_standard, tmp_path / "out", tracking=False)
    assert second.run_dir != first.run_dir
    assert second.folders["data-prep"] == first.folders["data-prep"]
    assert second.folders["finetune"] != first.folders["finetune"], "training is never served from the cache"


def test_killed_run_resumes_training_from_its_checkpoint(ner_standard: Path, tmp_path: Path, local_env: str):
    import os
    import signal
    import subprocess
    import sys
    import time

    text = ner_standard.read_text()
    ner_standard.write_text(text.replace("epochs: 3", "epochs: 150"))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pipelines", "run", str(ner_standard), "--out", str(out), "--no-tracking"]
    first = subprocess.Popen(command, cwd=Path(__file__).parents[1], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(out.glob("checkpoints/*/finetune/checkpoints/last/state.json")):
        assert first.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the runner and its task, as a lost machine would
    first.wait()

    result = run_local(ner_standard, out, tracking=False)
    assert result.stages["finetune"]["resumed_from_step"] > 0
    assert result.run_dir not in result.folders["data-prep"].parents, "data-prep came from the first run's cache"


def test_without_a_parent_run_the_pipeline_opens_and_closes_its_own(ner_standard: Path, tmp_path: Path, local_env: str):
    """As on a cluster, where nothing outside the pipeline opens the MLflow run."""
    from kfp import local
    from mlflow import MlflowClient

    from nlpstd.spec import load_standard
    from pipelines.pipeline import build_pipeline

    std = load_standard(ner_standard)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    build_pipeline(std, "registry/nlpstd:1", "registry/nlpstd-gpu:1", retries=0)(standard=json.dumps(std.to_dict()))
    client = MlflowClient(local_env)
    experiment = client.get_experiment_by_name("tiny-ner").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`nlpstd.opened_by` = 'pipeline'")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["nlpstd.image"] == "registry/nlpstd-gpu:1"
    assert parent.data.params["finetune.lr"] == "0.003"
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(run.data.tags["nlpstd.stage"] for run in children) == ["data-prep", "evaluate", "export", "finetune"]
    assert all(run.info.status == "FINISHED" for run in children)


def test_failed_export_task_still_writes_summary_naming_it(ner_standard: Path, tmp_path: Path, local_env: str, capsys):
    ner_standard.write_text(ner_standard.read_text() + "export: {formats: [safetensors, onnx], parity: {max_abs_diff: 1.0e-12}}\n")
    assert main(["run", str(ner_standard), "--out", str(tmp_path / "out"), "--no-tracking"]) == 2
    assert "failed" in capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "failed" and summary["failed"]["stage"] == "export"
    assert {"finetune", "evaluate"} <= set(summary["stages"]) and "export" not in summary["stages"]
    assert summary["champion"]["decision"] == "promote" and summary["champion"]["outcome"] == "not promoted"
