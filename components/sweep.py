"""sweep-trial: one point of a standard's sweep, trained and scored (GPU image); sweep-report: the
trials side by side, and the configuration to recommend (CPU image)."""

from typing import List

from kfp.dsl import Artifact, Input, Markdown, Metrics, Output


def sweep_trial(standard: str, point: str, mlflow_run_id: str, work_dir: str,
                result: Output[Artifact], metrics: Output[Metrics]) -> float:
    """`point` is the trial's axis values as JSON; `result` is the trial folder (its result.json, the
    fine-tuned model). Trials share prepared data and pretrained encoders through `work_dir` when the
    pipeline mounts one; without it each trial prepares its own, outside `result`, so none is uploaded.
    Returns the validation metric the sweep maximizes."""
    import json
    import tempfile
    from pathlib import Path

    from nlpstd import logs
    from nlpstd.spec import load_standard_text
    from nlpstd.stages.task import training_work_dir
    from nlpstd.sweep import space
    from nlpstd.sweep.trial import run_trial
    from nlpstd.tracking import RunTracking, numeric

    logs.configure()
    std = load_standard_text(standard)
    values = json.loads(point)
    key = space.point_key(values)
    with tempfile.TemporaryDirectory() as scratch:
        shared = training_work_dir(work_dir, std, "sweep") or Path(scratch)
        tags = {"nlpstd.trial_key": key, "nlpstd.trial_point": point}
        with RunTracking.attach(std, mlflow_run_id).stage(f"trial {space.label(values)}", tags) as tracker:
            figures = run_trial(std, values, Path(result.path), shared, tracker)
    result.metadata.update({"key": key, "label": figures["label"], "value": figures["value"]})
    for name, value in numeric(figures).items():
        metrics.log_metric(name, value)
    return float(figures["value"])


def sweep_report(standard: str, results: Input[List[Artifact]], report: Output[Artifact],
                 recommended: Output[Artifact], card: Output[Markdown]):
    """`report` holds report.md, trials.json and the plots; `recommended` the recommended standard
    (a one-line note when no configuration qualifies); `card` the report with its plots inlined."""
    import json
    from pathlib import Path

    from nlpstd.evaluate.report import self_contained
    from nlpstd.spec import load_standard_text
    from nlpstd.sweep import space
    from nlpstd.sweep.report import write_report

    std = load_standard_text(standard)
    numbers = {space.point_key(point): number for number, point in enumerate(space.plan(std))}
    trials = []
    for index, artifact in enumerate(results):
        trial = json.loads((Path(artifact.path) / "result.json").read_text(encoding="utf-8"))
        trial.update(number=numbers.get(trial["key"], index), state="complete", trial_seconds=trial["seconds"])
        trials.append(trial)
    out = Path(report.path)
    summary = write_report(std, trials, out, trial_seconds=sum(t["trial_seconds"] for t in trials))
    chosen = summary["recommended"]
    if chosen is not None:
        Path(recommended.path).write_text((out / "recommended.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    else:
        Path(recommended.path).write_text(f"# no configuration recommended: {summary['reason']}\n", encoding="utf-8")
    recommended.metadata.update({"recommended": chosen is not None, "label": chosen["label"] if chosen else ""})
    Path(card.path).write_text(self_contained(out / "report.md"), encoding="utf-8")
