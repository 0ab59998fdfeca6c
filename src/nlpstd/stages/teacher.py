"""The teacher of `finetune.distill`: fetched, checked against the student, and its logits cached
when that is cheaper than running it every step (`nlpstd.train.distill`)."""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nlpstd import storage
from nlpstd.errors import NlpstdError
from nlpstd.hashing import sha256_file, sha256_json
from nlpstd.models.build import count_parameters, load_model, load_tokenizer
from nlpstd.models.ensemble import Ensemble
from nlpstd.train.distill import Distilled, TeacherCache, cache_bytes, check_teacher, layer_subset, should_cache

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

    from nlpstd.spec.schema import DistillSpec
    from nlpstd.train.loop import Objective

log = logging.getLogger(__name__)


@dataclass
class Teacher:
    """A fine-tuned model the student learns from, and what the run records of it."""

    model: torch.nn.Module
    source: str  # as the standard names it
    digest: str  # of its weights: a checkpoint distilled from another teacher is never resumed
    parameters: int
    spec: DistillSpec
    _cache: TeacherCache | None = field(default=None, repr=False)

    def objective(self, student: PreTrainedModel, objective: Objective, *, features: list[dict], passes: float, augmenting: bool,
                  pad_id: int, device: torch.device, batch_size: int) -> Distilled:
        """`objective` distilled from this teacher: its logits read from a cache computed once (and
        shared by every ensemble member), or computed on each micro-batch."""
        check_teacher(self.model, student)
        if self._cache is None and self._caches(features, passes, augmenting, student.config.num_labels):
            started = time.perf_counter()
            self._cache = TeacherCache.compute(self.model, features, pad_id, batch_size, device)
            self.model.to("cpu")
            log.info(f"finetune: the teacher's logits of {len(features):,} training examples cached "
                     f"({self._cache.nbytes / 2**20:.1f} MiB, {time.perf_counter() - started:.1f} s)")
        teacher = None if self._cache is not None else self.model
        return Distilled(objective, teacher, self.spec.temperature, self.spec.alpha, self._cache)

    def student(self, layers: list[int] | str | None) -> PreTrainedModel:
        """A student that starts as the teacher (`finetune.distill.init: teacher`): a copy of it, of the
        encoder layers `layers` only when given (`model.keep_layers`)."""
        if isinstance(self.model, Ensemble):
            raise NlpstdError("finetune.distill.init: teacher copies one model, and this teacher is an ensemble: "
                              "start the student from the base (init: base)")
        return layer_subset(self.model, layers) if layers is not None else copy.deepcopy(self.model)

    @property
    def initializes(self) -> bool:
        """Whether the student starts as the teacher (`finetune.distill.init: teacher`)."""
        return self.spec.init == "teacher"

    @property
    def cached(self) -> bool:
        return self._cache is not None

    def _caches(self, features: list[dict], passes: float, augmenting: bool, num_labels: int) -> bool:
        if self.spec.cache != "auto":
            return self.spec.cache == "on"
        return should_cache(augmenting=augmenting, passes=passes, nbytes=cache_bytes(features, num_labels))


def load_teacher(spec: DistillSpec, task: str, tokenizer: PreTrainedTokenizerFast, source: str | None = None) -> Teacher:
    """The teacher at `source` (default: the one `spec` names; a local folder, or s3:// fetched for the
    run), refused when it reads texts with another vocabulary than the student's tokenizer."""
    source = source or spec.teacher
    with tempfile.TemporaryDirectory(prefix="nlpstd-teacher-") as fetched:
        folder = storage.download_folder(source, Path(fetched)) if storage.is_remote(source) else Path(source)
        if not folder.is_dir():
            raise NlpstdError(f"finetune.distill.teacher: {source}: no such folder")
        model = load_model(folder, task).eval()
        if load_tokenizer(str(folder)).get_vocab() != tokenizer.get_vocab():
            raise NlpstdError(f"finetune.distill.teacher: {source} tokenizes with another vocabulary than the "
                              "student: distil from a teacher fine-tuned from the same base (or the same tokenizer)")
        digest = _weights_digest(folder)
    total = count_parameters(model)[0]
    log.info(f"finetune: distilling from {source} ({total:,} parameters) at temperature {spec.temperature}, "
             f"alpha {spec.alpha}")
    return Teacher(model, source, digest, total, spec)


def _weights_digest(folder: Path) -> str:
    """sha256 over the folder's weight files (an ensemble's members included), by relative path."""
    files = sorted(path for path in folder.rglob("*.safetensors") if path.is_file())
    return sha256_json({str(path.relative_to(folder)): sha256_file(path) for path in files})


def teacher_figures(teacher: Teacher | None, score: float | None, metric: str) -> dict[str, Any]:
    """The teacher's size and its own validation score, beside the student's (none without a teacher)."""
    if teacher is None:
        return {}
    return {f"teacher_validation_{metric}": score, "teacher_parameters": teacher.parameters,
            "teacher_logits_cached": int(teacher.cached)}
