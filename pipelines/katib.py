"""The same search as a Katib Experiment (kubeflow.org/v1beta1): Katib suggests the points and runs
each as a batch/v1 Job of `nlpstd trial` on the GPU image.

Where the sweep pipeline fixes its points when it is built, Katib chooses them as results come in,
so a bayes search really is one (Optuna's TPE, seeded like the local sweep). The standard reaches
the trial container as an environment variable holding its resolved YAML; the container's shell
writes it to a file for `nlpstd trial`, whose `--point` is JSON assembled from Katib's
`${trialParameters.*}` substitutions. The trial prints `validation-<metric>=<value>` lines, which
Katib's StdOut collector reads.

Katib substitutes parameter values into the JSON text of the trial template, and the point sits in
single quotes in a shell line: a value holding `"`, `'` or `\\` would break one or the other, so
such values are refused. A log-scale range becomes `feasibleSpace.distribution: logUniform`
(Katib 0.18 or later; older releases reject the field rather than search a log range uniformly).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nlpstd.errors import NlpstdError
from nlpstd.spec import SearchRange, Standard, SweepSpec
from nlpstd.stages.task import training_work_dir
from nlpstd.sweep import space
from nlpstd.sweep.trial import objective_metric
from pipelines.pipeline import WORK_MOUNT
from pipelines.sweep import sweep_pipeline_name

API_VERSION = "kubeflow.org/v1beta1"
ALGORITHMS = {"grid": "grid", "random": "random", "bayes": "tpe"}
CONTAINER = "trial"
SCRATCH = "/tmp/nlpstd-trial"  # writable for the image's unprivileged user
STANDARD_FILE = f"{SCRATCH}/standard.yaml"
TRIAL_NAME = "trial_name"  # a trial parameter naming the Katib trial, for its output folder
# Katib's own defaults for a Job, written out so that the manifest says when a trial has ended
JOB_SUCCEEDED = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
JOB_FAILED = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
UNSAFE = re.compile(r"[\"'\\]")
# Katib names the suggestion service `<experiment>-<algorithm>`, a DNS label of at most 63 characters
MAX_NAME = 63 - len("-random")


@dataclass(frozen=True)
class Axis:
    """One axis of the search as Katib sees it."""

    key: str  # the sweep's axis: "variant" or a dotted key of the standard
    name: str  # the trial parameter that carries it into the template: an identifier
    parameter: dict[str, Any]  # its entry in spec.parameters
    quoted: bool  # the point quotes the value (text) rather than taking it as JSON


def katib_experiment(std: Standard, image: str, namespace: str | None = None) -> dict[str, Any]:
    """The Experiment for the standard's sweep, its trials on `image` (the GPU image)."""
    if std.sweep is None:
        raise NlpstdError(f"standard {std.name!r} has no sweep section; add one to write a Katib experiment")
    sweep = std.sweep
    axes = _axes(sweep)
    count = len(space.grid(sweep)[: sweep.trials]) if sweep.strategy == "grid" else int(sweep.trials or 1)
    metric = objective_metric(std)
    metadata: dict[str, Any] = {"name": experiment_name(std), "labels": {"app.kubernetes.io/part-of": "nlpstd"}}
    if namespace:
        metadata["namespace"] = namespace
    spec: dict[str, Any] = {
        "objective": _objective(metric),
        "algorithm": _algorithm(std),
        "parallelTrialCount": min(sweep.parallelism, count),
        "maxTrialCount": count,
        # one trial may fail (a batch too large for the GPU); when half of them do, the search itself is broken
        "maxFailedTrialCount": max(1, count // 2),
        "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
        "parameters": [axis.parameter for axis in axes],
        "trialTemplate": _trial_template(std, image, axes),
    }
    if sweep.pruning is not None and sweep.pruning.pruner != "none":
        spec["earlyStopping"] = _early_stopping(sweep)
    return {"apiVersion": API_VERSION, "kind": "Experiment", "metadata": metadata, "spec": spec}


def write_katib_experiment(std: Standard, image: str, folder: Path = Path("build"), namespace: str | None = None) -> Path:
    """Write the Experiment to `folder/<sweep pipeline name>.katib.yaml`, beside the compiled sweep
    pipeline: `kubectl apply -f` it."""
    text = yaml.dump(katib_experiment(std, image, namespace), Dumper=_Dumper, sort_keys=False, width=float("inf"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sweep_pipeline_name(std)}.katib.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def experiment_name(std: Standard) -> str:
    name = sweep_pipeline_name(std)
    return name if len(name) <= MAX_NAME else f"{name[: MAX_NAME - 7].rstrip('-')}-{std.spec_hash()[:6]}"


def _axes(sweep: SweepSpec) -> list[Axis]:
    """The sweep's axes in the order `space.axes` lists them, each with a trial parameter name."""
    axes = []
    if sweep.variants:
        axes.append(_categorical(space.VARIANT, list(sweep.variants)))
    for key, values in sweep.params.items():
        axes.append(_categorical(key, values) if isinstance(values, list) else _range(key, values))
    names = [axis.name for axis in axes] + [TRIAL_NAME]
    if len(set(names)) != len(names):
        raise NlpstdError(f"sweep axes {', '.join(a.key for a in axes)} map to clashing Katib trial parameters {', '.join(names)}")
    return axes


def _categorical(key: str, values: list[Any]) -> Axis:
    """Text values go to Katib as they are and are quoted in the point; numbers, booleans and nulls go
    as their JSON, which the point takes as it is."""
    texts = [isinstance(value, str) for value in values]
    if any(texts) and not all(texts):
        raise NlpstdError(f"sweep axis {key}: Katib needs values of one kind, all text or none (got {values})")
    quoted = all(texts)
    listed = [str(value) if quoted else json.dumps(value) for value in values]
    for value in listed:
        if UNSAFE.search(value):
            raise NlpstdError(f"sweep axis {key}: value {value} holds a quote or backslash, which Katib cannot pass to a trial")
    parameter = {"name": key, "parameterType": "categorical", "feasibleSpace": {"list": listed}}
    return Axis(key, _identifier(key), parameter, quoted)


def _range(key: str, axis: SearchRange) -> Axis:
    """Katib's bounds are text: integers as such, floats as Python writes them (`1e-05`, `0.2`)."""
    kind, text = ("int", lambda v: str(int(v))) if axis.is_int() else ("double", lambda v: repr(float(v)))
    feasible = {"min": text(axis.low), "max": text(axis.high)}
    if axis.step:
        feasible["step"] = text(axis.step)
    if axis.log:
        feasible["distribution"] = "logUniform"
    return Axis(key, _identifier(key), {"name": key, "parameterType": kind, "feasibleSpace": feasible}, quoted=False)


def _identifier(key: str) -> str:
    return re.sub(r"\W", "_", key)


def _objective(metric: str) -> dict[str, Any]:
    """Maximize the trial's final validation metric. No `goal`: reaching the gate is not a reason to
    stop, since the sweep looks for the cheapest configuration near the best, not the first that passes."""
    objective, extra = f"validation-{metric}", [f"train-{metric}", "parameters", "train-seconds"]
    return {
        "type": "maximize",
        "objectiveMetricName": objective,
        "additionalMetricNames": extra,
        "metricStrategies": [{"name": name, "value": "latest"} for name in [objective, *extra]],
    }


def _algorithm(std: Standard) -> dict[str, Any]:
    """Seeded like the local sweep; TPE starts from as many random trials as it does there."""
    sweep = std.sweep
    assert sweep is not None
    settings = [("random_state", space.sampler_seed(std))]
    if sweep.strategy == "bayes":
        settings.append(("n_startup_trials", space.startup_trials(sweep)))
    return {"algorithmName": ALGORITHMS[sweep.strategy],
            "algorithmSettings": [{"name": name, "value": str(value)} for name, value in settings]}


def _early_stopping(sweep: SweepSpec) -> dict[str, Any]:
    """Katib's only early-stopping rule is the median one; a hyperband pruner maps to it too. It can stop
    a trial only from intermediate `validation-<metric>=` lines in its output, after `start_step` of them."""
    assert sweep.pruning is not None
    settings = {"min_trials_required": max(1, sweep.pruning.startup_trials), "start_step": max(1, sweep.pruning.warmup_evaluations)}
    return {"algorithmName": "medianstop",
            "algorithmSettings": [{"name": name, "value": str(value)} for name, value in settings.items()]}


def _trial_template(std: Standard, image: str, axes: list[Axis]) -> dict[str, Any]:
    parameters = [{"name": axis.name, "reference": axis.key, "description": f"sweep axis {axis.key}"} for axis in axes]
    parameters.append({"name": TRIAL_NAME, "reference": "${trialSpec.Name}", "description": "the Katib trial's name"})
    return {
        "primaryContainerName": CONTAINER,
        "successCondition": JOB_SUCCEEDED,
        "failureCondition": JOB_FAILED,
        "trialParameters": parameters,
        "trialSpec": _job(std, image, axes),
    }


def _job(std: Standard, image: str, axes: list[Axis]) -> dict[str, Any]:
    """A Job of one pod on the GPU node pool; Kubernetes retries it `runtime.retries` times, and with a
    checkpoint volume a retry resumes the trial's fine-tuning."""
    runtime = std.runtime
    volumes: list[dict[str, Any]] = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": runtime.shm_size}}]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if runtime.checkpoint_volume:
        volumes.append({"name": "work", "persistentVolumeClaim": {"claimName": runtime.checkpoint_volume}})
        mounts.append({"name": "work", "mountPath": WORK_MOUNT})
    container = {
        "name": CONTAINER,
        "image": image,
        "command": ["sh", "-c"],
        "args": [_trial_command(std, axes)],
        "env": _env(std, image),
        "resources": _resources(std),
        "volumeMounts": mounts,
    }
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container], "volumes": volumes}
    if runtime.gpu.node_selector:
        pod["nodeSelector"] = dict(runtime.gpu.node_selector)
    if runtime.gpu.tolerations:
        pod["tolerations"] = [t.model_dump(exclude_none=True) for t in runtime.gpu.tolerations]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "backoffLimit": runtime.retries,
            "template": {"metadata": {"annotations": {"sidecar.istio.io/inject": "false"}}, "spec": pod},
        },
    }


