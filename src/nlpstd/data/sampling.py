"""Which examples a limit keeps, and held-out splits cut from train: seeded, and stratified on request.

Both rest on one seeded order of a split's records. `random` shuffles them. `stratified` groups them
by stratum (a class's label; for token classification, the set of entity types an example holds, so
an example with a person and a place is kept apart from one with a person alone) and interleaves the
groups, so every prefix and every slice of the order holds each group at its share of the file. A
cover comes first: one example per label (class or entity type), rarest first, so a limit of at
least as many examples as labels keeps every label, and the part of train a cut leaves keeps them too.

`head` keeps the first N records and draws nothing: standards written before sampling existed keep
their examples, and their fingerprints. Whatever is kept stays in file order, so lines read as
the file does and a sample of a sample is reproducible.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING

from nlpstd.errors import DataError

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import DataSpec

HELD_OUT = ("validation", "test")


def limit(data: DataSpec, split: str, records: list[dict], seed: int = 0) -> list[dict]:
    """The records `max_train_examples` (train) or `max_eval_examples` (validation/test) keeps,
    chosen by `data.sample`, in file order."""
    count = data.max_train_examples if split == "train" else data.max_eval_examples
    if not count or count >= len(records):
        return records
    if data.sample == "head":
        return records[:count]
    order = stratified_order(records, _rng(seed, split)) if data.sample == "stratified" else shuffled(records, _rng(seed, split))
    return [records[index] for index in sorted(order[:count])]


def carve(data: DataSpec, records: list[dict], seed: int) -> dict[str, list[dict]]:
    """Train's records cut into `train` and the held-out splits of `data.split_from_train`, each in file
    order. The held-out parts are taken from the end of the seeded order, so train keeps the cover
    (every label) when the cut is stratified."""
    carved = data.split_from_train
    shares = {split: getattr(carved, split) for split in HELD_OUT if getattr(carved, split)}
    sizes = {split: _part_size(data, split, share, len(records)) for split, share in shares.items()}
    rng = _rng(seed, "split_from_train")
    order = stratified_order(records, rng) if carved.stratify else shuffled(records, rng)
    kept = len(records) - sum(sizes.values())
    _check_rest(data, records, kept, carved.stratify)
    parts, start = {"train": order[:kept]}, kept
    for split, size in sizes.items():
        parts[split], start = order[start:start + size], start + size
    return {split: [records[index] for index in sorted(indices)] for split, indices in parts.items()}


def shuffled(records: list[dict], rng: random.Random) -> list[int]:
    """Every index of `records`, in a seeded random order."""
    order = list(range(len(records)))
    rng.shuffle(order)
    return order


def stratified_order(records: list[dict], rng: random.Random) -> list[int]:
    """Every index of `records`: first the cover (one example per label), then the rest interleaved by
    stratum, the k-th of a stratum of n placed at k/n, so any slice holds each stratum at its share."""
    groups: dict[tuple, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(stratum(record), []).append(index)
    keyed = []
    for members in groups.values():
        rng.shuffle(members)
        keyed += [(rank / len(members), rng.random(), index) for rank, index in enumerate(members)]
    interleaved = [index for _, _, index in sorted(keyed)]
    first = cover(records, interleaved)
    chosen = set(first)
    return first + [index for index in interleaved if index not in chosen]


def cover(records: list[dict], order: list[int]) -> list[int]:
    """One example per label, the rarest label first, each the earliest in `order` holding a label not yet
    covered (an example with several entity types may cover them all)."""
    frequency = Counter(label for record in records for label in labels_of(record))
    covered: set[str] = set()
    chosen = []
    for label in sorted(frequency, key=lambda name: (frequency[name], name)):
        if label in covered:
            continue
        index = next(index for index in order if label in labels_of(records[index]))
        chosen.append(index)
        covered |= labels_of(records[index])
    return chosen


def stratum(record: dict) -> tuple:
    """The group an example is sampled in: its class, or the sorted set of its entity types (none: `()`)."""
    if "label" in record:
        return (record["label"],)
    return tuple(sorted(labels_of(record)))


def labels_of(record: dict) -> set[str]:
    """The labels an example shows: its class, or the entity types of its spans or IOB2 tags."""
    if "label" in record:
        return {record["label"]}
    if "tags" in record:
        return {tag[2:] for tag in record["tags"] if tag != "O"}
    return {span[2] for span in record["spans"]}


def _rng(seed: int, purpose: str) -> random.Random:
    """A generator of its own per split and purpose, so train's sample does not shift validation's."""
    return random.Random(f"nlpstd:{seed}:{purpose}")


def _part_size(data: DataSpec, split: str, share: float, total: int) -> int:
    size = round(share * total)
    if size < 1:
        raise DataError(data.train.path, None, f"data.split_from_train.{split}",
                        f"{share:g} of {total:,} train examples is less than one example: raise the share, or give "
                        f"data.{split} a file")
    return size


def _check_rest(data: DataSpec, records: list[dict], kept: int, stratify: bool) -> None:
    """What the cut leaves to train on must hold an example of every label (a stratified cut), or one example."""
    labels = {label for record in records for label in labels_of(record)}
    needed = len(cover(records, list(range(len(records))))) if stratify else 1
    if kept < needed:
        what = f"one example of each of train's {len(labels)} labels" if stratify else "one example"
        raise DataError(data.train.path, None, "data.split_from_train",
                        f"cutting validation and test from {len(records):,} train examples leaves {kept:,} to train on, "
                        f"fewer than {what}: lower the shares, or give the held-out splits files")
