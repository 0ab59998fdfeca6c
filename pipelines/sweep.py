"""The sweep pipeline: the standard's planned trials side by side on GPU nodes, then one report.

The points are fixed when the pipeline is built (`space.plan`: the grid, or `trials` points drawn
from the sweep's seed), so the compiled YAML shows every trial it will run. Each trial is a
training task (GPU, node pool, retries, the work volume); `sweep.parallelism` caps how many run at
once. A bayes search needs each result before choosing its next point, which a fixed loop cannot
give: here its points are drawn at random, and the Katib Experiment (pipelines.katib) runs it as a
real TPE search.
"""

# No `from __future__ import annotations`: KFP reads the pipeline parameters' types at run time.
import json
from collections.abc import Callable
from pathlib import Path

from kfp import dsl

import components
from nlpstd.errors import NlpstdError
from nlpstd.spec import Standard
from nlpstd.sweep import space
from pipelines.pipeline import WORK_MOUNT, _cpu_task, _training_task, pipeline_name


def sweep_pipeline_name(std: Standard) -> str:
    return f"{pipeline_name(std)}-sweep"


def build_sweep_pipeline(std: Standard, cpu_image: str, gpu_image: str) -> Callable:
    """The standard's sweep as a KFP pipeline: one trial task per planned point, then the report."""
    if std.sweep is None:
        raise NlpstdError(f"standard {std.name!r} has no sweep section; add one (sweep: {{variants: ..., params: ...}}) to compile a sweep")
    ops = components.build(cpu_image, gpu_image)
    runtime, sweep = std.runtime, std.sweep
    points = [json.dumps(point) for point in space.plan(std)]

    @dsl.pipeline(name=sweep_pipeline_name(std), description=f"nlpstd sweep of {std.name}: {len(points)} {sweep.strategy} trials")
    def pipeline(standard: str = json.dumps(std.to_dict()), mlflow_run_id: str = "",
                 work_dir: str = WORK_MOUNT if runtime.checkpoint_volume else ""):
        """standard: the sweep standard's YAML; mlflow_run_id: the parent run the trials log under (none:
        no tracking); work_dir: where trials share prepared data and pretrained encoders."""
        with dsl.ParallelFor(items=points, parallelism=sweep.parallelism, name="trials") as point:
            trial = ops.sweep_trial(standard=standard, point=point, mlflow_run_id=mlflow_run_id, work_dir=work_dir)
            _training_task(trial, "trial", gpu_image, runtime, runtime.retries)
        report = ops.sweep_report(standard=standard, results=dsl.Collected(trial.outputs["result"]))
        _cpu_task(report, "sweep report", cpu_image, runtime.tasks)

    return pipeline


def compile_sweep(std: Standard, cpu_image: str, gpu_image: str, folder: Path = Path("build")) -> Path:
    """Write the sweep pipeline's IR YAML to `folder/<pipeline name>-sweep.yaml`."""
    from kfp import compiler

    pipeline = build_sweep_pipeline(std, cpu_image, gpu_image)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sweep_pipeline_name(std)}.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return path