def _trial_command(std: Standard, axes: list[Axis]) -> str:
    """One shell line: write the standard, run the trial. Katib appends its redirection of the last
    command's output to the metrics file, so `nlpstd trial` comes last and is not exec'd."""
    root = WORK_MOUNT if std.runtime.checkpoint_volume else SCRATCH
    out = f"{root}/{experiment_name(std)}/${{trialParameters.{TRIAL_NAME}}}"
    work = f" --work {training_work_dir(WORK_MOUNT, std, 'sweep')}" if std.runtime.checkpoint_volume else ""
    return (f'mkdir -p {SCRATCH} && printf "%s" "$NLPSTD_STANDARD" > {STANDARD_FILE} && '
            f"nlpstd trial {STANDARD_FILE} --point '{_point_template(axes)}' --out {out}{work}")


def _point_template(axes: list[Axis]) -> str:
    """`{"variant": "${trialParameters.variant}", "finetune.lr": ${trialParameters.finetune_lr}}`."""
    fields = []
    for axis in axes:
        value = f"${{trialParameters.{axis.name}}}"
        fields.append(f'"{axis.key}": ' + (f'"{value}"' if axis.quoted else value))
    return "{" + ", ".join(fields) + "}"


def _env(std: Standard, image: str) -> list[dict[str, str]]:
    env = [{"name": "NLPSTD_STANDARD", "value": std.to_yaml()}, {"name": "PYTHONUNBUFFERED", "value": "1"},
           {"name": "NLPSTD_IMAGE", "value": image}]
    if os.environ.get("MLFLOW_TRACKING_URI"):  # the server the trials log to is the one set when this is written
        env.append({"name": "MLFLOW_TRACKING_URI", "value": os.environ["MLFLOW_TRACKING_URI"]})
    return env


def _resources(std: Standard) -> dict[str, dict[str, str]]:
    training, gpu = std.runtime.training, std.runtime.gpu
    requests = {k: v for k, v in (("cpu", training.cpu), ("memory", training.memory)) if v}
    limits = {k: v for k, v in (("cpu", training.cpu_limit), ("memory", training.memory_limit)) if v}
    if gpu.count:
        limits[gpu.type] = str(gpu.count)
    return {name: values for name, values in (("requests", requests), ("limits", limits)) if values}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the standard) as literal blocks, readable in the manifest."""


def _literal(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _literal)
