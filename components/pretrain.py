"""pretrain: masked-language-model training on the prepared corpus (GPU image)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def pretrain(standard: str, mlflow_run_id: str, work_dir: str, data: Input[Dataset],
             model: Output[Model], metrics: Output[Metrics]):
    """The Model artifact is the stage folder: the Hugging Face model is its `model/`."""
    from nlpstd.spec import load_standard_text
    from nlpstd.stages import pretrain
    from nlpstd.stages.task import numeric, stage_task, torchrun_stage, training_work_dir

    std = load_standard_text(standard)
    work = training_work_dir(work_dir, std, "pretrain")
    if std.runtime.gpu.count > 1:  # one process per GPU
        figures = torchrun_stage("pretrain", std.runtime.gpu.count, standard, mlflow_run_id, data.path, model.path, work)
    else:
        with stage_task(standard, "pretrain", mlflow_run_id) as (std, tracker):
            figures = pretrain.run(std, data.path, model.path, tracker, work_dir=work)
    model.metadata["model_dir"] = "model"
    for name, value in numeric(figures).items():
        metrics.log_metric(name, value)
