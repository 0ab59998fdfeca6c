"""Run a standard's stages in order, in-process, each into `OUT/<stage>/`, under one MLflow parent run."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from nlpstd import locks
from nlpstd.errors import NlpstdError
from nlpstd.jsonio import read_json, write_json
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

    summary: dict = {"standard": std.name, "out": str(out), "status": "running", "stages": {}, "mlflow_run_id": None}
    tracker = RunTracking(std, enabled=tracking)
    stage = None
    try:
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
    except BaseException as exc:  # a failed run says how far it got, then fails exactly as it would have
        failed_stage = stage if stage not in summary["stages"] else None  # None: before the first stage or after the last
        summary.update(status="failed", failed={"stage": failed_stage, "error": one_line(exc)})
        # a run refused before anything was written (bad input on a new OUT) leaves nothing behind: no OUT, no summary
        if out.is_dir():
            with contextlib.suppress(OSError, ValueError):  # a full disk must not hide the error that stopped the run
                _write_summary(out, summary, dirs)
        raise
    summary["status"] = "completed"
    _write_summary(out, summary, dirs)
    return summary


def one_line(exc: BaseException) -> str:
    """An error as the CLI prints it: nlpstd's own errors by their message, anything else with its type."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, NlpstdError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _write_summary(out: Path, summary: dict, dirs: dict[str, Path]) -> None:
    """`OUT/summary.json`, whether the run completed or not, with the champion's final outcome."""
    evaluation_file = dirs["evaluate"] / "metrics.json"  # this run's, or an earlier one's when --stages starts later
    evaluation = read_json(evaluation_file) if evaluation_file.is_file() else None
    export = summary["stages"].get("export", {}).get("metrics")
    summary["champion"] = champion_outcome(evaluation, export, summary.get("failed"))
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary, default=str)


def champion_outcome(evaluation: dict | None, export: dict | None, failed: dict | None = None) -> dict | None:
    """What became of evaluation's champion decision, as far as the run went. Evaluation decides
    (`decision`) before export runs and only export makes a promotion happen, so `outcome` comes from
    export's metrics, or from its failure: a reader never sees a promotion that did not take place.
    `failed` is the summary's {stage, error}. None without an evaluation."""
    if evaluation is None:
        return None
    decision = evaluation.get("champion") or {}
    wanted = "promote" if decision.get("promote") else "keep"
    gate = evaluation.get("gate") or {}
    if export is not None:
        outcome = export.get("champion_outcome") or ("promoted" if export.get("promoted", decision.get("promote")) else "kept")
        return {"decision": wanted, "outcome": outcome, "reason": export.get("promotion_reason") or decision.get("reason", "")}
    if not gate.get("passed", True):
        return {"decision": wanted, "outcome": "kept", "reason": f"the gate failed ({gate.get('reason', '')})"}
    if failed and failed.get("stage") == "export":
        return {"decision": wanted, "outcome": "kept" if wanted == "keep" else "not promoted",
                "reason": f"export failed: {failed.get('error', '')}"}
    return {"decision": wanted, "outcome": "pending", "reason": "export has not run"}


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
