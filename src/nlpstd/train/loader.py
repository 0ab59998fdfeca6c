"""Micro-batches collated ahead of the step that needs them.

The loop plans which micro-batches this process trains for the rest of an epoch; a torch
`DataLoader` collates them in that order, in worker processes when there are any, so padding
and masking run on spare cores while the GPU trains, and into pinned memory, so the copy to the
GPU does not block. A micro-batch depends only on (indices, epoch, position), never on which
worker collated it or when, so a run gives the same batches with any number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset

Job = tuple[list[int], int, int]  # (example indices, epoch, position in the epoch)


class Collates(Protocol):
    def collate(self, indices: list[int], epoch: int, position: int) -> dict[str, torch.Tensor]: ...


class _Planned(Dataset):
    """The planned micro-batches, collated on demand."""

    def __init__(self, objective: Collates, jobs: list[Job]):
        self.objective, self.jobs = objective, jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.objective.collate(*self.jobs[i])


def micro_batches(objective: Collates, jobs: list[Job], workers: int, pin: bool) -> Iterator[dict[str, torch.Tensor]]:
    """The jobs' micro-batches in order; with `workers`, each worker keeps up to 4 collated ahead."""
    # its own generator: a loader seeds itself from the global RNG otherwise, which would shift dropout's
    # random numbers by a draw at each epoch and at resume, so a resumed run would no longer match
    return iter(DataLoader(_Planned(objective, jobs), batch_size=None, shuffle=False, num_workers=workers,
                           pin_memory=pin, prefetch_factor=4 if workers else None, generator=torch.Generator()))

