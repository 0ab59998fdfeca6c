"""MLflow conventions behind a small interface: stages and the training loop never call mlflow directly.

One parent run per `nlpstd run`, one nested run per stage. With no MLFLOW_TRACKING_URI set,
runs go to a local SQLite file (`./mlflow.db`, artifacts in `./mlartifacts`), so a fresh
machine needs no server.

Every run nlpstd opens names the process that owns it (`nlpstd.process`: host, pid and the pid's
start time). A process killed without warning cannot end its runs; a later process on the same
host sees the owner is gone and marks them KILLED (`sweep_stale_runs`), instead of leaving them
RUNNING forever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from mlflow import MlflowClient

    from nlpstd.spec import Standard

log = logging.getLogger(__name__)


def numeric(metrics: dict[str, Any], *, flags: bool = False) -> dict[str, float]:
    """The plain numbers of `metrics`, as floats: what a metrics view can plot. Text, lists, tables and
    None stay out; so do flags (`True` is an int to Python) unless `flags` asks for them as 1.0 and 0.0."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and (flags or not isinstance(v, bool))}


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
        self.run_id, self._client = run_id, tracking_client()

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step or 0) for k, v in numeric(metrics, flags=True).items()]
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


_READY_STORES: set[str] = set()  # tracking URIs whose store this process has already opened


def tracking_client() -> MlflowClient:
    """MLflow's client on `tracking_uri()`, which also becomes the process's tracking URI.

    The first client of a local SQLite store creates or migrates its tables. Two processes doing
    that at once on a fresh folder break each other (a duplicate column, an alembic version row
    that moved under the other), so this process's first client of such a store holds a file lock
    beside the database while it is built; MLflow keeps that store for the process's later clients."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if uri in _READY_STORES:
        return mlflow.MlflowClient(uri)
    with _store_lock(uri):
        client = mlflow.MlflowClient(uri)
    _READY_STORES.add(uri)
    return client


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI (four slashes: absolute); None for any other store
    or for an in-memory database."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri[len(prefix):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock on `<database>.lock` for a local SQLite store; nothing for other stores,
    a folder that does not exist (MLflow then says so itself) or a system without `fcntl`."""
    database = sqlite_path(uri)
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if database is None or fcntl is None or not database.parent.is_dir():
        yield
        return
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


# -- run owners: which process opened a run, and whether it still lives

PROCESS_TAG = "nlpstd.process"


def process_tags() -> dict[str, str]:
    """The tag naming this process as the owner of a run it opens: `host:pid:start time`."""
    pid = os.getpid()
    return {PROCESS_TAG: f"{socket.gethostname()}:{pid}:{_start_time(pid) or ''}"}


def _start_time(pid: int) -> str | None:
    """When process `pid` started, as a token that differs between two processes given the same pid;
    None if there is no such process (or it is a zombie, which is dead but not yet reaped).

    On Linux this is the start time in clock ticks since boot (`/proc/<pid>/stat`, field 22):
    unlike a wall-clock time it never moves when the clock is set. Elsewhere psutil's creation
    time, in whole seconds."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").is_file():
        try:
            text = stat.read_text()
        except OSError:
            return None
        fields = text[text.rindex(")") + 2:].split()  # the name, in parentheses, may hold spaces
        return None if fields[0] in ("Z", "X") else fields[19]  # fields[0] is field 3 (state)
    import psutil

    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else f"{process.create_time():.0f}"
    except psutil.Error:
        return None


@dataclass(frozen=True)
class Owner:
    """The process a run's `nlpstd.process` tag names."""

    host: str
    pid: int
    start: str  # empty when the start time could not be read

    @classmethod
    def parse(cls, tag: str | None) -> Owner | None:
        """The owner a tag names; None for a run without one (or a tag this code cannot read)."""
        try:
            host, pid, start = (tag or "").rsplit(":", 2)
            return cls(host, int(pid), start)
        except ValueError:
            return None

    def is_here(self) -> bool:
        return self.host == socket.gethostname()

    def is_alive(self) -> bool:
        """Whether the process still runs (on this host): its pid exists and, when the start time
        was recorded, started at that time; a pid reused by a later process is not the owner."""
        start = _start_time(self.pid)
        return start is not None and (not self.start or start == self.start)


@dataclass
class StaleRun:
    """A run marked KILLED, and the process that had left it RUNNING."""

    run_id: str
    name: str
    owner: Owner


