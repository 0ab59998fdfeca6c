"""One trial of a sweep: the standard with a point's changes, prepared, (pre)trained and scored.

Trials share what they can rebuild: prepared data and pretrained encoders live in `shared_dir`,
keyed by the settings they depend on, so a learning-rate sweep pretrains once and a size sweep
once per size. A trial's fine-tuning resumes from its own checkpoint when rerun.

A completed trial also records what its model costs to serve (`nlpstd.sweep.footprint`): FLOPs, CPU
latency and bytes on disk, in fp32 and as the int8 graph export would ship, with that graph's scores.
Measured once per fine-tuned model: a rerun that finds it in result.json keeps it."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nlpstd.data.encode import Encoded, encode_data
from nlpstd.evaluate.metrics import headline
from nlpstd.evaluate.scoring import score
from nlpstd.jsonio import read_json, write_json
from nlpstd.models.build import load_model, load_tokenizer
from nlpstd.spec import Standard
from nlpstd.stages import data_prep, finetune, pretrain
from nlpstd.stages.context import StageContext, begin
from nlpstd.stages.identity import SECTIONS, section_key
from nlpstd.stages.identity import read as read_identity
from nlpstd.sweep import footprint, space
from nlpstd.tracking import NullTracker, Tracker, numeric

log = logging.getLogger(__name__)


def objective_metric(std: Standard) -> str:
    """The validation metric a sweep maximizes: its own, else the gate's."""
    assert std.sweep is not None
    return std.sweep.objective.metric or std.evaluate.gate.metric


