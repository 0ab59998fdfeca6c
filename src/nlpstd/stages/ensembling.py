"""An ensemble's outputs (`finetune.seeds`): its members' folders assembled into one model folder,
and their training told as one run with each member's figures beside the ensemble's."""

from __future__ import annotations

import shutil
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nlpstd.jsonio import read_json
from nlpstd.models import ensemble
from nlpstd.models.folder import INFO
from nlpstd.train.loop import LoopState, TrainResult


def assemble(tmp: Path, seeds: list[int], lora: bool, describe: Callable[[Path], None]) -> None:
    """`tmp/model`: the first member's folder, described (tokenizer, nlpstd.json), then every other
    member under `members/<seed>/` and the ensemble entry; LoRA: the first member's adapter. Made
    afresh from the members' work folders, so a rerun cut off here assembles it again."""
    work = {seed: tmp / ensemble.MEMBERS / str(seed) for seed in seeds}
    shutil.rmtree(tmp / "model", ignore_errors=True)
    shutil.copytree(work[seeds[0]] / "model", tmp / "model")
    describe(tmp / "model")
    ensemble.add_members(tmp / "model", {seed: folder / "model" for seed, folder in work.items()}, seeds,
                         read_json(tmp / "model" / INFO))
    if lora:
        shutil.rmtree(tmp / "adapter", ignore_errors=True)
        shutil.copytree(work[seeds[0]] / "adapter", tmp / "adapter")


def ensemble_result(records: list[dict[str, Any]], scored: float) -> TrainResult:
    """The ensemble's training as one run: the members' steps, time and FLOPs summed, the ensemble's
    score as the best, the first member's loss curve; no best step, since each member has its own."""
    state = LoopState(identity=records[0]["identity"], step=sum(r["steps"] for r in records), best_score=scored,
                      stopped_early=any(r["stopped_early"] for r in records),
                      train_seconds=sum(r["train_seconds"] for r in records), train_flops=sum(r["train_flops"] for r in records),
                      history=records[0]["history"])
    resumed = next((r["resumed_from"] for r in records if r["resumed_from"] is not None and not r["kept"]), None)
    return TrainResult(state=state, total_steps=sum(r["total_steps"] for r in records), resumed_from=resumed)


def ensemble_figures(records: list[dict[str, Any]], metric: str, scored: float) -> dict[str, Any]:
    """Each member's best validation score and training time, their mean and spread (sample standard
    deviation across seeds), and the ensemble's own score; parameters are the members' together."""
    scores = [r["best_score"] for r in records]
    augmented: Counter[str] = Counter()
    for r in records:
        augmented.update(r["augmented"])
    return {
        f"best_validation_{metric}": scored,
        **{f"member_{r['seed']}_best_validation_{metric}": r["best_score"] for r in records},
        f"members_mean_best_validation_{metric}": statistics.fmean(scores),
        f"members_spread_best_validation_{metric}": statistics.stdev(scores),
        **{f"member_{r['seed']}_train_seconds": r["train_seconds"] for r in records},
        "members": len(records),
        "members_kept": sum(r["kept"] for r in records),
        "parameters": sum(r["parameters"] for r in records),
        "trainable_parameters": sum(r["trainable_parameters"] for r in records),
        **dict(augmented),
    }
