"""Runs left RUNNING by a process that died without ending them (`kill -9`, a crash) are marked KILLED
by the next run of their experiment and by `nlpstd runs gc`; runs of live processes and of other
hosts are left alone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nlpstd.cli import main
from nlpstd.runner import run_standard
from nlpstd.tracking import PROCESS_TAG, process_tags, sweep_stale_runs, tracking_client


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _run_owned_by(owner: str, experiment: str = "stale") -> str:
    """A RUNNING run whose owner tag names `owner` (host:pid:start)."""
    client = tracking_client()
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    return client.create_run(experiment_id, run_name="owned", tags={PROCESS_TAG: owner}).info.run_id


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _status(run_id: str) -> str:
    return tracking_client().get_run(run_id).info.status


_OPEN_RUNS_AND_HANG = """
import sys, time
from nlpstd.spec import load_standard
from nlpstd.tracking import RunTracking

tracking = RunTracking(load_standard(sys.argv[1]))
with tracking.run(), tracking.stage("finetune"):
    print(tracking.run_id, flush=True)
    time.sleep(600)
"""


def test_the_runs_of_a_process_killed_with_sigkill_are_marked_killed_by_the_sweep(ner_standard: Path, mlflow_uri: str):
    child = subprocess.Popen([sys.executable, "-c", _OPEN_RUNS_AND_HANG, str(ner_standard)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri})
    parent_id = child.stdout.readline().strip()
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert _status(parent_id) == "RUNNING", "a killed process ends nothing"

    swept = sweep_stale_runs(["tiny-ner"])

    client = tracking_client()
    stage_id = client.search_runs([client.get_run(parent_id).info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")[0].info.run_id
    assert {run.run_id for run in swept.killed} == {parent_id, stage_id}
    assert _status(parent_id) == _status(stage_id) == "KILLED"


def test_runs_gc_marks_a_run_of_a_dead_process_killed_and_says_so(mlflow_uri: str, capsys):
    pid = _dead_pid()
    run_id = _run_owned_by(f"{socket.gethostname()}:{pid}:1")

    assert main(["runs", "gc"]) == 0

    assert f"mlflow: marked run {run_id} (owned) KILLED: its process {pid} on {socket.gethostname()} is gone" in capsys.readouterr().out
    assert _status(run_id) == "KILLED"


def test_a_run_whose_pid_now_belongs_to_another_process_is_marked_killed(mlflow_uri: str):
    run_id = _run_owned_by(f"{socket.gethostname()}:{os.getpid()}:1")  # this pid, but not this process's start time

    sweep_stale_runs()

    assert _status(run_id) == "KILLED"


def test_a_run_of_a_live_process_stays_running(mlflow_uri: str):
    run_id = _run_owned_by(process_tags()[PROCESS_TAG])

    swept = sweep_stale_runs()

    assert swept.killed == [] and _status(run_id) == "RUNNING"


def test_a_run_of_another_host_stays_running_and_gc_says_why(mlflow_uri: str, capsys):
    run_id = _run_owned_by(f"another-host.example:{_dead_pid()}:1")

    assert main(["runs", "gc", "--experiment", "stale"]) == 0

    assert _status(run_id) == "RUNNING"
    assert "left 1 running run(s) alone: 1 owned by a process on another host" in capsys.readouterr().out


def test_a_run_with_no_owner_recorded_stays_running(mlflow_uri: str):
    client = tracking_client()
    run_id = client.create_run(client.create_experiment("stale")).info.run_id

    swept = sweep_stale_runs()

    assert swept.without_owner == 1 and _status(run_id) == "RUNNING"


def test_gc_of_an_experiment_that_does_not_exist_exits_2_naming_it(mlflow_uri: str, capsys):
    assert main(["runs", "gc", "--experiment", "no-such"]) == 2

    assert "error: no MLflow experiment 'no-such'" in capsys.readouterr().err


def test_a_new_run_marks_the_stale_runs_of_its_experiment_killed(ner_standard: Path, tmp_path: Path, mlflow_uri: str, capsys):
    pid = _dead_pid()
    stale = _run_owned_by(f"{socket.gethostname()}:{pid}:1", experiment="tiny-ner")
    elsewhere = _run_owned_by(f"{socket.gethostname()}:{pid}:1", experiment="another-standard")

    run_standard(ner_standard, tmp_path / "out", stages=["data-prep"])

    assert f"mlflow: marked run {stale} (owned) KILLED: its process {pid}" in capsys.readouterr().out
    assert _status(stale) == "KILLED"
    assert _status(elsewhere) == "RUNNING", "a run sweeps its own experiment only"


def test_parent_and_stage_runs_name_the_process_that_owns_them(ner_standard: Path, tmp_path: Path, mlflow_uri: str):
    summary = run_standard(ner_standard, tmp_path / "out", stages=["data-prep"])

    client = tracking_client()
    parent = client.get_run(summary["mlflow_run_id"])
    stage = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")[0]
    assert parent.data.tags[PROCESS_TAG] == stage.data.tags[PROCESS_TAG] == process_tags()[PROCESS_TAG]
    host, pid, start = process_tags()[PROCESS_TAG].rsplit(":", 2)
    assert (host, int(pid)) == (socket.gethostname(), os.getpid()) and start


def test_a_sweep_that_fails_is_a_warning_and_the_run_goes_on(ner_standard: Path, tmp_path: Path, mlflow_uri: str, monkeypatch, capsys):
    from nlpstd import tracking

    _run_owned_by(f"{socket.gethostname()}:{_dead_pid()}:1", experiment="tiny-ner")  # so that there is something to sweep

    def broken(client, experiment_ids):
        raise RuntimeError("the store answered nonsense")

    monkeypatch.setattr(tracking, "_sweep", broken)
    summary = run_standard(ner_standard, tmp_path / "out", stages=["data-prep"])

    assert _status(summary["mlflow_run_id"]) == "FINISHED"
    assert "mlflow: warning: could not check experiment 'tiny-ner' for stale runs (RuntimeError: the store answered nonsense)" \
        in capsys.readouterr().err
