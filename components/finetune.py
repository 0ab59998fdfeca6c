"""finetune: train the task model on the prepared data, from the base or the pretrained encoder (GPU image)."""

from typing import Optional

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def finetune(standard: str, mlflow_run_id: str, work_dir: str, data: Input[Dataset],
             model: Output[Model], metrics: Output[Metrics], pretrained: Optional[Input[Model]] = None) -> str:
    """Without `pretrained`, fine-tuning starts from the standard's `model.base`. Returns the MLflow
    parent run id: the one given, or one opened here for the pipeline run."""
    from pathlib import Path

    from nlpstd.spec import load_standard_text
    from nlpstd.stages import finetune
    from nlpstd.stages.output import numeric
    from nlpstd.stages.task import stage_task, torchrun_stage, training_work_dir
    from nlpstd.tracking import pipeline_parent_run

    std = load_standard_text(standard)
    mlflow_run_id = pipeline_parent_run(std, mlflow_run_id, Path(data.path))
    work = training_work_dir(work_dir, std, "finetune")
    base = Path(pretrained.path) / "model" if pretrained is not None else None
    if std.runtime.gpu.count > 1:  # one process per GPU
        figures = torchrun_stage("finetune", std.runtime.gpu.count, standard, mlflow_run_id, data.path, model.path, work, base)
    else:
        with stage_task(standard, "finetune", mlflow_run_id) as (std, tracker):
            figures = finetune.run(std, data.path, model.path, tracker, base=base, work_dir=work)
    model.metadata["model_dir"] = "model"
    for name, value in numeric(figures).items():
        metrics.log_metric(name, value)
    return mlflow_run_id
