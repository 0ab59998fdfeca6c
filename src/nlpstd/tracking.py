"""MLflow conventions behind a small interface: stages and the training loop never call mlflow directly.

One parent run per `nlpstd run`, one nested run per stage. With no MLFLOW_TRACKING_URI set,
runs go to a local SQLite file (`./mlflow.db`, artifacts in `./mlartifacts`), so a fresh
machine needs no server.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import Standard


class Tracker(Protocol):
    run_id: str | None

    def log_params(self, params: dict[str, str]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, folder: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_dataset(self, name: str, source: str, digest: str, context: str) -> None: ...


class NullTracker:
    """Tracks nothing (tracking switched off, or a stage run on its own)."""

    run_id = None

    def log_params(self, params: dict[str, str]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, folder: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_dataset(self, name: str, source: str, digest: str, context: str) -> None: ...


class MlflowTracker:
    """Logs into one MLflow run (by id, so nested runs never depend on the active-run stack)."""

    def __init__(self, run_id: str):
        from mlflow import MlflowClient

        self.run_id, self._client = run_id, MlflowClient()

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if isinstance(v, (int, float))]
        if items:
            self._client.log_batch(self.run_id, metrics=items)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self._client.log_artifacts(self.run_id, str(path), folder)
        else:
            self._client.log_artifact(self.run_id, str(path), folder)

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self._client.set_tag(self.run_id, key, str(value))

    def log_dataset(self, name: str, source: str, digest: str, context: str) -> None:
        """A run input that names the file (local or s3://) and the data's fingerprint, without copying it."""
        import warnings

        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        with warnings.catch_warnings():  # the resolver warns when several source kinds could match
            warnings.simplefilter("ignore")
            dataset = MetaDataset(source=resolve_dataset_source(source), name=name, digest=digest)
        entity = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])
        self._client.log_inputs(self.run_id, datasets=[entity])


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast on a tracking server that does not answer: MLflow's own client retries for minutes."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    from nlpstd.errors import NlpstdError

    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=timeout).raise_for_status()
    except requests.RequestException as exc:
        reason = type(exc).__name__ if not isinstance(exc, requests.HTTPError) else f"HTTP {exc.response.status_code}"
        raise NlpstdError(f"MLflow tracking server {uri} does not answer ({reason}): start it, point "
                          "MLFLOW_TRACKING_URI elsewhere, or run with --no-tracking") from None


def git_commit() -> str:
    """The commit of the checkout nlpstd runs from (not of the working directory, which may be
    another repository); "unknown" for an installed package or an image without git."""
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_version() -> str:
    """nlpstd's installed version: with the commit, what `nlpstd reproduce` compares."""
    import importlib.metadata

    try:
        return importlib.metadata.version("nlpstd")
    except importlib.metadata.PackageNotFoundError:
        from nlpstd import __version__

        return __version__


class RunTracking:
    """The parent run of one pipeline run; `stage(name)` opens a nested run for a stage."""

    def __init__(self, std: Standard, enabled: bool = True):
        self.std, self.enabled = std, enabled
        self.parent: Tracker = NullTracker()
        self.run_id: str | None = None

    @contextlib.contextmanager
    def run(self, tags: dict[str, str] | None = None) -> Iterator[RunTracking]:
        if not self.enabled:
            yield self
            return
        import mlflow

        self.run_id = open_parent_run(self.std, tags)
        self.parent = MlflowTracker(self.run_id)
        status = "FAILED"
        try:
            yield self
            status = "FINISHED"
        finally:
            mlflow.MlflowClient().set_terminated(self.run_id, status)

    @classmethod
    def attach(cls, std: Standard, run_id: str | None) -> RunTracking:
        """The parent run opened by another process (a pipeline task's launcher); no id, no tracking."""
        tracking = cls(std, enabled=bool(run_id))
        tracking.run_id = run_id or None
        return tracking

    @contextlib.contextmanager
    def stage(self, name: str, tags: dict[str, str] | None = None) -> Iterator[Tracker]:
        if not self.enabled or self.run_id is None:
            yield NullTracker()
            return
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(tracking_uri())
        client = MlflowClient()
        parent = client.get_run(self.run_id)
        child = client.create_run(
            parent.info.experiment_id,
            run_name=name,
            tags={"mlflow.parentRunId": self.run_id, "nlpstd.stage": name, "nlpstd.standard": self.std.name, **(tags or {})},
        )
        monitor = _SystemMetrics(child.info.run_id)
        status = "FAILED"
        try:
            yield MlflowTracker(child.info.run_id)
            status = "FINISHED"
        finally:
            monitor.finish()
            client.set_terminated(child.info.run_id, status)


class _SystemMetrics:
    """CPU, memory, disk, network (and GPU when there is one) sampled into a stage's run every few
    seconds, plus one sample at the end, so that a short stage has its figures too."""

    def __init__(self, run_id: str):
        import logging

        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
        self.monitor = SystemMetricsMonitor(run_id, sampling_interval=5, samples_before_logging=1)
        self.monitor.start()

    def finish(self) -> None:
        self.monitor.finish()
        self.monitor.collect_metrics()
        self.monitor.publish_metrics(self.monitor.aggregate_metrics())
        self.monitor.mlflow_logger.flush()


def open_parent_run(std: Standard, tags: dict[str, str] | None = None) -> str:
    """A new parent run: tags (standard, spec hash, git commit, package version, image), the
    flattened standard as params, and the resolved standard as an artifact."""
    import mlflow

    check_reachable(tracking_uri())
    mlflow.set_tracking_uri(tracking_uri())
    run = mlflow.MlflowClient().create_run(_experiment_id(std.name), run_name=std.name, tags={"nlpstd.standard": std.name})
    parent = MlflowTracker(run.info.run_id)
    image = {"nlpstd.image": os.environ["NLPSTD_IMAGE"]} if os.environ.get("NLPSTD_IMAGE") else {}
    parent.set_tags({"nlpstd.spec_hash": std.spec_hash(), "nlpstd.git_commit": git_commit(),
                     "nlpstd.version": package_version(), **image, **(tags or {})})
    parent.log_params(std.flat_params())
    with tempfile.TemporaryDirectory() as tmp:
        resolved = Path(tmp) / "standard.yaml"
        resolved.write_text(std.to_yaml())
        parent.log_artifact(resolved)
    return run.info.run_id


# A parent run opened by a pipeline task (no runner outside the pipeline opened one) is closed by a task too.
OPENED_BY_PIPELINE = {"nlpstd.opened_by": "pipeline"}


def pipeline_parent_run(std: Standard, run_id: str, data_dir: Path) -> str:
    """The parent run a pipeline's tasks log under: the one given, else a new one when a tracking
    server is configured (on a cluster nothing outside the pipeline opens one); else none. A new
    one also gets data-prep's nested run, logged from its output: data-prep takes no run id."""
    if run_id or not os.environ.get("MLFLOW_TRACKING_URI"):
        return run_id
    from nlpstd.stages import data_prep

    run_id = open_parent_run(std, {**OPENED_BY_PIPELINE, "nlpstd.runner": "kubeflow"})
    with RunTracking.attach(std, run_id).stage("data-prep") as tracker:
        data_prep.track(data_dir, tracker)
    return run_id


def close_pipeline_run(run_id: str, status: str = "FINISHED") -> None:
    """End a parent run that a pipeline task opened (one opened by a runner is the runner's to end)."""
    if not run_id:
        return
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    opened_here = all(run.data.tags.get(k) == v for k, v in OPENED_BY_PIPELINE.items())
    if opened_here and run.info.status == "RUNNING":
        client.set_terminated(run_id, status)


def _experiment_id(name: str) -> str:
    """Find or create the experiment; the default SQLite store keeps artifacts beside it."""
    from mlflow import MlflowClient

    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    location = None
    if "MLFLOW_TRACKING_URI" not in os.environ:
        location = (Path.cwd() / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)
