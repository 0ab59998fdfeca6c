"""export: the deliverable model folder with its model card; the pipeline runs it only when the gate passed."""

from kfp.dsl import Artifact, Input, Metrics, Model, Output


def export(standard: str, mlflow_run_id: str, model: Input[Model], evaluation: Input[Artifact],
           exported: Output[Model], metrics: Output[Metrics]):
    """`exported` is the stage folder: the Hugging Face model with its README card is its `model/`."""
    from pathlib import Path

    from nlpstd.stages import export
    from nlpstd.stages.output import numeric
    from nlpstd.stages.task import stage_task
    from nlpstd.tracking import close_pipeline_run

    with stage_task(standard, "export", mlflow_run_id) as (std, tracker):
        figures = export.run(std, Path(model.path) / "model", evaluation.path, exported.path, tracker, f"{std.name}.yaml")
    exported.metadata["model_dir"] = "model"
    for name, value in numeric(figures).items():
        metrics.log_metric(name, value)
    close_pipeline_run(mlflow_run_id)  # the last stage: end the parent run if the pipeline opened it
