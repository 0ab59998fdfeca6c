"""One stage in a process of its own, as a pipeline task runs it, and the MLflow run the tasks share.

The standard arrives as text (a pipeline parameter) and the MLflow parent run by its id. On a
cluster nothing outside the pipeline opens that run, so the tasks keep its life cycle themselves,
all of it here: the first training task opens it (and logs data-prep's folder, since data-prep
takes no run id: it would change its cache key), evaluate ends it when the gate fails, export
ends it as the last task, and a failing task fails it. A run opened by whoever started the
pipeline (`pipelines.local`, `nlpstd run`) is theirs to end. Nothing here knows which
orchestrator calls it: the KFP components and `nlpstd stage` both come through `run_task` or
`stage_task`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from nlpstd import logs, runtime
from nlpstd.errors import NlpstdError
from nlpstd.jsonio import read_json
from nlpstd.spec import Standard, load_standard_text
from nlpstd.stages import contract
from nlpstd.stages.contract import Layout, run_stage
from nlpstd.tracking import RunTracking, Tracker, numeric, open_parent_run, tracking_client

log = logging.getLogger(__name__)

# A parent run opened by a pipeline task (no runner outside the pipeline opened one) is closed by a task too.
OPENED_BY_PIPELINE = {"nlpstd.opened_by": "pipeline"}


class MetricsOutput(Protocol):
    """What a task hands its figures to: KFP's `Output[Metrics]`."""

    def log_metric(self, name: str, value: float) -> None: ...


def run_task(stage: str, standard_text: str, folders: Mapping[str, str | Path | None], mlflow_run_id: str = "",
             work_dir: str = "", metrics: MetricsOutput | None = None) -> tuple[dict[str, Any], str]:
    """Run `stage` as a pipeline task: `folders` maps stage names to their folders (this stage's own
    output included; None for an input the DAG does not have), `work_dir` keeps training checkpoints
    across runs and retries. The stage's numeric figures also go to `metrics`. Returns the stage's
    metrics and the MLflow parent run id the next tasks log under: the one given, or one a training
    task opened."""
    logs.configure()
    std = load_standard_text(standard_text)
    layout = Layout({name: Path(folder) for name, folder in folders.items() if folder},
                    work=training_work_dir(work_dir, std, stage) if contract.stage(stage).trains else None)
    if contract.stage(stage).trains:
        mlflow_run_id = pipeline_parent_run(std, mlflow_run_id, layout.folder("data-prep"))
    if contract.stage(stage).trains and std.runtime.gpu.count > 1:  # one process per GPU
        figures = torchrun_stage(stage, std.runtime.gpu.count, standard_text, mlflow_run_id, layout)
    else:
        with stage_task(standard_text, stage, mlflow_run_id) as (std, tracker):
            figures = run_stage(stage, std, layout, tracker, standard_file=f"{std.name}.yaml")
    if stage == "export" or (stage == "evaluate" and not figures["gate_passed"]):  # nothing follows
        close_pipeline_run(mlflow_run_id)
    if metrics is not None:
        for name, value in numeric(figures).items():
            metrics.log_metric(name, value)
    return figures, mlflow_run_id


@contextlib.contextmanager
def stage_task(standard_text: str, stage: str, mlflow_run_id: str = "",
               source: str | Path = "standard.yaml") -> Iterator[tuple[Standard, Tracker]]:
    """The standard and the stage's tracker (a nested run under `mlflow_run_id`, or none);
    `source` names the standard in errors and anchors its relative paths. A failing stage also
    fails a parent run that the pipeline itself opened."""
    std = load_standard_text(standard_text, source)
    run_id = mlflow_run_id if runtime.is_main() else ""  # under torchrun the main process alone logs
    try:
        with RunTracking.attach(std, run_id).stage(stage) as tracker:
            yield std, tracker
    except BaseException:
        close_pipeline_run(run_id, "FAILED")
        raise


def pipeline_parent_run(std: Standard, run_id: str, data_dir: Path) -> str:
    """The parent run a pipeline's tasks log under: the one given, else a new one when a tracking
    server is configured; else none. A new one also gets data-prep's nested run, logged from its output."""
    if run_id or not os.environ.get("MLFLOW_TRACKING_URI"):
        return run_id
    from nlpstd.stages import data_prep

    # no owning process: the task opening it ends long before the pipeline's last task closes it
    run_id = open_parent_run(std, {**OPENED_BY_PIPELINE, "nlpstd.runner": "kubeflow"}, owned=False)
    with RunTracking.attach(std, run_id).stage("data-prep") as tracker:
        data_prep.track(data_dir, tracker)
    return run_id


def close_pipeline_run(run_id: str, status: str = "FINISHED") -> None:
    """End a parent run that a pipeline task opened (one opened by a runner is the runner's to end)."""
    if not run_id:
        return
    client = tracking_client()
    run = client.get_run(run_id)
    opened_here = all(run.data.tags.get(k) == v for k, v in OPENED_BY_PIPELINE.items())
    if opened_here and run.info.status == "RUNNING":
        client.set_terminated(run_id, status)


def check_pipeline_shape(std: Standard, has_pretrain_task: bool) -> None:
    """A compiled pipeline's tasks were chosen from its standard; another standard must agree on them."""
    if std.pretrain.enabled != has_pretrain_task:
        compiled = "with" if has_pretrain_task else "without"
        raise NlpstdError(
            f"this pipeline was compiled {compiled} a pretrain task, but standard {std.name!r} has pretrain.enabled: "
            f"{str(std.pretrain.enabled).lower()}; compile it for this standard: nlpstd pipeline compile STANDARD.yaml"
        )


def training_work_dir(work_dir: str, std: Standard, stage: str) -> Path | None:
    """Where a training task keeps its checkpoints across runs and retries: one folder per recipe and stage."""
    if not work_dir:
        return None
    return Path(work_dir) / f"{std.name}-{std.spec_hash()[:12]}" / stage


def stage_arguments(layout: Layout, stage: str) -> list[str]:
    """`nlpstd stage` flags naming the folders of `layout`: each input's, then the stage's own (--out)."""
    arguments = [f"--{contract.FLAGS[name]}={layout.folders[name]}" for name in contract.stage(stage).inputs if name in layout.folders]
    arguments.append(f"--out={layout.folder(stage)}")
    return arguments + ([f"--work={layout.work}"] if layout.work else [])


def torchrun_stage(stage: str, nproc: int, standard_text: str, mlflow_run_id: str, layout: Layout,
                   allow_other_inputs: bool = False) -> dict[str, Any]:
    """Run a training stage under torchrun (one process per GPU) and return its metrics.

    torchrun is started as `python -m torch.distributed.run`, the same program, so that it is
    found whether or not the environment's bin folder is on PATH."""
    with tempfile.TemporaryDirectory() as tmp:
        standard_file = Path(tmp) / "standard.yaml"
        standard_file.write_text(standard_text, encoding="utf-8")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "nlpstd.cli", "stage", stage,
                   str(standard_file), *stage_arguments(layout, stage)]
        command += ["--mlflow-run-id", mlflow_run_id] if mlflow_run_id else []
        command += ["--allow-other-inputs"] if allow_other_inputs else []
        log.info("launching: %s", " ".join(command))
        subprocess.run(command, check=True)
    return read_json(layout.folder(stage) / "metrics.json")
