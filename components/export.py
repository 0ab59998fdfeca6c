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

    from nlpstd.stages.task import run_task

    folders = {"data-prep": data.path, "finetune": model.path, "evaluate": evaluation.path, "export": exported.path}
    figures, _ = run_task("export", standard, folders, mlflow_run_id, metrics=metrics)
    exported.metadata["model_dir"] = "model"
    exported.metadata["formats"] = figures["formats"]
    shutil.copyfile(Path(exported.path) / "model" / "README.md", card.path)
