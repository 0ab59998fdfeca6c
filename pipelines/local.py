"""Run the pipeline on this machine with kfp.local: every task a subprocess, no cluster, no Docker.

It is the very pipeline a cluster runs (the same components and DAG); kfp.local ignores the
images and the Kubernetes settings and runs each task with this Python. Which settings of the
standard that leaves untested is printed once at the start and tagged on the MLflow run
(`nlpstd.local_ignored`). Outputs land in
`OUT/pipeline/<pipeline>-<time>/<task>/<output>`; training checkpoints live in `OUT/checkpoints`, so
rerunning after an interruption resumes, and data-prep is served from kfp.local's cache when
neither the standard nor its files changed.

kfp.local prints each task's executor input (the whole standard, as JSON) and every line the task
writes, a tqdm refresh included, to stdout. `TaskConsole` takes that stdout while the pipeline runs:
each task's lines go to `OUT/logs/<time>/<task>.log` (kfp.local's own to `pipeline.log`), and the
console gets a few lines per task: started, progress now and then, its warnings, and how it ended,
with the end of its log when it failed. `pipelines.containers` runs the same with every task in
its image (an `Execution` with kfp.local's DockerRunner).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from nlpstd import locks, storage
from nlpstd.errors import NlpstdError
from nlpstd.jsonio import read_json, write_json
from nlpstd.preflight import preflight
from nlpstd.runner import champion_outcome
from nlpstd.spec import Resources, Standard
from nlpstd.stages import data_prep, identity
from nlpstd.stages.contract import NAMES as STAGES
from nlpstd.tracking import RunTracking, tracking_uri
from pipelines.pipeline import WORK_MOUNT, build_pipeline, pipeline_name


@dataclass(frozen=True)
class Execution:
    """How kfp.local runs the tasks: its runner, the images the pipeline names, the checkpoint folder
    as the tasks see it (None: OUT/checkpoints), and what this way of running sets apart from the
    cluster beyond `ignored_locally` (each line replaces the default line on the same setting)."""

    runner: Any
    name: str
    cpu_image: str = "local"
    gpu_image: str = "local"
    work_dir: str | None = None
    ignored: tuple[str, ...] | list[str] = ()


@dataclass
class LocalRun:
    standard: str
    run_dir: Path
    seconds: float
    mlflow_run_id: str | None
    runner: str = "kfp.local"
    folders: dict[str, Path] = field(default_factory=dict)  # each stage's output folder
    stages: dict[str, dict] = field(default_factory=dict)  # each stage's metrics.json
    gate: dict = field(default_factory=dict)

    @property
    def exported(self) -> Path | None:
        return self.folders["export"] / "model" if "export" in self.folders else None


def run_local(standard_file: str | Path, out: str | Path | None = None, tracking: bool = True) -> LocalRun:
    """Validate the standard and its files, run its pipeline through kfp.local, and collect the results."""
    std, files = preflight(standard_file)
    out = Path(out or Path("runs") / std.name).resolve()
    with locks.exclusive(out, "output folder"):  # one run at a time: another would resume this one's checkpoints
        return _run(std, files, out, tracking)


def subprocess_execution() -> Execution:
    """Every task a subprocess of this Python (no venv per task: the project's package is here)."""
    from kfp import local

    return Execution(runner=local.SubprocessRunner(use_venv=False), name="kfp.local")


def _run(std: Standard, files: list[str], out: Path, tracking: bool, execution: Execution | None = None) -> LocalRun:
    from kfp import local

    execution = execution or subprocess_execution()
    root = out / "pipeline"
    root.mkdir(parents=True, exist_ok=True)

    ignored = _replace_lines(ignored_locally(std), execution.ignored)
    print(ignored_warning(std.name, ignored), file=sys.stderr, flush=True)

    os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri())  # tasks log to the same store as this process
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    os.environ.setdefault("TQDM_MININTERVAL", str(TQDM_MININTERVAL))  # tasks write to a pipe: a refresh is a whole line
    # kfp.local warns task by task that it ignores images and Kubernetes settings: said once above, with the values
    warnings.filterwarnings("ignore", module=r"kfp\.local")
    local.init(runner=execution.runner, pipeline_root=str(root),
               enable_caching=True, cache_root=str(out / "cache"), raise_on_error=True)
    # locally a failure stops at once
    pipeline = build_pipeline(std, cpu_image=execution.cpu_image, gpu_image=execution.gpu_image, retries=0)

    started, began = time.perf_counter(), time.time()
    tags = {"nlpstd.runner": execution.name, "nlpstd.local_ignored": "\n".join(ignored)}
    if execution.cpu_image != "local":
        tags["nlpstd.image"] = execution.cpu_image  # the parent run opens here, outside every image
    with RunTracking(std, enabled=tracking).run(tags=tags) as tracker:
        try:
            with task_console(out / "logs" / time.strftime("%Y%m%d-%H%M%S")):
                run = pipeline(standard=json.dumps(std.to_dict()), mlflow_run_id=tracker.run_id or "",
                               data_stamp=data_stamp(files), work_dir=execution.work_dir or str(out / "checkpoints"))
        except RuntimeError as exc:  # kfp.local names the failed task; the end of its log is printed above
            error = NlpstdError(f"pipeline {pipeline_name(std)} failed: {exc}")
            with contextlib.suppress(OSError, ValueError):  # a full disk must not hide the failed task
                summary = failed_summary(std, root, began, time.perf_counter() - started, tracker.run_id, str(error))
                write_json(out / "summary.json", summary, default=str)
            raise error from None
        evaluation = Path(run.outputs["evaluation"].path)
        result = LocalRun(std.name, evaluation.parents[1], time.perf_counter() - started, tracker.run_id, execution.name)
        result.folders = {  # data-prep may come from an earlier run's folder (the cache)
            "data-prep": Path(run.outputs["data"].path), "pretrain": result.run_dir / "pretrain" / "model",
            "finetune": Path(run.outputs["model"].path), "evaluate": evaluation, "export": result.run_dir / "export" / "exported",
        }
        result.folders = {stage: path for stage, path in result.folders.items() if (path / "metrics.json").is_file()}
        result.stages = {stage: read_json(path / "metrics.json") for stage, path in result.folders.items()}
        result.gate = read_json(evaluation / "gate.json")
        with tracker.stage("data-prep") as stage_tracker:  # the task itself takes no run id: it would spoil its cache key
            data_prep.track(result.folders["data-prep"], stage_tracker)
        tracker.parent.log_metrics({"pipeline_seconds": result.seconds, "gate_passed": float(result.gate["passed"])})
    write_json(out / "summary.json", _summary_dict(result, std), default=str)
    return result


