"""Batches: reproducible per (seed, epoch), less padding with length grouping, dynamic padding."""

from __future__ import annotations

import random

from nlpstd.train.batching import collate, epoch_batches

_RNG = random.Random(1)
LENGTHS = [_RNG.randint(5, 120) for _ in range(1000)]


def test_same_seed_and_epoch_give_the_same_batches():
    assert epoch_batches(LENGTHS, 32, 7, 3, True) == epoch_batches(LENGTHS, 32, 7, 3, True)


def test_epochs_are_shuffled_differently():
    assert epoch_batches(LENGTHS, 32, 7, 0, True) != epoch_batches(LENGTHS, 32, 7, 1, True)


def test_every_example_appears_once_per_epoch():
    batches = epoch_batches(LENGTHS, 32, 7, 0, True)
    assert sorted(i for batch in batches for i in batch) == list(range(len(LENGTHS)))


def test_grouping_by_length_cuts_padding():
    def padded(batches):
        return sum(max(LENGTHS[i] for i in b) * len(b) for b in batches)

    assert padded(epoch_batches(LENGTHS, 32, 7, 0, True)) < 0.7 * padded(epoch_batches(LENGTHS, 32, 7, 0, False))


def test_collate_pads_to_the_longest_in_the_batch():
    features = [{"input_ids": [101, 5, 102], "labels": [-100, 1, -100]}, {"input_ids": [101, 102], "labels": [-100, -100]}]
    batch = collate(features, pad_id=0)
    assert batch["input_ids"].tolist() == [[101, 5, 102], [101, 102, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 1, -100], [-100, -100, -100]]