@dataclass
class StaleSweep:
    """What `sweep_stale_runs` did: the runs it marked KILLED, and the running runs it could not judge."""

    killed: list[StaleRun] = field(default_factory=list)
    other_hosts: int = 0  # owned by a process on another host: nothing here can tell whether it lives
    without_owner: int = 0  # no owner recorded: opened by a pipeline task (its tasks end it) or an older nlpstd

    def killed_lines(self) -> list[str]:
        return [f"mlflow: marked run {run.run_id} ({run.name}) KILLED: its process {run.owner.pid} on {run.owner.host} is gone"
                for run in self.killed]

    def left_line(self) -> str | None:
        """Why running runs were left alone, or None when none were."""
        reasons = []
        if self.other_hosts:
            reasons.append(f"{self.other_hosts} owned by a process on another host (only that host can tell whether it still runs)")
        if self.without_owner:
            reasons.append(f"{self.without_owner} with no owning process recorded (opened by a pipeline task, or by an older nlpstd)")
        return f"mlflow: left {self.other_hosts + self.without_owner} running run(s) alone: {'; '.join(reasons)}" if reasons else None


def sweep_stale_runs(experiment_names: list[str] | None = None) -> StaleSweep:
    """Mark KILLED every RUNNING run (of the named experiments, else of all) whose owning process
    was on this host and is gone. A run owned by a live process, by a process on another host, or
    by no recorded process stays as it is. One search of the store, plus one update per run marked."""
    from mlflow.entities import ViewType

    from nlpstd.errors import NlpstdError

    client = tracking_client()
    if experiment_names is None:
        ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    else:
        found = {name: client.get_experiment_by_name(name) for name in experiment_names}
        missing = [name for name, experiment in found.items() if experiment is None]
        if missing:
            raise NlpstdError(f"no MLflow experiment {', '.join(map(repr, missing))} in {tracking_uri()}")
        ids = [experiment.experiment_id for experiment in found.values()]
    return _sweep(client, ids)


def _sweep(client: MlflowClient, experiment_ids: list[str]) -> StaleSweep:
    swept = StaleSweep()
    for run in _running_runs(client, experiment_ids):
        owner = Owner.parse(run.data.tags.get(PROCESS_TAG))
        if owner is None:
            swept.without_owner += 1
        elif not owner.is_here():
            swept.other_hosts += 1
        elif not owner.is_alive():
            client.set_terminated(run.info.run_id, "KILLED")
            swept.killed.append(StaleRun(run.info.run_id, run.info.run_name or "", owner))
    return swept


def _running_runs(client: MlflowClient, experiment_ids: list[str]) -> Iterator:
    """The RUNNING runs of the experiments, page by page (one page unless there are thousands)."""
    token = None
    while experiment_ids:
        page = client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _sweep_before_opening(experiment: str) -> None:
    """The stale runs of the experiment a new run is about to join, marked KILLED; a sweep that fails
    is a warning, never the run's failure."""
    try:
        client = tracking_client()
        found = client.get_experiment_by_name(experiment)
        swept = _sweep(client, [found.experiment_id]) if found else StaleSweep()
    except Exception as exc:  # the run matters more than its neighbours' bookkeeping
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        log.warning(f"mlflow: warning: could not check experiment {experiment!r} for stale runs ({type(exc).__name__}: {reason})")
        return
    for line in swept.killed_lines():
        log.info(line)


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
        self.run_id = open_parent_run(self.std, tags)
        self.parent = MlflowTracker(self.run_id)
        status = "FAILED"
        try:
            yield self
            status = "FINISHED"
        finally:
            tracking_client().set_terminated(self.run_id, status)

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
        client = tracking_client()
        parent = client.get_run(self.run_id)
        child = client.create_run(
            parent.info.experiment_id,
            run_name=name,
            tags={"mlflow.parentRunId": self.run_id, "nlpstd.stage": name, "nlpstd.standard": self.std.name,
                  **process_tags(), **(tags or {})},
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


def open_parent_run(std: Standard, tags: dict[str, str] | None = None, owned: bool = True) -> str:
    """A new parent run: tags (standard, spec hash, git commit, package version, image, and the
    owning process unless the run outlives this one: `owned=False`), the flattened standard as
    params, and the resolved standard as an artifact. The experiment's stale runs are marked
    KILLED first."""
    check_reachable(tracking_uri())
    _sweep_before_opening(std.name)
    owner = process_tags() if owned else {}
    run = tracking_client().create_run(_experiment_id(std.name), run_name=std.name, tags={"nlpstd.standard": std.name, **owner})
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


def _experiment_id(name: str) -> str:
    """Find or create the experiment; the default SQLite store keeps artifacts beside it. Two runs
    starting together may both find none: the one whose creation loses takes the other's."""
    from mlflow.exceptions import MlflowException

    client = tracking_client()
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    location = None
    if "MLFLOW_TRACKING_URI" not in os.environ:
        location = (Path.cwd() / "mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id