# ---------------------------------------------------------------------------------------
# The console while the pipeline runs

TQDM_MININTERVAL = 10  # seconds between a task's progress-bar refreshes (each a line of its log)
PROGRESS_EVERY = 30.0  # seconds between a task's progress lines on the console
FAILED_TAIL = 20  # lines of a failed task's log shown on the console
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([\w-]+)'")
_FINISHED = re.compile(r"Task '([\w-]+)' finished with status (\w+)")
_PIPELINE = re.compile(r"Running pipeline: '([\w-]+)'")
_PROGRESS = re.compile(r"^\s*[\w-]+: +(\d+)%\|")
_WARNING = re.compile(r"^\s*[\w-]+: warning: ")


@contextlib.contextmanager
def task_console(folder: Path) -> Iterator[TaskConsole]:
    """stdout replaced by a `TaskConsole` writing under `folder` while the pipeline runs (kfp.local's
    log handler and its task output both write to whatever sys.stdout is when they do)."""
    console = TaskConsole(folder, sys.stdout)
    sys.stdout = console
    try:
        yield console
    except BaseException:
        console.interrupted()
        raise
    finally:
        sys.stdout = console.console
        console.close()


class TaskConsole(io.TextIOBase):
    """A text stream that files each line under the task it belongs to and prints a short account."""

    def __init__(self, folder: Path, console: TextIO):
        super().__init__()
        self.folder, self.console = folder, console
        folder.mkdir(parents=True, exist_ok=True)
        self.pending, self.task, self.began, self.shown = "", None, 0.0, 0.0
        self.log = open(folder / "pipeline.log", "a", encoding="utf-8")  # closed by `close`
        self.pipeline_log = self.log

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._line(_ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        if not self.log.closed:
            self.log.flush()
        self.console.flush()

    def close(self) -> None:
        if self.pending:
            self._line(_ANSI.sub("", self.pending))
            self.pending = ""
        for log in {self.log, self.pipeline_log}:
            log.close()
        super().close()

    def interrupted(self) -> None:
        """The run stopped inside a task (kfp.local raises before it logs the failure): say which, and show
        the end of its log."""
        if self.task is not None:
            self._end(self.task, "FAILURE")

    def _line(self, line: str) -> None:
        started = _STARTED.search(line)
        if started:
            self._begin(started.group(1))
        self.log.write(line + "\n")
        finished = _FINISHED.search(line)
        if finished and finished.group(1) == self.task:
            self._end(self.task, finished.group(2))
        elif self.task is not None:
            self._task_line(line)
        elif _PIPELINE.search(line):
            self._say(f"pipeline {_PIPELINE.search(line).group(1)}: task logs in {self.folder}")

    def _begin(self, task: str) -> None:
        self.task, self.began, self.shown = task, time.perf_counter(), time.perf_counter()
        self.log = open(self.folder / f"{task}.log", "w", encoding="utf-8")  # closed at the task's end
        self._say(f"  {task}: running (log: {self.folder / f'{task}.log'})")

    def _task_line(self, line: str) -> None:
        """Progress at most every PROGRESS_EVERY seconds (and at 100%), and every warning."""
        progress = _PROGRESS.match(line)
        now = time.perf_counter()
        if progress and (now - self.shown >= PROGRESS_EVERY or progress.group(1) == "100"):
            self.shown = now
            self._say(f"    {line.strip()}")
        elif _WARNING.match(line):
            self._say(f"    {line.strip()}")

    def _end(self, task: str, outcome: str) -> None:
        seconds = time.perf_counter() - self.began
        log_path = self.folder / f"{task}.log"
        self.log.close()
        self.log, self.task = self.pipeline_log, None
        if outcome == "SUCCESS":
            self._say(f"  {task}: done in {seconds:.1f} s")
            return
        tail = log_path.read_text(encoding="utf-8").splitlines()[-FAILED_TAIL:]
        self._say(f"  {task}: FAILED after {seconds:.1f} s; the end of {log_path}:")
        for line in tail:
            self._say(f"    | {line}")

    def _say(self, text: str) -> None:
        """Straight to the console: kfp.local indents `print` while a task runs."""
        self.console.write(text + "\n")
        self.console.flush()


def ignored_locally(std: Standard) -> list[str]:
    """Each setting of this standard that takes effect on a cluster only, with its value and what
    happens here instead; one line each. Settings left empty (no GPU, no node pool) are not listed."""
    runtime, gpu = std.runtime, std.runtime.gpu
    lines = ["images: every task runs in this Python environment, not in the pipeline's CPU and GPU images"]
    if gpu.count:
        here = f"; {gpu.count} processes still start under torchrun" if gpu.count > 1 else ""
        lines.append(f"runtime.gpu: {gpu.count} x {gpu.type} per training task: nothing is reserved, "
                     f"training uses whatever device this machine has{here}")
    if gpu.node_selector:
        labels = ", ".join(f"{key}={value}" for key, value in gpu.node_selector.items())
        lines.append(f"runtime.gpu.node_selector: {labels}: no node pool, every task runs on this machine")
    if gpu.tolerations:
        taints = ", ".join(_toleration(t.key, t.operator, t.value, t.effect) for t in gpu.tolerations)
        lines.append(f"runtime.gpu.tolerations: {taints}: no taints to tolerate here")
    for name, tasks in (("training", "pretrain and finetune"), ("tasks", "data-prep, evaluate and export")):
        resources = _resources(getattr(runtime, name))
        if resources:
            lines.append(f"runtime.{name}: {resources} ({tasks}): neither requested nor enforced, tasks share this machine")
    lines.append(f"runtime.shm_size: {runtime.shm_size} memory-backed /dev/shm for training: this machine's /dev/shm is used")
    if runtime.retries:
        lines.append(f"runtime.retries: {runtime.retries}: a failed task ends the local run at once "
                     "(rerun it: training resumes from OUT/checkpoints)")
    if runtime.checkpoint_volume:
        lines.append(f"runtime.checkpoint_volume: PersistentVolumeClaim {runtime.checkpoint_volume} at {WORK_MOUNT}: "
                     "checkpoints go to OUT/checkpoints instead")
    if std.schedule:
        lines.append(f"schedule.cron: {std.schedule.cron}: runs once here; a scheduled run also never "
                     "serves data-prep from the cache")
    return lines


def _replace_lines(lines: list[str], replacements: tuple[str, ...] | list[str]) -> list[str]:
    """`lines` with each line whose setting (the text before the first colon) a replacement names
    swapped for that replacement; replacements naming a setting not listed are added."""
    new = {line.split(":", 1)[0]: line for line in replacements}
    kept = [new.pop(line.split(":", 1)[0], line) for line in lines]
    return kept + list(new.values())


def ignored_warning(name: str, ignored: list[str]) -> str:
    """One block, printed once before the run, so nobody takes a local run for a test of the cluster settings."""
    head = f"warning: kfp.local ignores these settings of {name}; they take effect on a cluster only:"
    return "\n".join([head, *(f"  - {line}" for line in ignored)])


def _resources(resources: Resources) -> str:
    parts = (("cpu", resources.cpu), ("memory", resources.memory),
             ("cpu limit", resources.cpu_limit), ("memory limit", resources.memory_limit))
    return ", ".join(f"{label} {value}" for label, value in parts if value)


def _toleration(key: str, operator: str, value: str | None, effect: str | None) -> str:
    """kubectl's taint notation: key=value:effect (key:effect for operator Exists)."""
    text = f"{key}={value}" if operator == "Equal" and value is not None else key
    return f"{text}:{effect}" if effect else text


def data_stamp(files: list[str]) -> str:
    """Path, size and modification time of every input file: cheap, and it changes when a file does.
    An s3:// object counts by its cached copy, whose folder is named by the object's ETag."""
    digest = hashlib.sha256()
    digest.update(f"outputs carry {identity.FILE}\n".encode())  # a cached folder from before they did is not reused
    for path in sorted(set(files)):
        local = storage.fetch(path) if storage.is_remote(path) else Path(path)
        stat = os.stat(local)
        digest.update(f"{path}:{local}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _summary_dict(result: LocalRun, std: Standard) -> dict:
    return {"standard": std.name, "status": "completed", "run_dir": str(result.run_dir), "seconds": round(result.seconds, 1),
            "mlflow_run_id": result.mlflow_run_id, "gate": result.gate,
            "champion": champion_outcome(result.stages.get("evaluate"), result.stages.get("export")),
            "exported": str(result.exported) if result.exported else None,
            "folders": {stage: str(path) for stage, path in result.folders.items()}, "stages": result.stages}


def failed_summary(std: Standard, root: Path, began: float, seconds: float, mlflow_run_id: str | None, error: str) -> dict:
    """OUT/summary.json of a run a task failed: the stages whose outputs this run's folder holds, the
    task kfp.local names as failed, the error, and what became of the champion decision. The run's
    folder is the newest of this pipeline's under `root` made since `began` (wall-clock time); a
    data-prep served from the cache is in an earlier run's folder, so it is not listed."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", error)  # kfp.local colours task names for the terminal
    named = re.search(r"Inner task failed: '?([\w-]+)", plain)  # the innermost task: export inside condition-1
    runs = [p for p in root.glob(f"{pipeline_name(std)}-*") if p.is_dir() and p.stat().st_mtime >= began - 1]
    run_dir = max(runs, key=lambda p: p.stat().st_mtime, default=None)
    folders = {stage: found[0].parent for stage in STAGES
               if run_dir and (found := sorted(run_dir.glob(f"{stage}/*/metrics.json")))}
    stages = {stage: read_json(folder / "metrics.json") for stage, folder in folders.items()}
    failed = {"stage": named.group(1) if named else None, "error": plain}
    return {"standard": std.name, "status": "failed", "failed": failed, "run_dir": str(run_dir) if run_dir else None,
            "seconds": round(seconds, 1), "mlflow_run_id": mlflow_run_id,
            "champion": champion_outcome(stages.get("evaluate"), stages.get("export"), failed),
            "folders": {stage: str(path) for stage, path in folders.items()}, "stages": stages}


def print_summary(result: LocalRun) -> None:
    """Each stage's time, the scores, the gate, and where the model and the MLflow run are."""
    print(f"\n{result.standard}: pipeline finished in {result.seconds / 60:.1f} min ({result.runner})")
    for stage in STAGES:
        if stage in result.stages:
            cached = " (cached)" if result.run_dir not in result.folders[stage].parents else ""
            print(f"  {stage:<10} {result.stages[stage].get('stage_seconds', float('nan')):>7.1f} s{cached}")
        elif stage == "export":
            print(f"  {'export':<10} skipped: the gate failed")
    scores = {k: v for k, v in result.stages.get("evaluate", {}).items() if k.endswith(("f1", "accuracy")) and isinstance(v, float)}
    if scores:
        print("  " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    print(f"  gate {'PASSED' if result.gate['passed'] else 'FAILED'}: {result.gate['reason']}")
    export = result.stages.get("export", {})
    metric = export.get("parity_metric")
    if metric:
        keys = (("torch", f"torch_{metric}"), ("onnx", f"onnx_{metric}"), ("onnx-int8", f"onnx_int8_{metric}"))
        per_format = [f"{fmt} {export[key]:.4f}" for fmt, key in keys if key in export]
        print(f"  export ({export.get('parity_split')} {metric}): " + ", ".join(per_format))
    if "registered_version" in export:
        outcome = "now the champion" if export["promoted"] else "champion unchanged"
        print(f"  registry: {export['registered_model']} v{export['registered_version']}, {outcome}: {export['promotion_reason']}")
    print(f"  task outputs: {result.run_dir}")
    if result.exported:
        print(f"  model:        {result.exported}")
    if result.mlflow_run_id:
        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        print(f"  MLflow run:   {result.mlflow_run_id} in {uri}{' (make mlflow-ui)' if uri.startswith('sqlite:') else ''}")
