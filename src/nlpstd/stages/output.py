"""Stage outputs appear whole or not at all.

A stage writes into `<out>/.<name>.partial/` and renames it to `<out>/<name>/` when done, so a
failed or killed stage never leaves a folder a later stage could mistake for a result. The
training stages (pretrain, finetune) keep their partial folder on failure: its checkpoints
are what a rerun resumes from.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nlpstd import locks, runtime
from nlpstd.evaluate.report import plot_loss_curve
from nlpstd.jsonio import write_json
from nlpstd.tracking import Tracker, numeric
from nlpstd.train.checkpoint import replace_dir
from nlpstd.train.loop import TrainResult

CHECKPOINT_LOCK_WAIT_S = 120  # a retried pipeline task may start before its failed attempt has let go


def partial_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}.partial")


@contextlib.contextmanager
def staged(out_dir: Path, keep_on_error: bool = False, work_dir: Path | None = None) -> Iterator[Path]:
    """Yield the partial folder to write into; publish it as `out_dir` on success.

    `work_dir` puts the partial folder elsewhere: a pipeline task's output folder is new on
    every run, so its checkpoints live where the next run (or retry) finds them.
    """
    out_dir = Path(out_dir)
    tmp = Path(work_dir) if work_dir else partial_dir(out_dir)
    if not runtime.is_main():  # under torchrun the main process alone writes and publishes; the others share its folder
        tmp.mkdir(parents=True, exist_ok=True)
        yield tmp
        return
    # checkpoints a rerun resumes from are one process's at a time: two runs of one recipe (a schedule
    # overlapping a manual run, on a shared volume) must not resume and overwrite each other's
    held = locks.exclusive(tmp, "checkpoint folder", wait_s=CHECKPOINT_LOCK_WAIT_S) if keep_on_error else contextlib.nullcontext()
    with held:
        if not keep_on_error:
            shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            yield tmp
        except BaseException:
            if not keep_on_error:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        if tmp != partial_dir(out_dir):  # move beside the target first (maybe across file systems), then rename
            shutil.rmtree(partial_dir(out_dir), ignore_errors=True)
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(shutil.move(str(tmp), str(partial_dir(out_dir))))
        replace_dir(tmp, out_dir)


def write_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    write_json(Path(folder) / "metrics.json", metrics, sort_keys=True)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


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
