"""A model trained once in a work folder of its own and kept there: an ensemble member, or the
model before compression. A rerun of the same recipe keeps it instead of training it again."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlpstd import runtime
from nlpstd.data.augment import Augmenter
from nlpstd.jsonio import read_json, write_json
from nlpstd.models.build import merged
from nlpstd.tracking import Tracker
from nlpstd.train.loop import TrainResult

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

MEMBER_RECORD = "member.json"  # in a work folder, written once the model's weights are: the model is done


@dataclass
class Trained:
    """A model `train` left holding its best weights, what it trained on, and its size."""

    model: PreTrainedModel
    result: TrainResult
    augmenter: Augmenter | None
    parameters: int
    trainable_parameters: int

    def augment_counts(self) -> dict[str, int]:
        """What augmentation did over the epochs training began (none without augmentation)."""
        return self.augmenter.counts(range(self.result.state.epoch + 1)) if self.augmenter else {}


def kept_or_trained(fit: Callable[..., Trained], seed: int, work: Path, identity_key: str, name: str, metric: str,
                    lora: bool, heard_by: Tracker | None, hear: Callable[[int, dict[str, float]], None] | None) -> dict[str, Any]:
    """The model of `seed` (an ensemble member, or the model before compression; `name` says which in the
    log): trained by `fit` in `work`, or kept as an earlier run of this recipe left it. Its record
    (`member.json`: its figures and loss curve) is written after its weights (`work/model`), so a
    record means a whole model; the checkpoints then go. Only the main process writes: under
    torchrun the others train alongside it and get {}."""
    record_file = work / MEMBER_RECORD
    if record_file.is_file():
        record = read_json(record_file)
        if record.get("identity") == identity_key:
            log.info(f"finetune: {name} was finished by an earlier run: kept, not retrained")
            return {**record, "kept": True}
    trained = fit(seed, work, identity_key, heard_by, hear)
    if not runtime.is_main():
        return {}
    if lora:
        trained.model.save_pretrained(work / "adapter")
    merged(trained.model).to("cpu").save_pretrained(work / "model")
    result, state = trained.result, trained.result.state
    record = {"identity": identity_key, "seed": seed, "best_score": state.best_score, "best_step": state.best_step,
              "steps": state.step, "total_steps": result.total_steps, "resumed_from": result.resumed_from,
              "stopped_early": state.stopped_early, "train_seconds": round(state.train_seconds, 2),
              "train_flops": state.train_flops, "parameters": trained.parameters,
              "trainable_parameters": trained.trainable_parameters, "augmented": trained.augment_counts(), "history": state.history}
    write_json(record_file, record, indent=None)
    resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from is not None else ""
    log.info(f"finetune: {name}: best validation {metric} {state.best_score:.4f} at step "
             f"{state.best_step} of {state.step}{resumed}")
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    return {**record, "kept": False}
