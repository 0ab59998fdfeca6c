"""One stage in a process of its own, as a pipeline task runs it.

The standard arrives as text (a pipeline parameter) and the MLflow parent run by its id;
whatever starts the pipeline opened that run. Nothing here knows which orchestrator calls it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nlpstd import runtime
from nlpstd.errors import NlpstdError
from nlpstd.spec import Standard, load_standard_text
from nlpstd.stages.output import read_json
from nlpstd.tracking import RunTracking, Tracker, close_pipeline_run


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


def check_pipeline_shape(std: Standard, has_pretrain_task: bool) -> None:
    """A compiled pipeline's tasks were chosen from its standard; another standard must agree on them."""
    if std.pretrain.enabled != has_pretrain_task:
        compiled = "with" if has_pretrain_task else "without"
        raise NlpstdError(
            f"this pipeline was compiled {compiled} a pretrain task, but standard {std.name!r} has pretrain.enabled: "
            f"{str(std.pretrain.enabled).lower()}; compile it for this standard: python -m pipelines compile STANDARD.yaml"
        )


def training_work_dir(work_dir: str, std: Standard, stage: str) -> Path | None:
    """Where a training task keeps its checkpoints across runs and retries: one folder per recipe and stage."""
    if not work_dir:
        return None
    return Path(work_dir) / f"{std.name}-{std.spec_hash()[:12]}" / stage


def torchrun_stage(stage: str, nproc: int, standard_text: str, mlflow_run_id: str, data: str, out: str,
                   work: Path | None = None, base: Path | None = None, allow_other_inputs: bool = False) -> dict[str, Any]:
    """Run a training stage under torchrun (one process per GPU) and return its metrics.

    torchrun is started as `python -m torch.distributed.run`, the same program, so that it is
    found whether or not the environment's bin folder is on PATH."""
    with tempfile.TemporaryDirectory() as tmp:
        standard_file = Path(tmp) / "standard.yaml"
        standard_file.write_text(standard_text, encoding="utf-8")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "nlpstd.cli", "stage", stage,
                   str(standard_file), "--data", data, "--out", out]
        command += ["--work", str(work)] if work else []
        command += ["--base", str(base)] if base else []
        command += ["--mlflow-run-id", mlflow_run_id] if mlflow_run_id else []
        command += ["--allow-other-inputs"] if allow_other_inputs else []
        print("launching:", " ".join(command), flush=True)
        subprocess.run(command, check=True)
    return read_json(Path(out) / "metrics.json")
