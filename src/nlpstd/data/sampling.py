"""Which examples a limit keeps, and held-out splits cut from train: seeded, and stratified on request."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nlpstd.spec import DataSpec


def limit(data: DataSpec, split: str, records: list[dict], seed: int = 0) -> list[dict]:
    """The records `max_train_examples` (train) or `max_eval_examples` (validation/test) keeps."""
    count = data.max_train_examples if split == "train" else data.max_eval_examples
    return records[:count] if count else records
