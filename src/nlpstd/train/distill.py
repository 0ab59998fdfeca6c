"""Knowledge distillation: a student learns from a fine-tuned teacher's logits as well as from the labels.

The loss of a micro-batch is `alpha * T² * KL(softmax(teacher / T) || softmax(student / T))` plus
`(1 - alpha) * CE(student, labels)`, each a mean over the positions the task scores: the labelled
tokens for token classification (labels not `IGNORE`), the examples for sequence classification.
The soft targets carry what the teacher knows beyond the label (which wrong tags are nearly right);
T² keeps their gradients the size of the labels' at any temperature (Hinton et al., 2015).

Why it is built this way:
- The student runs once, without labels; its cross-entropy is computed here exactly as the model
  computes its own (mean over labelled positions, `IGNORE` skipped), so alpha 0 is plain fine-tuning.
- The KL is a masked mean over dense (B, T) positions, never a boolean selection: no host sync, and
  no data-dependent shape for `torch.compile` to break on.
- The teacher runs in eval mode under `torch.no_grad()` and the loop's autocast (a teacher's forward
  in bf16 costs half; a soft target needs no more), and both sides go to float32 before the softmax.
  It draws no random numbers, so the student's dropout masks are those plain fine-tuning draws.
- `TeacherCache` runs the teacher once over the training features, in fp32, when the inputs of a
  feature never change between epochs (no augmentation): each epoch then costs the student alone.
  `collate` puts the cached logits into the micro-batch, on the host or in a loader worker, so the
  loss reads them from the batch with the inputs (pinned, copied without blocking).
- `layer_subset` builds a student from the teacher's own encoder (DistilBERT's start: every other
  layer), with the layer removal of `nlpstd.compress.prune`, so it saves and reloads as a plain model.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from nlpstd.compress.prune import keep_layers
from nlpstd.data.encode import IGNORE
from nlpstd.errors import NlpstdError
from nlpstd.train.batching import Augmented, collate, eval_batches

if TYPE_CHECKING:
    from nlpstd.train.loop import Objective

TEACHER_LOGITS = "teacher_logits"  # the batch key of cached teacher logits, (B, T, L) or (B, L) float16
CACHE_BUDGET = 2 * 1024**3  # bytes of host memory the cached logits may take by default


class Distilled:
    """An objective whose loss mixes the KL to a teacher's softened logits with the labels'
    cross-entropy; its micro-batches are the wrapped objective's (plus the cached teacher logits)."""

    def __init__(self, objective: Objective, teacher: torch.nn.Module | None, temperature: float = 2.0, alpha: float = 0.5,
                 cache: TeacherCache | None = None):
        """`cache` holds the teacher's logits of each feature of `objective` by index; without it the
        teacher runs on every micro-batch. A cache needs features that stay the same every epoch, and
        makes the teacher unnecessary: pass None to free its memory for the student."""
        if teacher is None and cache is None:
            raise ValueError("distillation needs a teacher or its cached logits")
        if not temperature > 0:
            raise ValueError(f"distillation temperature {temperature!r}: expected a number above 0")
        if not 0 <= alpha <= 1:
            raise ValueError(f"distillation alpha {alpha!r}: expected a weight in [0, 1]")
        if cache is not None and isinstance(objective, Augmented):
            raise ValueError("cached teacher logits need the same features every epoch; augmented ones change")
        self.objective, self.teacher, self.cache = objective, teacher if teacher is None else teacher.eval(), cache
        self.temperature, self.alpha = temperature, alpha

    def batches(self, epoch: int) -> list[list[int]]:
        return self.objective.batches(epoch)

    def collate(self, indices: list[int], epoch: int, position: int) -> dict[str, torch.Tensor]:
        batch = self.objective.collate(indices, epoch, position)
        if self.cache is not None:
            batch[TEACHER_LOGITS] = self.cache.dense(indices, batch["labels"])
        return batch

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The mean loss of the micro-batch; gradients reach the student alone."""
        kl, ce = self.terms(model, batch)
        return self.alpha * self.temperature**2 * kl + (1 - self.alpha) * ce

    def terms(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(KL to the teacher at temperature T, cross-entropy to the labels), float32 scalars, each the
        mean over the scored positions."""
        if model is self.teacher:
            raise ValueError("the student is the teacher: distil into another model (e.g. `layer_subset` of it)")
        inputs = {key: value for key, value in batch.items() if key not in ("labels", TEACHER_LOGITS)}
        labels = batch["labels"]  # (B, T) or (B,)
        student = model(**inputs).logits.float()  # (B, T, L) or (B, L)
        teacher = batch[TEACHER_LOGITS] if TEACHER_LOGITS in batch else self._teacher_logits(inputs)
        ce = F.cross_entropy(student.reshape(-1, student.size(-1)), labels.reshape(-1), ignore_index=IGNORE)
        return _kl(teacher.float(), student, labels, self.temperature), ce

    def _teacher_logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The teacher's logits of the micro-batch, on the student's device, with no graph."""
        device = inputs["input_ids"].device
        if next(self.teacher.parameters()).device != device:  # once: the loop places the student alone
            self.teacher.to(device)
        if self.teacher.training:  # something called .train() on it: a teacher's targets have no dropout
            self.teacher.eval()
        with torch.no_grad():
            return self.teacher(**inputs).logits

    def __getstate__(self) -> dict:
        # pickled for a loader worker (spawned), which collates only: it needs the cache, not the
        # teacher, which may be large and sit on a GPU
        return {**self.__dict__, "teacher": None}


def _kl(teacher: torch.Tensor, student: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) averaged over the scored positions: the
    labelled tokens of (B, T, L) logits, or every example of (B, L) logits. No host sync."""
    log_t = F.log_softmax(teacher / temperature, dim=-1)
    log_s = F.log_softmax(student / temperature, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1)  # (B, T) or (B,)
    if labels.ndim == 1:
        return kl.mean()
    scored = labels != IGNORE  # (B, T)
    # `where`, not a product: whatever the logits hold at padding (even inf) stays out of the mean
    return torch.where(scored, kl, 0.0).sum() / scored.sum()


