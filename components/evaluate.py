"""evaluate: score the fine-tuned model, write the report, apply the gate that decides export."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output


def evaluate(standard: str, mlflow_run_id: str, data: Input[Dataset], model: Input[Model],
             evaluation: Output[Artifact], metrics: Output[Metrics], confusion: Output[ClassificationMetrics],
             report: Output[Markdown]) -> bool:
    """Returns whether the gate passed (its reason is in `evaluation`'s gate.json); `confusion` holds
    the test (else validation) confusion matrix of a classification task."""
    from pathlib import Path

    from nlpstd.evaluate.report import self_contained
    from nlpstd.jsonio import read_json
    from nlpstd.stages.task import run_task

    folders = {"data-prep": data.path, "finetune": model.path, "evaluate": evaluation.path}
    figures, _ = run_task("evaluate", standard, folders, mlflow_run_id, metrics=metrics)
    scores = read_json(Path(evaluation.path) / "metrics.json")["scores"]
    split = scores.get("test") or scores.get("validation") or {}
    if "confusion_matrix" in split:
        confusion.log_confusion_matrix(split["labels"], split["confusion_matrix"])
    Path(report.path).write_text(self_contained(Path(evaluation.path) / "report.md"), encoding="utf-8")
    return bool(figures["gate_passed"])
