"""pretrain: masked-language-model training on the prepared corpus (GPU image)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def pretrain(standard: str, mlflow_run_id: str, work_dir: str, data: Input[Dataset],
             model: Output[Model], metrics: Output[Metrics]) -> str:
    """The Model artifact is the stage folder: the Hugging Face model is its `model/`. Returns the
    MLflow parent run id: the one given, or one opened here for the pipeline run."""
    from pathlib import Path

    from nlpstd.spec import load_standard_text
    from nlpstd.stages import pretrain
    from nlpstd.stages.output import numeric
    from nlpstd.stages.task import stage_task, torchrun_stage, training_work_dir
    from nlpstd.tracking import pipeline_parent_run

    std = load_standard_text(standard)
    mlflow_run_id = pipeline_parent_run(std, mlflow_run_id, Path(data.path))
    work = training_work_dir(work_dir, std, "pretrain")
    if std.runtime.gpu.count > 1:  # one process per GPU
        figures = torchrun_stage("pretrain", std.runtime.gpu.count, standard, mlflow_run_id, data.path, model.path, work)
    else:
        with stage_task(standard, "pretrain", mlflow_run_id) as (std, tracker):
            figures = pretrain.run(std, data.path, model.path, tracker, work_dir=work)
    model.metadata["model_dir"] = "model"
    for name, value in numeric(figures).items():
        metrics.log_metric(name, value)
    return mlflow_run_id
