"""`nlpstd sweep`: run a standard's trials with Optuna, one nested MLflow run each, then the report.

The Optuna study lives in the sweep's folder (`study.db`), so a rerun after an interruption
continues it: finished and pruned trials are kept, a trial that was cut off runs again at the
same point and its fine-tuning resumes from its checkpoint."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nlpstd.errors import NlpstdError
from nlpstd.hashing import sha256_json
from nlpstd.preflight import preflight
from nlpstd.spec import Standard
from nlpstd.sweep import space
from nlpstd.sweep.report import progress_table, write_report
from nlpstd.sweep.trial import objective_metric, run_trial
from nlpstd.tracking import RunTracking, open_parent_run, process_tags, tracking_client

log = logging.getLogger(__name__)

ENDED = (TrialState.COMPLETE, TrialState.PRUNED)


def run_sweep(standard_file: str | Path, out: str | Path | None = None, tracking: bool = True) -> dict[str, Any]:
    """Run (or continue) the sweep of `standard_file` into `out` (default `runs/<name>-sweep`) and
    write its report; returns the report's summary."""
    std, _ = preflight(standard_file)
    if std.sweep is None:
        raise NlpstdError(f"{standard_file}: no sweep section; add one to search sizes and settings (README: Sweeps)")
    out = Path(out or Path("runs") / f"{std.name}-sweep")
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(std, out)
    target = _queue(std, study)
    log.info(f"sweep {std.name}: {std.sweep.strategy}, {target} trials, "
             f"{len(tried(study))} done already; study in {out / 'study.db'}")

    with _sweep_run(std, study, tracking) as run_id:
        asked, limit = 0, 20 * max(target, 1)  # a sampler that only proposes points already tried stops the sweep
        while len(tried(study)) < min(target, space.size(std.sweep) or target) and asked < limit:
            asked += 1
            spent = trial_seconds(study) / 60
            if std.sweep.max_minutes is not None and spent >= std.sweep.max_minutes:
                log.info(f"sweep: stopping, the trials took {spent:.1f} of max_minutes {std.sweep.max_minutes:g}")
                break
            _run_one(std, study, out, run_id)
            log.info(progress_table(std, results(study)))
        summary = write_report(std, results(study), out / "report", trial_seconds=trial_seconds(study))
        _log_report(std, run_id, out / "report", summary)
    return summary


def open_study(std: Standard, out: Path) -> optuna.Study:
    """The study of this sweep in `out/study.db`: named by the sweep's settings, so a changed sweep starts afresh."""
    sweep = std.sweep
    assert sweep is not None
    seed = space.sampler_seed(std)
    if sweep.strategy == "bayes":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=space.startup_trials(sweep))
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)  # a grid enqueues its points; the sampler is not asked
    identity = sha256_json(std.to_dict())[:12]
    return optuna.create_study(study_name=f"{std.name}-{identity}", storage=f"sqlite:///{out.resolve() / 'study.db'}",
                               direction="maximize", sampler=sampler, pruner=_pruner(std), load_if_exists=True)


def _pruner(std: Standard) -> optuna.pruners.BasePruner:
    pruning = std.sweep.pruning if std.sweep else None
    if pruning is None or pruning.pruner == "none":
        return optuna.pruners.NopPruner()
    if pruning.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=pruning.warmup_evaluations + 1)
    # evaluations count from 1: after `warmup_evaluations` of them, the next may prune
    return optuna.pruners.MedianPruner(n_startup_trials=pruning.startup_trials, n_warmup_steps=pruning.warmup_evaluations + 1)


def _queue(std: Standard, study: optuna.Study) -> int:
    """Requeue trials an interruption cut off (and failed ones), enqueue a grid's new points; the trials to reach."""
    sweep = std.sweep
    assert sweep is not None
    trials = study.get_trials(deepcopy=False)
    settled = {space.point_key(_point(t)) for t in trials if t.state in (*ENDED, TrialState.WAITING)}
    for trial in trials:
        if trial.state == TrialState.RUNNING:  # this process is the only one running the study
            study.tell(trial.number, state=TrialState.FAIL)
        if trial.state in (TrialState.RUNNING, TrialState.FAIL) and space.point_key(trial.params) not in settled:
            study.enqueue_trial(trial.params)
            settled.add(space.point_key(trial.params))
    if sweep.strategy != "grid":
        return sweep.trials or 0
    points = space.grid(sweep)[: sweep.trials]
    for point in points:
        if space.point_key(point) not in settled:
            study.enqueue_trial(point)
    return len(points)


