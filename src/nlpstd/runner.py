"""Run a standard's stages in order, in-process, each into `OUT/<stage>/`, under one MLflow parent run."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from nlpstd import locks
from nlpstd.errors import NlpstdError
from nlpstd.jsonio import read_json, write_json
from nlpstd.preflight import preflight
from nlpstd.spec import Standard
from nlpstd.stages.contract import KEPT_EXPORT, NAMES, TRAINING, Layout, active, run_stage

__all__ = ["KEPT_EXPORT", "champion_outcome", "one_line", "parse_stages", "run_standard"]


def parse_stages(text: str | None) -> list[str]:
    if not text:
        return list(NAMES)
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    for stage in chosen:
        if stage not in NAMES:
            raise NlpstdError(f"--stages: unknown stage {stage!r} (stages: {', '.join(NAMES)})")
    return [s for s in NAMES if s in chosen]


def run_standard(standard_file: str | Path, out: str | Path | None = None, stages: list[str] | None = None, tracking: bool = True,
                 nproc: int = 1, tags: dict[str, str] | None = None, allow_other_inputs: bool = False) -> dict:
    """Validate everything first, then run the stages; returns a summary (also written to OUT/summary.json).
    With `nproc` > 1 the training stages run data-parallel under torchrun, one process each. `tags`
    go on the MLflow parent run when it is opened, so a run that fails can still be found by them.
    One run at a time writes into OUT; a second is refused while the first holds it. A stage refuses
    the output of an earlier stage made by another recipe unless `allow_other_inputs`."""
    # the corpus is left to data-prep, which reads it first thing in this same process, with the same errors
    std, _ = preflight(standard_file, check_corpus=False)
    out = Path(out or Path("runs") / std.name)
    layout = Layout.under(out)
    runs = active(std)
    stages = [s for s in stages or runs if s in runs]
    if not stages:
        raise NlpstdError("--stages: pretrain is disabled in this standard (pretrain.enabled: false)")
    with locks.exclusive(out, "output folder"):
        for stage in runs[: runs.index(stages[0])]:
            if not (layout.folder(stage) / "metrics.json").is_file():
                raise NlpstdError(f"--stages: {stages[0]} needs the output of {stage} in {layout.folder(stage)}; run {stage} first")
        return _run_stages(std, str(standard_file), out, layout, stages, tracking, nproc, tags, allow_other_inputs)


def _run_stages(std: Standard, standard_file: str, out: Path, layout: Layout, stages: list[str], tracking: bool,
                nproc: int, tags: dict[str, str] | None, allow_other_inputs: bool) -> dict:
    # MLflow and the stages import slowly: only once the inputs are known good
    from nlpstd.stages.task import torchrun_stage
    from nlpstd.tracking import RunTracking

    summary: dict = {"standard": std.name, "out": str(out), "status": "running", "stages": {}, "mlflow_run_id": None}
    tracker = RunTracking(std, enabled=tracking)
    stage = None
    try:
        with tracker.run(tags):
            summary["mlflow_run_id"] = tracker.run_id
            for stage in stages:
                started = time.perf_counter()
                if nproc > 1 and stage in TRAINING:  # its main process logs the stage's nested run itself
                    metrics = torchrun_stage(stage, nproc, std.to_yaml(), tracker.run_id or "", layout, allow_other_inputs)
                else:
                    with tracker.stage(stage) as stage_tracker:
                        metrics = run_stage(stage, std, layout, stage_tracker, allow_other_inputs=allow_other_inputs,
                                            standard_file=standard_file)
                summary["stages"][stage] = {"seconds": round(time.perf_counter() - started, 1), "metrics": metrics}
                tracker.parent.log_metrics({f"{stage}_seconds": summary["stages"][stage]["seconds"]})
    except BaseException as exc:  # a failed run says how far it got, then fails exactly as it would have
        failed_stage = stage if stage not in summary["stages"] else None  # None: before the first stage or after the last
        summary.update(status="failed", failed={"stage": failed_stage, "error": one_line(exc)})
        # a run refused before anything was written (bad input on a new OUT) leaves nothing behind: no OUT, no summary
        if out.is_dir():
            with contextlib.suppress(OSError, ValueError):  # a full disk must not hide the error that stopped the run
                _write_summary(out, summary, layout)
        raise
    summary["status"] = "completed"
    _write_summary(out, summary, layout)
    return summary


def one_line(exc: BaseException) -> str:
    """An error as the CLI prints it: nlpstd's own errors by their message, anything else with its type."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, NlpstdError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _write_summary(out: Path, summary: dict, layout: Layout) -> None:
    """`OUT/summary.json`, whether the run completed or not, with the champion's final outcome."""
    evaluation_file = layout.folder("evaluate") / "metrics.json"  # this run's, or an earlier one's when --stages starts later
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