def check_teacher(teacher: torch.nn.Module, student: torch.nn.Module) -> None:
    """Refuse a teacher that labels or tokenizes otherwise than the student: its logits would score
    other classes, or its inputs mean other words."""
    t, s = teacher.config, student.config
    if t.id2label != s.id2label:
        raise NlpstdError(f"finetune.distill.teacher: its labels {list(t.id2label.values())} are not the student's "
                          f"{list(s.id2label.values())}; distil from a teacher fine-tuned on the same labels")
    if t.vocab_size != s.vocab_size:
        raise NlpstdError(f"finetune.distill.teacher: its vocabulary of {t.vocab_size} is not the student's of "
                          f"{s.vocab_size}; teacher and student must share a tokenizer")


# -- the teacher's logits, computed once


@dataclass(frozen=True, eq=False)
class TeacherCache:
    """The teacher's fp32 logits of every training feature, stored as float16 (half the memory; logits
    lie far inside its range and a softmax needs no more than its 3 significant digits).

    Only the scored positions are kept, feature after feature in one flat tensor: a token-labelled
    feature's labelled tokens in order, a sequence-labelled one's single row. Special tokens,
    padding and non-first sub-words are never read by the loss, so storing them would only cost
    memory (a third or more of an NER feature's positions). One flat tensor, not one per feature,
    also keeps the cache in a single block that forked loader workers share without copying.
    """

    logits: torch.Tensor  # (P, L) float16: P scored positions of all features
    offsets: torch.Tensor  # (F + 1,) int64: feature i's rows are logits[offsets[i] : offsets[i + 1]]

    @classmethod
    def compute(cls, teacher: torch.nn.Module, features: list[dict], pad_id: int, batch_size: int = 64,
                device: torch.device | str = "cpu") -> TeacherCache:
        """Run `teacher` (eval mode, fp32, no graph; left on `device`) over `features` in batches of
        similar length."""
        counts = [_scored_count(feature) for feature in features]
        offsets = torch.tensor([0, *counts]).cumsum(0)
        logits = None
        teacher.eval().to(device)
        lengths = [len(feature["input_ids"]) for feature in features]
        with torch.no_grad():
            for indices in eval_batches(lengths, batch_size):
                batch = collate([features[i] for i in indices], pad_id)
                labels = batch.pop("labels")
                out = teacher(**{key: value.to(device) for key, value in batch.items()}).logits.float().cpu()
                if logits is None:
                    logits = torch.empty(int(offsets[-1]), out.size(-1), dtype=torch.float16)
                rows = out[labels != IGNORE] if labels.ndim == 2 else out  # (scored positions, L)
                start = 0
                for i in indices:  # the batch's rows, example after example, to each example's slot
                    logits[offsets[i] : offsets[i + 1]] = rows[start : start + counts[i]]
                    start += counts[i]
        return cls(logits, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        return self.logits.nbytes + self.offsets.nbytes

    def rows(self, indices: Sequence[int]) -> torch.Tensor:
        """The cached logits of the features `indices`, (scored positions, L) float16, in that order."""
        return torch.cat([self.logits[self.offsets[i] : self.offsets[i + 1]] for i in indices])

    def dense(self, indices: Sequence[int], labels: torch.Tensor) -> torch.Tensor:
        """The cached logits laid out as a micro-batch's logits: (B, T, L) at the labelled tokens of
        `labels` (B, T) (zero elsewhere, where the loss does not look), or (B, L) for labels (B,)."""
        rows = self.rows(indices)
        if labels.ndim == 1:
            return rows
        scored = labels != IGNORE
        if int(scored.sum()) != len(rows):
            raise ValueError(f"the cache holds {len(rows)} scored positions for these features and the batch "
                             f"{int(scored.sum())}: the cache was computed from other features")
        dense = rows.new_zeros(*labels.shape, rows.size(-1))
        dense[scored] = rows
        return dense


def _scored_count(feature: dict) -> int:
    labels = feature["labels"]
    return sum(label != IGNORE for label in labels) if isinstance(labels, list) else 1


def cache_bytes(features: list[dict], num_labels: int) -> int:
    """The memory `TeacherCache.compute` takes for `features`: scored positions × labels × 2 bytes."""
    return sum(_scored_count(feature) for feature in features) * num_labels * 2


def should_cache(*, augmenting: bool, passes: float, nbytes: int, budget: int = CACHE_BUDGET) -> bool:
    """Whether caching the teacher's logits is cheaper than recomputing them: never when augmenting
    (a feature's inputs change each epoch, so yesterday's logits are of another text), not for a
    single pass over the data (the cache costs the same teacher forwards, and memory), and not when
    `nbytes` (`cache_bytes`) exceed `budget`."""
    return not augmenting and passes > 1 and nbytes <= budget


# -- a student from the teacher's encoder


def layer_subset(model: PreTrainedModel, layers: Sequence[int]) -> PreTrainedModel:
    """A copy of `model` (a task model or a bare encoder) keeping the encoder layers `layers` (see
    `nlpstd.compress.prune.keep_layers`); `model` stays whole: it is usually the teacher."""
    return keep_layers(copy.deepcopy(model), layers)
