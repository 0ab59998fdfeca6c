"""export: the deliverable model folder (Hugging Face, ONNX, int8) with its card, parity checks and KServe
manifest; the pipeline runs it only when the gate passed."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def export(standard: str, mlflow_run_id: str, data: Input[Dataset], model: Input[Model], evaluation: Input[Artifact],
           exported: Output[Model], metrics: Output[Metrics], card: Output[Markdown]):
    """`exported` is the stage folder: the model with its README card is its `model/`, the parity
    figures its `parity.json`; `card` shows the card in the run's UI. Fails, uploading nothing, when a
    format strays from the torch model beyond `export.parity`."""
    import shutil
    from pathlib import Path

    from nlpstd.stages import export
    from nlpstd.stages.output import numeric
    from nlpstd.stages.task import stage_task
    from nlpstd.tracking import close_pipeline_run

    with stage_task(standard, "export", mlflow_run_id) as (std, tracker):
        figures = export.run(std, data.path, Path(model.path) / "model", evaluation.path, exported.path, tracker, f"{std.name}.yaml")
    exported.metadata["model_dir"] = "model"
    exported.metadata["formats"] = figures["formats"]
    for name, value in numeric(figures).items():
        metrics.log_metric(name, value)
    shutil.copyfile(Path(exported.path) / "model" / "README.md", card.path)
    close_pipeline_run(mlflow_run_id)  # the last stage: end the parent run if the pipeline opened it