def _run_one(std: Standard, study: optuna.Study, out: Path, run_id: str | None) -> None:
    trial = study.ask(space.axes(std.sweep))
    point = dict(trial.params)
    key = space.point_key(point)
    log.info(f"\n-- trial {trial.number}: {space.label(point)}")
    earlier = _ended(study).get(key)
    if earlier is not None:  # a sampler may propose a point again: its outcome stands, nothing is retrained
        trial.set_user_attr("repeat_of", earlier.number)
        if earlier.state == TrialState.COMPLETE:
            study.tell(trial, earlier.value)
        else:
            last = max(earlier.intermediate_values)
            trial.report(earlier.intermediate_values[last], last)
            study.tell(trial, state=TrialState.PRUNED)
        log.info(f"-- trial {trial.number} repeats trial {earlier.number}: its outcome is reused")
        return
    tags = {"nlpstd.trial": str(trial.number), "nlpstd.trial_key": key}
    with RunTracking.attach(std, run_id).stage(f"trial {trial.number}", tags) as tracker:
        tracker.log_params({f"trial.{axis}": str(value) for axis, value in point.items()})
        try:
            result = run_trial(std, point, out / "trials" / key, out / "shared", tracker, on_evaluation=_reporter(trial, objective_metric(std)))
        except optuna.TrialPruned as pruned:
            log.info(f"-- trial {trial.number} pruned: {pruned}")
            trial.set_user_attr("result", {"key": key, "label": space.label(point), "point": point})
            study.tell(trial, state=TrialState.PRUNED)
            shutil.rmtree(out / "trials" / key, ignore_errors=True)  # a pruned trial is never resumed
            tracker.set_tags({"nlpstd.trial_state": "pruned"})
            return
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        tracker.set_tags({"nlpstd.trial_state": "complete"})
        trial.set_user_attr("result", result)
        study.tell(trial, result["value"])


def _point(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's point: its params once it ran, the enqueued values while it waits (Optuna keeps those apart)."""
    return trial.params or dict(trial.system_attrs.get("fixed_params", {}))


def tried(study: optuna.Study) -> set[str]:
    """The points of the trials that ended: a point proposed again does not count twice."""
    return {space.point_key(t.params) for t in study.get_trials(deepcopy=False, states=ENDED)}


def _ended(study: optuna.Study) -> dict[str, FrozenTrial]:
    """The first ended trial of each point, by point key."""
    out: dict[str, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False, states=ENDED):
        out.setdefault(space.point_key(trial.params), trial)
    return out


def _reporter(trial: optuna.Trial, metric: str) -> Callable[[int, dict[str, float]], None]:
    """Hands each validation score to Optuna and stops the trial when the pruner says so."""

    def report(evaluation: int, scores: dict[str, float]) -> None:
        trial.report(scores[metric], evaluation)
        if trial.should_prune():
            raise optuna.TrialPruned(f"validation {metric} trails the other trials at evaluation {evaluation}")

    return report


def results(study: optuna.Study) -> list[dict[str, Any]]:
    """Each ended trial's result, with its number, state, duration and validation curve."""
    out = []
    for trial in study.get_trials(deepcopy=False, states=ENDED):
        if "repeat_of" in trial.user_attrs:  # one measurement, reported once
            continue
        result = dict(trial.user_attrs.get("result") or {"point": trial.params})
        result.update(number=trial.number, state=trial.state.name.lower(), trial_seconds=_seconds(trial),
                      curve=[trial.intermediate_values[k] for k in sorted(trial.intermediate_values)])
        out.append(result)
    return out


def trial_seconds(study: optuna.Study) -> float:
    """Wall time of the trials that ended (of a trial cut off and run again, its last run only)."""
    return sum(_seconds(t) for t in study.get_trials(deepcopy=False, states=ENDED))


def _seconds(trial: FrozenTrial) -> float:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return 0.0
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


@contextlib.contextmanager
def _sweep_run(std: Standard, study: optuna.Study, enabled: bool) -> Iterator[str | None]:
    """The sweep's parent MLflow run: the study's own when it is continued, so every trial sits under one run."""
    if not enabled:
        yield None
        return
    import mlflow

    client = tracking_client()
    run_id = study.user_attrs.get("mlflow_run_id")
    try:
        if run_id:  # continued: running again, and owned by this process (else a stale-run sweep would end it)
            client.update_run(run_id, status="RUNNING")
            for key, value in process_tags().items():
                client.set_tag(run_id, key, value)
    except mlflow.exceptions.MlflowException:  # the tracking store was reset since
        run_id = None
    if not run_id:
        run_id = open_parent_run(std, {"nlpstd.sweep": std.sweep.strategy if std.sweep else ""})
        study.set_user_attr("mlflow_run_id", run_id)
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)


def _log_report(std: Standard, run_id: str | None, report_dir: Path, summary: dict[str, Any]) -> None:
    if not run_id:
        return
    from nlpstd.tracking import MlflowTracker

    tracker = MlflowTracker(run_id)
    tracker.log_artifact(report_dir, "sweep")
    best, chosen = summary.get("best") or {}, summary.get("recommended") or {}
    tracker.log_metrics({"best_value": best.get("value", 0.0), "recommended_value": chosen.get("value", 0.0),
                         "recommended_parameters": chosen.get("parameters", 0), "trials": summary["trials"],
                         "pruned_trials": summary["pruned"], "trial_seconds": summary["trial_seconds"]})
    if chosen:
        tracker.set_tags({"nlpstd.recommended": chosen["label"], "nlpstd.recommended_spec_hash": chosen["spec_hash"]})
