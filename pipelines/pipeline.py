"""The pipeline: data-prep → pretrain → finetune → evaluate → export, as one KFP DAG per standard.

The standard decides the DAG's shape when the pipeline is built: the pretrain task exists only
when `pretrain.enabled`, and the training tasks' GPUs, node pool, resources and retries come
from `runtime`. The standard itself is the pipeline's first parameter (its resolved YAML is the
default), so every task reads the same recipe. Export sits under `dsl.If` on the gate.
"""

# No `from __future__ import annotations`: KFP reads the pipeline parameters' types at run time.
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import Artifact, Dataset, Model

import components
from nlpstd.spec import Resources, RuntimeSpec, Standard

WORK_MOUNT = "/var/lib/nlpstd-work"  # where runtime.checkpoint_volume is mounted


class Outputs(NamedTuple):
    """What a run returns: the prepared data (maybe from the cache), the fine-tuned model, the evaluation."""

    data: Dataset
    model: Model
    evaluation: Artifact


def pipeline_name(std: Standard) -> str:
    return f"nlpstd-{std.name}".lower().replace("_", "-").replace(".", "-")


def build_pipeline(std: Standard, cpu_image: str, gpu_image: str, retries: int | None = None,
                   cache_data_prep: bool = True) -> Callable:
    """The standard's pipeline, its tasks pinned to the two images; `retries` overrides runtime.retries.

    A scheduled retraining must read the data as it is at each run: it is built with
    `cache_data_prep=False`, since its parameters (the cache key) never change."""
    ops = components.build(cpu_image, gpu_image)
    runtime = std.runtime
    retries = runtime.retries if retries is None else retries

    @dsl.pipeline(name=pipeline_name(std), description=f"nlpstd standard {std.name}: {std.description or std.task}")
    def pipeline(standard: str = json.dumps(std.to_dict()), mlflow_run_id: str = "", data_stamp: str = "",
                 work_dir: str = WORK_MOUNT if runtime.checkpoint_volume else "") -> Outputs:
        """standard: the standard's YAML; mlflow_run_id: the parent run the stages log under (none: no
        tracking); data_stamp: sizes and times of the input files (a data-prep cache key);
        work_dir: where training keeps checkpoints that a rerun or retry resumes from."""
        prep = ops.data_prep(standard=standard, has_pretrain_task=std.pretrain.enabled, data_stamp=data_stamp)
        _cpu_task(prep, "data-prep", cpu_image, runtime.tasks).set_caching_options(cache_data_prep)
        data = prep.outputs["data"]

        # the first training task opens the MLflow parent run when none is given; the id travels on as an output
        pretrained = {}
        if std.pretrain.enabled:
            pre = ops.pretrain(standard=standard, mlflow_run_id=mlflow_run_id, work_dir=work_dir, data=data)
            _training_task(pre, "pretrain (MLM)", gpu_image, runtime, retries)
            pretrained, mlflow_run_id = {"pretrained": pre.outputs["model"]}, pre.outputs["Output"]

        tune = ops.finetune(standard=standard, mlflow_run_id=mlflow_run_id, work_dir=work_dir, data=data, **pretrained)
        _training_task(tune, f"finetune ({std.finetune.method})", gpu_image, runtime, retries)
        common = {"standard": standard, "mlflow_run_id": tune.outputs["Output"]}

        score = ops.evaluate(**common, data=data, model=tune.outputs["model"])
        _cpu_task(score, "evaluate + gate", cpu_image, runtime.tasks)

        with dsl.If(score.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 (a pipeline condition, not Python)
            ship = ops.export(**common, data=data, model=tune.outputs["model"], evaluation=score.outputs["evaluation"])
            _cpu_task(ship, "export", cpu_image, runtime.tasks)

        return Outputs(data=data, model=tune.outputs["model"], evaluation=score.outputs["evaluation"])

    return pipeline


def compile_pipeline(std: Standard, cpu_image: str, gpu_image: str, folder: Path = Path("build"),
                     cache_data_prep: bool = True) -> Path:
    """Write the pipeline's IR YAML to `folder/<pipeline name>.yaml`: what a cluster runs, or a reviewer reads."""
    from kfp import compiler

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pipeline_name(std)}.yaml"
    pipeline = build_pipeline(std, cpu_image, gpu_image, cache_data_prep=cache_data_prep)
    compiler.Compiler().compile(pipeline, str(path))
    return path


def _environment(task: dsl.PipelineTask, image: str) -> None:
    task.set_env_variable("PYTHONUNBUFFERED", "1")
    task.set_env_variable("NLPSTD_IMAGE", image)  # tagged on the MLflow run
    if os.environ.get("MLFLOW_TRACKING_URI"):  # the server the pipeline logs to is the one set when it is built
        task.set_env_variable("MLFLOW_TRACKING_URI", os.environ["MLFLOW_TRACKING_URI"])


def _resources(task: dsl.PipelineTask, resources: Resources) -> None:
    if resources.cpu:
        task.set_cpu_request(resources.cpu)
    if resources.cpu_limit:
        task.set_cpu_limit(resources.cpu_limit)
    if resources.memory:
        task.set_memory_request(resources.memory)
    if resources.memory_limit:
        task.set_memory_limit(resources.memory_limit)


def _cpu_task(task: dsl.PipelineTask, name: str, image: str, resources: Resources) -> dsl.PipelineTask:
    task.set_display_name(name).set_caching_options(False)
    _resources(task, resources)
    _environment(task, image)
    return task


def _training_task(task: dsl.PipelineTask, name: str, image: str, runtime: RuntimeSpec, retries: int) -> dsl.PipelineTask:
    """GPU, node pool, shared memory for data loaders, retries (which resume from the work dir)."""
    task.set_display_name(name).set_caching_options(False)
    _resources(task, runtime.training)
    _environment(task, image)
    if retries:
        task.set_retry(num_retries=retries, backoff_duration="30s", backoff_factor=2.0)
    gpu = runtime.gpu
    if gpu.count:
        task.set_accelerator_type(gpu.type).set_accelerator_limit(gpu.count)
    for key, value in gpu.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for toleration in gpu.tolerations:
        kubernetes.add_toleration(task, key=toleration.key, operator=toleration.operator,
                                  value=toleration.value, effect=toleration.effect)
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                               size_limit=runtime.shm_size)
    if runtime.checkpoint_volume:
        kubernetes.mount_pvc(task, pvc_name=runtime.checkpoint_volume, mount_path=WORK_MOUNT)
    return task
