"""Batches of similar length (little padding), seeded per epoch, and dynamic padding."""

from __future__ import annotations

import array
import random
from collections.abc import Callable, Sequence

import torch

from nlpstd.data.encode import IGNORE


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[Sequence[int]]:
    """The batches of one epoch: the same (seed, epoch) always gives the same batches, so resume is exact.

    With grouping, examples are shuffled, cut into windows of 50 batches, sorted by length inside
    each window and batched; the batch order is shuffled again so lengths do not follow a trend.
    The shuffle runs on a compact array (8 bytes an example, not a list's 36): millions of
    pretraining blocks cost megabytes, and the order is the one a list would get.
    """
    rng = random.Random(seed * 100_003 + epoch)
    order: Sequence[int] = array.array("q", range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        window = batch_size * 50
        order = [i for s in range(0, len(order), window) for i in sorted(order[s : s + window], key=lengths.__getitem__, reverse=True)]
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def budget_batches(lengths: list[int], widths: list[int], max_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    """The micro-batches of one epoch under a token budget: each example joins the narrowest bucket
    that holds it, a bucket is cut into batches of `max_tokens // width` examples, and the batches
    are shuffled. Every batch is padded to its bucket's width, so the model sees `len(widths)`
    shapes at most; the same (seed, epoch) always gives the same batches, so resume is exact."""
    rng = random.Random(seed * 100_003 + epoch)
    buckets: dict[int, list[int]] = {width: [] for width in widths}
    for index, length in enumerate(lengths):
        buckets[bucket_width(length, widths)].append(index)
    batches = []
    for width, members in buckets.items():
        rng.shuffle(members)
        size = max(1, max_tokens // width)
        batches += [members[s : s + size] for s in range(0, len(members), size)]
    rng.shuffle(batches)
    return batches


def bucket_width(length: int, widths: list[int]) -> int:
    """The narrowest width that holds `length` tokens (the widest for anything longer)."""
    return next((width for width in widths if length <= width), widths[-1])


def eval_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Longest first, so padding is minimal and memory peaks at once; results are re-ordered by index."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def collate(features: list[dict], pad_id: int, width: int | None = None) -> dict[str, torch.Tensor]:
    """Pad to `width`, else to the longest example of the batch: input_ids/attention_mask (B, T),
    labels (B, T) or (B,)."""
    width = width or max(len(f["input_ids"]) for f in features)

    def pad(key: str, value: int) -> torch.Tensor:
        return torch.tensor([f[key] + [value] * (width - len(f[key])) for f in features])

    batch = {
        "input_ids": pad("input_ids", pad_id),
        "attention_mask": torch.tensor([[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]),
    }
    if "token_type_ids" in features[0]:
        batch["token_type_ids"] = pad("token_type_ids", 0)
    if isinstance(features[0]["labels"], list):
        batch["labels"] = pad("labels", IGNORE)
    else:
        batch["labels"] = torch.tensor([f["labels"] for f in features])
    return batch


def without_full_mask(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch without its attention mask when no row is padded (checked on the host). Without a
    mask, attention takes its unmasked kernel (flash attention on a GPU, also when compiled), and
    eager BERT skips the check that reads the mask back from the GPU once per forward."""
    mask = batch.get("attention_mask")
    if mask is None or not bool(mask.all()):
        return batch
    return {key: value for key, value in batch.items() if key != "attention_mask"}


class Supervised:
    """The fine-tuning objective the shared loop runs: labelled features, the model's own loss."""

    def __init__(self, features: list[dict], micro_batch: int, seed: int, group_by_length: bool, pad_id: int,
                 budget: tuple[int, list[int]] | None = None):
        """`budget` = (max_tokens, bucket widths) batches by tokens instead of `micro_batch` examples."""
        self.features, self.micro_batch, self.seed = features, micro_batch, seed
        self.group_by_length, self.pad_id, self.budget = group_by_length, pad_id, budget
        self.lengths = [len(f["input_ids"]) for f in features]

    def batches(self, epoch: int) -> list[list[int]]:
        if self.budget:
            max_tokens, widths = self.budget
            return budget_batches(self.lengths, widths, max_tokens, self.seed, epoch)
        return epoch_batches(self.lengths, self.micro_batch, self.seed, epoch, self.group_by_length)

    def collate(self, indices: list[int], epoch: int, position: int) -> dict[str, torch.Tensor]:
        width = bucket_width(max(self.lengths[i] for i in indices), self.budget[1]) if self.budget else None
        return collate([self.features[i] for i in indices], self.pad_id, width)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss


class Augmented(Supervised):
    """`Supervised` on features made afresh for each epoch by `features_of(epoch)` (from that epoch's
    augmented records); only the current epoch's are kept. Their count may differ a little between
    epochs (a longer example can split into more windows), which the loop allows."""

    def __init__(self, features_of: Callable[[int], list[dict]], micro_batch: int, seed: int, group_by_length: bool,
                 pad_id: int, budget: tuple[int, list[int]] | None = None):
        super().__init__([], micro_batch, seed, group_by_length, pad_id, budget)
        self.features_of, self.epoch = features_of, None

    def batches(self, epoch: int) -> list[list[int]]:
        self._prepare(epoch)
        return super().batches(epoch)

    def collate(self, indices: list[int], epoch: int, position: int) -> dict[str, torch.Tensor]:
        self._prepare(epoch)  # a loader worker finds the epoch the loop prepared before starting it
        return super().collate(indices, epoch, position)

    def _prepare(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.features = self.features_of(epoch)
            self.lengths = [len(f["input_ids"]) for f in self.features]
            self.epoch = epoch

    def __getstate__(self) -> dict:
        # a worker started by pickling needs the prepared epoch only, not what makes the next ones
        return {**self.__dict__, "features_of": None}
