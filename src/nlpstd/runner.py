"""Run a standard's stages in order, in-process, each into `OUT/<stage>/`, under one MLflow parent run."""

from __future__ import annotations

import json
import time
from pathlib import Path

from nlpstd import locks
from nlpstd.errors import NlpstdError
from nlpstd.spec import Standard, check_files, load_standard

STAGES = ("data-prep", "pretrain", "finetune", "evaluate", "export")
TRAINING = ("pretrain", "finetune")
KEPT_EXPORT = "export-candidate"  # the export of a model that did not take the champion alias


def parse_stages(text: str | None) -> list[str]:
    if not text:
        return list(STAGES)
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    for stage in chosen:
        if stage not in STAGES:
            raise NlpstdError(f"--stages: unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    return [s for s in STAGES if s in chosen]


def run_standard(standard_file: str | Path, out: str | Path | None = None, stages: list[str] | None = None, tracking: bool = True,
                 nproc: int = 1, tags: dict[str, str] | None = None, allow_other_inputs: bool = False) -> dict:
    """Validate everything first, then run the stages; returns a summary (also written to OUT/summary.json).
    With `nproc` > 1 the training stages run data-parallel under torchrun, one process each. `tags`
    go on the MLflow parent run when it is opened, so a run that fails can still be found by them.
    One run at a time writes into OUT; a second is refused while the first holds it. A stage refuses
    the output of an earlier stage made by another recipe unless `allow_other_inputs`."""
    std = load_standard(standard_file)
    check_files(std, standard_file)
    out = Path(out or Path("runs") / std.name)
    active = [s for s in STAGES if s != "pretrain" or std.pretrain.enabled]
    stages = [s for s in stages or active if s in active]
    if not stages:
        raise NlpstdError("--stages: pretrain is disabled in this standard (pretrain.enabled: false)")
    dirs = {stage: out / stage for stage in STAGES}
    with locks.exclusive(out, "output folder"):
        for stage in active[: active.index(stages[0])]:
            if not (dirs[stage] / "metrics.json").is_file():
                raise NlpstdError(f"--stages: {stages[0]} needs the output of {stage} in {dirs[stage]}; run {stage} first")
        return _run_stages(std, str(standard_file), out, dirs, stages, tracking, nproc, tags, allow_other_inputs)


def _run_stages(std: Standard, standard_file: str, out: Path, dirs: dict[str, Path], stages: list[str], tracking: bool,
                nproc: int, tags: dict[str, str] | None, allow_other_inputs: bool) -> dict:
    from nlpstd.tracking import RunTracking  # MLflow and the stages import slowly: only once the inputs are known good

    summary: dict = {"standard": std.name, "out": str(out), "stages": {}}
    tracker = RunTracking(std, enabled=tracking)
    with tracker.run(tags):
        summary["mlflow_run_id"] = tracker.run_id
        for stage in stages:
            started = time.perf_counter()
            if nproc > 1 and stage in TRAINING:  # its main process logs the stage's nested run itself
                metrics = _torchrun(stage, std, dirs, nproc, tracker.run_id or "", allow_other_inputs)
            else:
                with tracker.stage(stage) as stage_tracker:
                    metrics = _run_stage(stage, std, dirs, stage_tracker, standard_file, allow_other_inputs)
            summary["stages"][stage] = {"seconds": round(time.perf_counter() - started, 1), "metrics": metrics}
            tracker.parent.log_metrics({f"{stage}_seconds": summary["stages"][stage]["seconds"]})
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _torchrun(stage: str, std: Standard, dirs: dict[str, Path], nproc: int, run_id: str, allow_other_inputs: bool) -> dict:
    from nlpstd.stages.task import torchrun_stage

    base = dirs["pretrain"] / "model" if stage == "finetune" and std.pretrain.enabled else None
    return torchrun_stage(stage, nproc, std.to_yaml(), run_id, str(dirs["data-prep"]), str(dirs[stage]), base=base,
                          allow_other_inputs=allow_other_inputs)


def _run_stage(stage: str, std: Standard, dirs: dict[str, Path], tracker, standard_file: str, allow_other_inputs: bool) -> dict:
    from nlpstd.stages import data_prep, evaluate, export, finetune, pretrain

    other = {"allow_other_inputs": allow_other_inputs}
    if stage == "data-prep":
        return data_prep.run(std, dirs["data-prep"], tracker)
    if stage == "pretrain":
        return pretrain.run(std, dirs["data-prep"], dirs["pretrain"], tracker, **other)
    if stage == "finetune":
        base = dirs["pretrain"] / "model" if std.pretrain.enabled else None
        return finetune.run(std, dirs["data-prep"], dirs["finetune"], tracker, base=base, **other)
    if stage == "evaluate":
        return evaluate.run(std, dirs["data-prep"], dirs["finetune"] / "model", dirs["evaluate"], tracker, **other)
    return export.run(std, dirs["data-prep"], dirs["finetune"] / "model", dirs["evaluate"], dirs["export"], tracker, standard_file,
                      kept_dir=dirs["export"].with_name(KEPT_EXPORT), **other)
