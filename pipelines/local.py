"""Run the pipeline on this machine with kfp.local: every task a subprocess, no cluster, no Docker.

It is the very pipeline a cluster runs (the same components and DAG); kfp.local ignores the
images and the Kubernetes settings and runs each task with this Python. Outputs land in
`OUT/pipeline/<pipeline>-<time>/<task>/<output>`; training checkpoints live in `OUT/checkpoints`, so
rerunning after an interruption resumes, and data-prep is served from kfp.local's cache when
neither the standard nor its files changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from nlpstd import storage
from nlpstd.data import corpus
from nlpstd.errors import NlpstdError
from nlpstd.spec import Standard, check_files, load_standard
from nlpstd.stages import data_prep
from nlpstd.stages.output import read_json
from nlpstd.tracking import RunTracking, tracking_uri
from pipelines.pipeline import build_pipeline, pipeline_name

STAGES = ("data-prep", "pretrain", "finetune", "evaluate", "export")


@dataclass
class LocalRun:
    standard: str
    run_dir: Path
    seconds: float
    mlflow_run_id: str | None
    folders: dict[str, Path] = field(default_factory=dict)  # each stage's output folder
    stages: dict[str, dict] = field(default_factory=dict)  # each stage's metrics.json
    gate: dict = field(default_factory=dict)

    @property
    def exported(self) -> Path | None:
        return self.folders["export"] / "model" if "export" in self.folders else None


def run_local(standard_file: str | Path, out: str | Path | None = None, tracking: bool = True) -> LocalRun:
    """Validate the standard and its files, run its pipeline through kfp.local, and collect the results."""
    from kfp import local

    std = load_standard(standard_file)
    files = check_files(std, standard_file)
    if std.pretrain.enabled:
        files += corpus.check(std.pretrain.corpus)
    out = Path(out or Path("runs") / std.name).resolve()
    root = out / "pipeline"
    root.mkdir(parents=True, exist_ok=True)

    os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri())  # tasks log to the same store as this process
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # kfp.local warns that it ignores the images and Kubernetes settings: expected here, and said above
    warnings.filterwarnings("ignore", module=r"kfp\.local")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
               enable_caching=True, cache_root=str(out / "cache"), raise_on_error=True)
    pipeline = build_pipeline(std, cpu_image="local", gpu_image="local", retries=0)  # locally a failure stops at once

    started = time.perf_counter()
    with RunTracking(std, enabled=tracking).run(tags={"nlpstd.runner": "kfp.local"}) as tracker:
        try:
            run = pipeline(standard=json.dumps(std.to_dict()), mlflow_run_id=tracker.run_id or "",
                           data_stamp=data_stamp(files), work_dir=str(out / "checkpoints"))
        except RuntimeError as exc:  # kfp.local names the failed task; its log is printed above
            raise NlpstdError(f"pipeline {pipeline_name(std)} failed: {exc}") from None
        evaluation = Path(run.outputs["evaluation"].path)
        result = LocalRun(std.name, evaluation.parents[1], time.perf_counter() - started, tracker.run_id)
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
    (out / "summary.json").write_text(json.dumps(_summary_dict(result, std), indent=2, default=str))
    return result


def data_stamp(files: list[str]) -> str:
    """Path, size and modification time of every input file: cheap, and it changes when a file does.
    An s3:// object counts by its cached copy, whose folder is named by the object's ETag."""
    digest = hashlib.sha256()
    for path in sorted(set(files)):
        local = storage.fetch(path) if storage.is_remote(path) else Path(path)
        stat = os.stat(local)
        digest.update(f"{path}:{local}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _summary_dict(result: LocalRun, std: Standard) -> dict:
    return {"standard": std.name, "run_dir": str(result.run_dir), "seconds": round(result.seconds, 1),
            "mlflow_run_id": result.mlflow_run_id, "gate": result.gate,
            "exported": str(result.exported) if result.exported else None,
            "folders": {stage: str(path) for stage, path in result.folders.items()}, "stages": result.stages}


def print_summary(result: LocalRun) -> None:
    """Each stage's time, the scores, the gate, and where the model and the MLflow run are."""
    print(f"\n{result.standard}: pipeline finished in {result.seconds / 60:.1f} min (kfp.local)")
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
        per_format = [f"{fmt} {export[key]:.4f}" for fmt, key in (("torch", f"torch_{metric}"), ("onnx", f"onnx_{metric}"), ("onnx-int8", f"onnx_int8_{metric}")) if key in export]
        print(f"  export ({export.get('parity_split')} {metric}): " + ", ".join(per_format))
    if "registered_version" in export:
        outcome = "now the champion" if export["promoted"] else "champion unchanged"
        print(f"  registry: {export['registered_model']} v{export['registered_version']}, {outcome}: {export['promotion_reason']}")
    print(f"  task outputs: {result.run_dir}")
    if result.exported:
        print(f"  model:        {result.exported}")
    if result.mlflow_run_id:
        print(f"  MLflow run:   {result.mlflow_run_id} in {os.environ.get('MLFLOW_TRACKING_URI')} (make mlflow-ui)")
