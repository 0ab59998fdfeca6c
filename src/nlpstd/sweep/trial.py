"""One trial of a sweep: the standard with a point's changes, prepared, (pre)trained and scored.

Trials share what they can rebuild: prepared data and pretrained encoders live in `shared_dir`,
keyed by the settings they depend on, so a learning-rate sweep pretrains once and a size sweep
once per size. A trial's fine-tuning resumes from its own checkpoint when rerun."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nlpstd.data.encode import encode_data
from nlpstd.errors import NlpstdError
from nlpstd.evaluate.metrics import headline
from nlpstd.evaluate.scoring import score
from nlpstd.jsonio import read_json, write_json
from nlpstd.models.build import load_model, load_tokenizer
from nlpstd.spec import Standard
from nlpstd.stages import data_prep, finetune, pretrain
from nlpstd.stages.context import begin
from nlpstd.stages.identity import SECTIONS, section_key
from nlpstd.stages.identity import read as read_identity
from nlpstd.sweep import space
from nlpstd.tracking import NullTracker, Tracker


def objective_metric(std: Standard) -> str:
    """The validation metric a sweep maximizes: its own, else the gate's."""
    assert std.sweep is not None
    return std.sweep.objective.metric or std.evaluate.gate.metric


def run_trial(std: Standard, point: dict[str, Any], out_dir: Path, shared_dir: Path, tracker: Tracker | None = None,
              on_evaluation: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Run the trial at `point` of the sweep standard `std`; write and return `out_dir/result.json`:
    the validation and train scores of the fine-tuned model, its size and its training cost."""
    tracker = tracker or NullTracker()
    out_dir, shared_dir = Path(out_dir), Path(shared_dir)
    started = time.perf_counter()
    trial_std = space.trial_standard(std, point)
    if trial_std.finetune.seeds and "seed" in space.changes(std.sweep, point):  # std.seed would reach no member
        raise NlpstdError("sweep: the trials vary seed, but finetune.seeds seeds every ensemble member, so they would "
                          "train the same members: vary finetune.seeds instead, or train single models")
    metric = objective_metric(std)

    # -- inputs: prepared data and, when the trial pretrains, the encoder (both shared between trials)
    data_dir = _prepared(trial_std, shared_dir)
    pretrained = _pretrained(trial_std, data_dir, shared_dir) if trial_std.pretrain.enabled else None

    # -- fine-tune (resumes from the trial's checkpoint; a finished one is not redone)
    tuned_dir = out_dir / "finetune"
    if not (tuned_dir / "metrics.json").is_file():
        finetune.run(trial_std, data_dir, tuned_dir, tracker, base=pretrained / "model" if pretrained else None,
                     on_evaluation=on_evaluation)
    tuned = read_json(tuned_dir / "metrics.json")
    before = read_json(pretrained / "metrics.json") if pretrained else {}

    # -- score: validation decides, a train sample of the same size shows over-fitting
    scores = _scores(trial_std, data_dir, tuned_dir / "model")
    gate = trial_std.evaluate.gate
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
        "seconds": round(time.perf_counter() - started, 2),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "result.json", result)
    tracker.log_metrics({f"validation_{k}": v for k, v in scores["validation"].items()})
    tracker.log_metrics({f"train_{k}": v for k, v in scores["train"].items()})
    tracker.log_metrics({"train_flops": result["flops"], "trial_train_seconds": result["train_seconds"]})
    return result


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


def _scores(std: Standard, data_dir: Path, model_dir: Path) -> dict[str, dict[str, float]]:
    """Headline metrics on validation and on as many training examples (the first ones)."""
    ctx = begin(std, data_dir, inputs={"finetune": Path(model_dir).parent})
    data, device, precision = ctx.data, ctx.device, ctx.precision
    tokenizer, model = load_tokenizer(str(model_dir)), load_model(model_dir, std.task).to(device)
    validation = data.splits["validation"]
    samples = {"validation": validation, "train": data.splits["train"][: len(validation)]}
    out = {}
    for split, records in samples.items():
        encoded = encode_data(tokenizer, std.data, std.task, records, data.labels)
        scored = score(model, encoded, std.task, data.labels, batch_size=std.finetune.eval_batch_size, device=device,
                       precision=precision, pad_id=tokenizer.pad_token_id, desc=f"score {split}",
                       iob_repair=std.evaluate.iob_repair)
        out[split] = headline(scored.metrics)
    return out
