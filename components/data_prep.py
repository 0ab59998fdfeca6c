"""data-prep: read and validate the standard's data (and corpus), fingerprint it."""

from kfp.dsl import Dataset, Metrics, Output


def data_prep(standard: str, has_pretrain_task: bool, data_stamp: str, data: Output[Dataset], metrics: Output[Metrics]):
    """Cached: its inputs are all that decides its output. `data_stamp` (sizes and times of the input
    files) is read by the cache alone: changed files, new key. No MLflow run id either, which would
    change the key every run: the first training task logs `data` (`nlpstd.stages.task`)."""
    import json
    from pathlib import Path

    from nlpstd.spec import load_standard_text
    from nlpstd.stages.task import check_pipeline_shape, run_task
    from nlpstd.tracking import numeric

    check_pipeline_shape(load_standard_text(standard), has_pretrain_task)
    figures, _ = run_task("data-prep", standard, {"data-prep": data.path}, metrics=metrics)
    Path(metrics.path).write_text(json.dumps(numeric(figures)))  # a cached output needs a file behind it
