"""finetune: train the task model on the prepared data, from the base or the pretrained encoder (GPU image)."""

from typing import Optional

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def finetune(standard: str, mlflow_run_id: str, work_dir: str, data: Input[Dataset],
             model: Output[Model], metrics: Output[Metrics], pretrained: Optional[Input[Model]] = None) -> str:
    """Without `pretrained`, fine-tuning starts from the standard's `model.base`. Returns the MLflow
    parent run id: the one given, or one opened here for the pipeline run."""
    from nlpstd.stages.task import run_task

    folders = {"data-prep": data.path, "pretrain": pretrained.path if pretrained is not None else None, "finetune": model.path}
    _, mlflow_run_id = run_task("finetune", standard, folders, mlflow_run_id, work_dir, metrics)
    model.metadata["model_dir"] = "model"
    return mlflow_run_id
