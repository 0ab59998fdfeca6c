"""data-prep: read and validate the standard's data (and corpus), fingerprint it."""

from kfp.dsl import Dataset, Metrics, Output


def data_prep(standard: str, has_pretrain_task: bool, data_stamp: str, data: Output[Dataset], metrics: Output[Metrics]):
    """Cached: its inputs are all that decides its output. `data_stamp` (sizes and times of the input
    files) is read by the cache alone: changed files, new key. No MLflow run id either, which would
    change the key every run: whoever starts the pipeline logs `data` (`nlpstd.stages.data_prep.track`)."""
    import json
    from pathlib import Path

    from nlpstd.stages import data_prep
    from nlpstd.stages.output import numeric
    from nlpstd.stages.task import check_pipeline_shape, stage_task

    with stage_task(standard, "data-prep") as (std, tracker):
        check_pipeline_shape(std, has_pretrain_task)
        figures = data_prep.run(std, data.path, tracker)
    for name, value in numeric(figures).items():
        metrics.log_metric(name, value)
    Path(metrics.path).write_text(json.dumps(numeric(figures)))  # a cached output needs a file behind it
