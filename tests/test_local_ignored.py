"""What a kfp.local run leaves untested: the standard's cluster-only settings, said once, with their values."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlpstd.errors import NlpstdError
from nlpstd.spec import RuntimeSpec, load_standard
from pipelines import local
from pipelines.local import ignored_locally, run_local

GPU_RUNTIME = """\
runtime:
  threads: 1
  gpu:
    count: 2
    node_selector: {pool: a100}
    tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}, {key: team, value: nlp}]
  training: {cpu: "8", memory: 32Gi}
  tasks: {cpu: 500m, memory_limit: 2Gi}
  shm_size: 8Gi
  retries: 3
  checkpoint_volume: nlpstd-checkpoints
schedule: {cron: "0 3 * * *"}
"""


def with_runtime(standard: Path, runtime: str) -> Path:
    standard.write_text(standard.read_text().replace("runtime: {threads: 1}\n", runtime))
    return standard


def test_gpu_node_pool_settings_are_each_listed_with_their_values(ner_standard: Path):
    lines = ignored_locally(load_standard(with_runtime(ner_standard, GPU_RUNTIME)))
    text = "\n".join(lines)
    assert "runtime.gpu: 2 x nvidia.com/gpu per training task" in text and "2 processes still start under torchrun" in text
    assert "runtime.gpu.node_selector: pool=a100" in text
    assert "runtime.gpu.tolerations: nvidia.com/gpu:NoSchedule, team=nlp: no taints" in text
    assert "runtime.training: cpu 8, memory 32Gi (pretrain and finetune)" in text
    assert "runtime.tasks: cpu 500m, memory limit 2Gi (data-prep, evaluate and export)" in text
    assert "runtime.shm_size: 8Gi" in text
    assert "runtime.retries: 3: a failed task ends the local run at once" in text
    assert "runtime.checkpoint_volume: PersistentVolumeClaim nlpstd-checkpoints" in text
    assert "schedule.cron: 0 3 * * *: runs once here" in text
    assert lines[0].startswith("images:")


def test_a_plain_cpu_standard_lists_only_what_a_cluster_would_apply(ner_standard: Path):
    """No GPU, node pool, volume or schedule: only the images and the defaults a cluster applies anyway."""
    lines = ignored_locally(load_standard(ner_standard))
    assert [line.split(":")[0] for line in lines] == ["images", "runtime.training", "runtime.tasks", "runtime.shm_size", "runtime.retries"]
    assert "runtime.training: cpu 4, memory 16Gi, memory limit 16Gi" in lines[1]


def test_no_retries_no_retry_line(ner_standard: Path):
    lines = ignored_locally(load_standard(with_runtime(ner_standard, "runtime: {threads: 1, retries: 0}\n")))
    assert not any(line.startswith("runtime.retries") for line in lines)


def test_every_runtime_setting_is_classified_as_local_or_cluster_only():
    """A new runtime setting must state on its field where it applies, or the local warning silently misses it."""
    from nlpstd.spec import CLUSTER, LOCAL, runtime_fields

    assert sorted(runtime_fields(LOCAL) + runtime_fields(CLUSTER)) == sorted(RuntimeSpec.model_fields)


def test_run_local_says_it_once_and_tags_the_parent_run(ner_standard: Path, tmp_path: Path, monkeypatch, capsys):
    """The pipeline itself is replaced by one that fails at once: what is checked happens before it runs."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # the store's artifacts land beside it

    def failing_pipeline(*args, **kwargs):
        def run(**parameters):
            raise RuntimeError("Task finetune failed")
        return run

    monkeypatch.setattr(local, "build_pipeline", failing_pipeline)
    with pytest.raises(NlpstdError, match="finetune failed"):
        run_local(with_runtime(ner_standard, GPU_RUNTIME), tmp_path / "out")
    err = capsys.readouterr().err
    assert err.count("kfp.local ignores these settings of tiny-ner") == 1
    assert "  - runtime.gpu.node_selector: pool=a100" in err
    client = MlflowClient(uri)
    (parent,) = client.search_runs([client.get_experiment_by_name("tiny-ner").experiment_id])
    assert "runtime.gpu.node_selector: pool=a100" in parent.data.tags["nlpstd.local_ignored"]
