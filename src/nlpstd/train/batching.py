"""Batches of similar length (little padding), seeded per epoch, and dynamic padding."""

from __future__ import annotations

import random

import torch

from nlpstd.data.encode import IGNORE


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
    """The batches of one epoch: the same (seed, epoch) always gives the same batches, so resume is exact.

    With grouping, examples are shuffled, cut into windows of 50 batches, sorted by length inside
    each window and batched; the batch order is shuffled again so lengths do not follow a trend.
    """
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        window = batch_size * 50
        order = [i for s in range(0, len(order), window) for i in sorted(order[s : s + window], key=lengths.__getitem__, reverse=True)]
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def eval_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Longest first, so padding is minimal and memory peaks at once; results are re-ordered by index."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def collate(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest example of the batch: input_ids/attention_mask (B, T), labels (B, T) or (B,)."""
    width = max(len(f["input_ids"]) for f in features)

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


class Supervised:
    """The fine-tuning objective the shared loop runs: labelled features, the model's own loss."""

    def __init__(self, features: list[dict], micro_batch: int, seed: int, group_by_length: bool, pad_id: int):
        self.features, self.micro_batch, self.seed = features, micro_batch, seed
        self.group_by_length, self.pad_id = group_by_length, pad_id
        self.lengths = [len(f["input_ids"]) for f in features]

    def batches(self, epoch: int) -> list[list[int]]:
        return epoch_batches(self.lengths, self.micro_batch, self.seed, epoch, self.group_by_length)

    def collate(self, indices: list[int], epoch: int, position: int) -> dict[str, torch.Tensor]:
        return collate([self.features[i] for i in indices], self.pad_id)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss
