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
from typing import Protocol

from nlpstd.spec import Standard


class Tracker(Protocol):
    run_id: str | None

    def log_params(self, params: dict[str, str]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, folder: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...


class NullTracker:
    """Tracks nothing (tracking switched off, or a stage run on its own)."""

    run_id = None

    def log_params(self, params: dict[str, str]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, folder: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...


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
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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

        check_reachable(tracking_uri())
        mlflow.set_tracking_uri(tracking_uri())
        experiment = _experiment_id(self.std.name)
        parent = mlflow.MlflowClient().create_run(experiment, run_name=self.std.name, tags={"nlpstd.standard": self.std.name})
        self.run_id, self.parent = parent.info.run_id, MlflowTracker(parent.info.run_id)
        self.parent.set_tags({"nlpstd.spec_hash": self.std.spec_hash(), "nlpstd.git_commit": git_commit(), **(tags or {})})
        self.parent.log_params(self.std.flat_params())
        with tempfile.TemporaryDirectory() as tmp:
            resolved = Path(tmp) / "standard.yaml"
            resolved.write_text(self.std.to_yaml())
            self.parent.log_artifact(resolved)
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
    def stage(self, name: str) -> Iterator[Tracker]:
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
            tags={"mlflow.parentRunId": self.run_id, "nlpstd.stage": name, "nlpstd.standard": self.std.name},
        )
        status = "FAILED"
        try:
            yield MlflowTracker(child.info.run_id)
            status = "FINISHED"
        finally:
            client.set_terminated(child.info.run_id, status)


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
