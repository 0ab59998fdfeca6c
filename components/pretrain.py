"""pretrain: masked-language-model training on the prepared corpus (GPU image)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def pretrain(standard: str, mlflow_run_id: str, work_dir: str, data: Input[Dataset],
             model: Output[Model], metrics: Output[Metrics]) -> str:
    """The Model artifact is the stage folder: the Hugging Face model is its `model/`. Returns the
    MLflow parent run id: the one given, or one opened here for the pipeline run."""
    from nlpstd.stages.task import run_task

    _, mlflow_run_id = run_task("pretrain", standard, {"data-prep": data.path, "pretrain": model.path}, mlflow_run_id, work_dir, metrics)
    model.metadata["model_dir"] = "model"
    return mlflow_run_id
