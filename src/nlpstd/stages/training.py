"""What the training stages (pretrain, finetune) write and log when their loop is done."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from nlpstd.evaluate.report import plot_loss_curve
from nlpstd.jsonio import write_json
from nlpstd.stages.output import write_metrics
from nlpstd.tracking import Tracker, numeric
from nlpstd.train.loop import TrainResult


def write_training(folder: Path, result: TrainResult, *, batch_size: int, started: float, device: Any, precision: str,
                   extra: dict[str, Any]) -> dict[str, Any]:
    """`history.json`, `loss.png` and `metrics.json` of a training stage (its own figures in `extra`
    plus the loop's); the checkpoints go, since a finished stage is never resumed."""
    folder, state = Path(folder), result.state
    write_json(folder / "history.json", state.history, indent=None)
    plot_loss_curve(state.history, folder / "loss.png")
    metrics = {
        **extra,
        "best_step": state.best_step,
        "steps": state.step,
        "total_steps": result.total_steps,
        "stopped_early": state.stopped_early,
        "resumed_from_step": result.resumed_from,
        "train_seconds": round(state.train_seconds, 2),
        "train_flops": state.train_flops,
        "stage_seconds": round(time.perf_counter() - started, 2),
        "train_samples_per_s": round(state.step * batch_size / max(state.train_seconds, 1e-9), 2),
        "device": str(device),
        "precision": precision,
    }
    write_metrics(folder, metrics)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    return metrics


def log_training(tracker: Tracker, out_dir: Path, metrics: dict[str, Any]) -> None:
    """The stage's numeric figures and its loss curve, once the stage folder is published."""
    tracker.log_metrics(numeric(metrics))
    tracker.set_tags({"nlpstd.device": metrics["device"], "nlpstd.precision": metrics["precision"]})
    tracker.log_artifact(Path(out_dir) / "loss.png")