def run_trial(std: Standard, point: dict[str, Any], out_dir: Path, shared_dir: Path, tracker: Tracker | None = None,
              on_evaluation: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Run the trial at `point` of the sweep standard `std`; write and return `out_dir/result.json`:
    the validation and train scores of the fine-tuned model, its size, its training cost and its
    footprint (`footprint.KEYS`, and whether its int8 graph passes the gate: `int8_passes_gate`)."""
    tracker = tracker or NullTracker()
    out_dir, shared_dir = Path(out_dir), Path(shared_dir)
    started = time.perf_counter()
    trial_std = space.trial_standard(std, point)
    metric = objective_metric(std)

    # -- inputs: prepared data and, when the trial pretrains, the encoder (both shared between trials)
    data_dir = _prepared(trial_std, shared_dir)
    pretrained = _pretrained(trial_std, data_dir, shared_dir) if trial_std.pretrain.enabled else None

    # -- fine-tune (resumes from the trial's checkpoint; a finished one is not redone)
    tuned_dir, model_dir = out_dir / "finetune", out_dir / "finetune" / "model"
    trained = not (tuned_dir / "metrics.json").is_file()  # pruned: finetune raises optuna.TrialPruned, nothing below runs
    if trained:
        finetune.run(trial_std, data_dir, tuned_dir, tracker, base=pretrained / "model" if pretrained else None,
                     on_evaluation=on_evaluation)
    tuned = read_json(tuned_dir / "metrics.json")
    before = read_json(pretrained / "metrics.json") if pretrained else {}

    # -- score: validation decides, a train sample of the same size shows over-fitting
    ctx = begin(trial_std, data_dir, inputs={"finetune": tuned_dir})
    tokenizer = load_tokenizer(str(model_dir))
    encoded = _encoded(trial_std, ctx, tokenizer)
    scores = _scores(trial_std, ctx, model_dir, tokenizer, encoded)
    gate = trial_std.evaluate.gate

    # -- footprint: what serving the model costs, fp32 and int8 (kept from result.json unless the model is new)
    measured = None if trained else _recorded_footprint(out_dir, trial_std)
    if measured is None:
        measured = footprint.footprint(model_dir, trial_std.task, encoded["validation"], ctx.data.labels,
                                       batch_size=trial_std.finetune.eval_batch_size, iob_repair=trial_std.evaluate.iob_repair)
    int8 = measured["int8_validation"]
    result = {
        "key": space.point_key(point),
        "label": space.label(point),
        "point": point,
        "changes": space.changes(std.sweep, point),
        "spec_hash": trial_std.spec_hash(),
        "metric": metric,
        "value": scores["validation"][metric],
        "train_metric": scores["train"][metric],
        "validation": scores["validation"],
        "train": scores["train"],
        "passes_gate": scores["validation"][gate.metric] >= gate.min,
        "parameters": tuned["parameters"],
        "trainable_parameters": tuned["trainable_parameters"],
        "flops": tuned.get("train_flops", 0.0) + before.get("train_flops", 0.0),
        "train_seconds": tuned["train_seconds"] + before.get("train_seconds", 0.0),
        "pretrain_seconds": before.get("train_seconds", 0.0),
        "steps": tuned["steps"],
        "best_step": tuned["best_step"],
        "stopped_early": tuned["stopped_early"],
        **{key: measured[key] for key in footprint.KEYS},
        "int8_value": int8[metric] if int8 else None,
        **footprint.int8_verdict(int8, scores["validation"], gate, trial_std.export.parity.max_metric_drop),
        "seconds": round(time.perf_counter() - started, 2),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "result.json", result)
    tracker.log_metrics({f"validation_{k}": v for k, v in scores["validation"].items()})
    tracker.log_metrics({f"train_{k}": v for k, v in scores["train"].items()})
    tracker.log_metrics({"train_flops": result["flops"], "trial_train_seconds": result["train_seconds"]})
    tracker.log_metrics(numeric({key: result[key] for key in (*footprint.KEYS, "int8_metric_drop")}))
    tracker.log_metrics({f"int8_validation_{k}": v for k, v in (int8 or {}).items()})
    return result


def _recorded_footprint(out_dir: Path, std: Standard) -> dict[str, Any] | None:
    """The footprint an earlier run of this trial wrote to result.json, when it measured the same recipe's model."""
    path = out_dir / "result.json"
    if not path.is_file():
        return None
    earlier = read_json(path)
    if earlier.get("spec_hash") != std.spec_hash() or not all(key in earlier for key in footprint.KEYS):
        return None
    log.info(f"footprint: recorded in {path} already, not measured again")
    return {key: earlier[key] for key in footprint.KEYS}


def _prepared(std: Standard, shared_dir: Path) -> Path:
    folder = shared_dir / f"data-prep-{section_key(std, SECTIONS['data-prep'])[:12]}"
    with _building(folder):
        if read_identity(folder) is None:  # none yet, or made before stage folders said what made them
            data_prep.run(std, folder)
    return folder


def _pretrained(std: Standard, data_dir: Path, shared_dir: Path) -> Path:
    folder = shared_dir / f"pretrain-{section_key(std, SECTIONS['pretrain'], data_dir.name)[:12]}"
    with _building(folder):
        if read_identity(folder) is None:
            pretrain.run(std, data_dir, folder)
    return folder


@contextlib.contextmanager
def _building(folder: Path) -> Iterator[None]:
    """Trials running side by side (a cluster's parallel loop) share `folder`: one builds it while
    the others wait on a lock beside it, then find it built, rather than writing it at once."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        yield


def _encoded(std: Standard, ctx: StageContext, tokenizer) -> dict[str, Encoded]:
    """Validation, and as many training examples (the first ones), tokenized as the trial's model reads them."""
    data = ctx.data
    validation = data.splits["validation"]
    samples = {"validation": validation, "train": data.splits["train"][: len(validation)]}
    return {split: encode_data(tokenizer, std.data, std.task, records, data.labels) for split, records in samples.items()}


def _scores(std: Standard, ctx: StageContext, model_dir: Path, tokenizer, encoded: dict[str, Encoded]) -> dict[str, dict[str, float]]:
    """Headline metrics of the fine-tuned model on each encoded split, on the trial's device and precision."""
    model = load_model(model_dir, std.task).to(ctx.device)
    out = {}
    for split, examples in encoded.items():
        scored = score(model, examples, std.task, ctx.data.labels, batch_size=std.finetune.eval_batch_size, device=ctx.device,
                       precision=ctx.precision, pad_id=tokenizer.pad_token_id, desc=f"score {split}",
                       iob_repair=std.evaluate.iob_repair)
        out[split] = headline(scored.metrics)
    return out
