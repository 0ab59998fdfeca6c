"""The pipeline with every task in this checkout's CPU image (kfp.local's DockerRunner), against real
S3 and MLflow servers on loopback: as on a cluster, on this machine.

Without a Docker engine these tests skip, saying why; under CI they fail instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from nlpstd.errors import NlpstdError
from nlpstd.spec import load_standard
from pipelines.containers import OUT_LABEL, docker_execution, ensure_image, input_mounts, run_docker
from pipelines.local import LocalRun, run_local
from tests.conftest import write_conll_splits, write_standard
from tests.test_container_images import _engine_or_skip

if TYPE_CHECKING:
    from tests.servers import MlflowServer, S3Server

pytest_plugins = ["tests.servers"]
slow = pytest.mark.slow  # each run starts containers that import torch

REPO = Path(__file__).resolve().parents[1]
# Long enough to kill finetune after its first checkpoint (every 10 steps) and well before its last.
EPOCHS = 60


@pytest.fixture(scope="module")
def engine():
    client = _engine_or_skip()
    yield client
    client.close()


@pytest.fixture(scope="module")
def image(engine) -> str:
    """This checkout's CPU image, rebuilt when the tree is dirty (warm layers: seconds)."""
    return ensure_image(build=True)


@pytest.fixture(scope="module")
def standard(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Path:
    """The tiny NER standard, its files readable by the image's user as a data volume's would be."""
    folder = tmp_path_factory.mktemp("docker-std")
    write_conll_splits(folder)
    path = write_standard(folder, f"""
        name: tiny-ner-docker
        task: token-classification
        data: {{format: conll, train: train.txt, validation: dev.txt, test: test.txt, max_length: 32}}
        model: {{base: {tiny_base}}}
        finetune: {{epochs: {EPOCHS}, lr: 3.0e-4, batch_size: 8, warmup_ratio: 0.1, checkpoint_every: 10}}
        evaluate: {{gate: {{metric: f1, min: 0.0}}}}
        runtime: {{threads: 1}}
    """)
    for tree in (folder, tiny_base):
        subprocess.run(["chmod", "-R", "a+rX", str(tree)], check=True)
    return path


@pytest.fixture(scope="module")
def servers(s3_server: S3Server, _mlflow_process: MlflowServer) -> Iterator[MlflowServer]:
    """The environment the containers get: the MLflow server and the S3 endpoint behind it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", _mlflow_process.uri)
        mp.setenv("MLFLOW_S3_ENDPOINT_URL", s3_server.endpoint)
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield _mlflow_process


@pytest.fixture(scope="module")
def docker_run(engine, image: str, standard: Path, servers: MlflowServer,
               tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalRun, list[dict]]:
    """One uninterrupted run in containers, and the engine's start events of its containers."""
    out = tmp_path_factory.mktemp("docker-run") / "out"
    since = int(time.time()) - 1
    result = run_docker(standard, out, image=image, build=False)
    events = engine.events(since=since, until=int(time.time()) + 1, decode=True,
                           filters={"type": "container", "event": "start", "label": f"{OUT_LABEL}={out.resolve()}"})
    return result, list(events)


@pytest.fixture(scope="module")
def subprocess_run(standard: Path, servers: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> LocalRun:
    return run_local(standard, tmp_path_factory.mktemp("subprocess-run") / "out", tracking=False)


def _scores(result: LocalRun) -> dict[str, float]:
    return {k: v for k, v in result.stages["evaluate"].items() if k.endswith(("f1", "accuracy", "loss"))}


def _same_weights(a: LocalRun, b: LocalRun) -> bool:
    """Whether the two fine-tuned models hold identical tensors: a tiny model's F1 saturates, its weights do not."""
    import torch
    from safetensors.torch import load_file

    first, second = (load_file(run.folders["finetune"] / "model" / "model.safetensors") for run in (a, b))
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


@slow
def test_every_task_runs_in_a_container_of_the_checkouts_image(docker_run, image: str):
    result, events = docker_run
    assert list(result.stages) == ["data-prep", "finetune", "evaluate", "export"]
    assert len(events) == 4, "one container per task"
    assert {event["Actor"]["Attributes"]["image"] for event in events} == {image}


@slow
def test_task_outputs_are_written_by_the_images_non_root_user(docker_run):
    result, _ = docker_run
    owners = {path.stat().st_uid for stage in result.folders.values() for path in stage.rglob("*")}
    assert owners == ({1000} if os.getuid() == 0 else {os.getuid()})


@slow
def test_docker_run_scores_equal_the_subprocess_runs(docker_run, subprocess_run: LocalRun):
    result, _ = docker_run
    assert _scores(result) == _scores(subprocess_run)
    assert _same_weights(result, subprocess_run)
    assert result.stages["finetune"]["steps"] == subprocess_run.stages["finetune"]["steps"]


@slow
def test_parent_and_stage_runs_finish_on_the_mlflow_server(docker_run, servers: MlflowServer, image: str):
    from mlflow import MlflowClient

    result, _ = docker_run
    client = MlflowClient(servers.uri)
    parent = client.get_run(result.mlflow_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["nlpstd.runner"] == "kfp.local+docker"
    assert parent.data.tags["nlpstd.image"] == image
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(run.data.tags["nlpstd.stage"] for run in children) == ["data-prep", "evaluate", "export", "finetune"]
    assert all(run.info.status == "FINISHED" for run in children)


@slow
def test_container_killed_mid_finetune_resumes_on_rerun_with_the_same_scores(
        engine, image: str, standard: Path, servers: MlflowServer, docker_run, tmp_path: Path):
    out = (tmp_path / "out").resolve()
    command = [sys.executable, "-m", "pipelines", "run", "--docker", str(standard), "--out", str(out),
               "--no-tracking", "--image", image]
    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(out.glob("checkpoints/*/finetune/checkpoints/last/state.json")):
        assert first.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.1)
    (task,) = engine.containers.list(filters={"label": f"{OUT_LABEL}={out}"})
    task.kill()  # docker kill: SIGKILL, as a lost node would
    assert first.wait(timeout=120) != 0, "a killed task fails the run"

    result = run_docker(standard, out, tracking=False, image=image, build=False)
    assert result.stages["finetune"]["resumed_from_step"] > 0
    assert _scores(result) == _scores(docker_run[0])
    assert _same_weights(result, docker_run[0])


def test_containers_need_a_tracking_server(standard: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(NlpstdError, match="tasks in containers log to an MLflow server"):
        run_docker(standard, tmp_path / "out")
    assert not (tmp_path / "out").exists(), "refused before any folder or task"


def test_inputs_are_mounted_read_only_at_their_own_paths(ner_standard: Path, tiny_base: Path):
    mounts = input_mounts(load_standard(ner_standard))
    assert {(m.path, m.read_only) for m in mounts} == {(str(ner_standard.parent), True), (str(tiny_base), True)}


@pytest.mark.skipif(os.getuid() != 0, reason="as another user the tasks run under that user's own uid")
def test_an_input_the_tasks_user_cannot_read_is_named_before_any_task(ner_standard: Path, tmp_path: Path):
    subprocess.run(["chmod", "-R", "a+rX", str(ner_standard.parent)], check=True)
    (ner_standard.parent / "dev.txt").chmod(0o600)
    with pytest.raises(NlpstdError, match=r"uid 1000, which cannot read .*dev\.txt"):
        docker_execution(load_standard(ner_standard), tmp_path / "out", "nlpstd:test")


def test_training_shared_memory_of_the_standard_is_given_to_the_containers(ner_standard: Path, tmp_path: Path):
    subprocess.run(["chmod", "-R", "a+rX", str(ner_standard.parent)], check=True)
    execution = docker_execution(load_standard(ner_standard), tmp_path / "out", "nlpstd:test")
    assert execution.runner.container_run_args["shm_size"] == 2 * 2**30  # runtime.shm_size defaults to 2Gi


def test_a_fresh_s3_endpoint_sets_the_old_mlflow_store_aside(tmp_path: Path):
    """moto forgets its objects when it stops: a store that outlived them would name a champion
    whose files are gone, and evaluation would fail downloading it."""
    from pipelines import stack

    (tmp_path / "mlflow.db").write_bytes(b"runs and registered models")
    retired = stack.retire_store(tmp_path)
    assert retired is not None and retired.read_bytes() == b"runs and registered models"
    assert not (tmp_path / "mlflow.db").exists()
    assert stack.retire_store(tmp_path) is None, "no store, nothing to set aside"
