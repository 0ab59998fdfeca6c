"""Batches: reproducible per (seed, epoch), less padding with length grouping, dynamic padding."""

from __future__ import annotations

import random

from nlpstd.train.batching import Supervised, bucket_width, budget_batches, collate, epoch_batches, without_full_mask

_RNG = random.Random(1)
LENGTHS = [_RNG.randint(5, 120) for _ in range(1000)]


def test_an_epoch_is_the_seeded_shuffle_of_every_example_cut_into_batches():
    order = list(range(len(LENGTHS)))
    random.Random(7 * 100_003 + 3).shuffle(order)  # the order resumed runs and earlier versions rely on
    assert [list(batch) for batch in epoch_batches(LENGTHS, 32, 7, 3, False)] == [order[s : s + 32] for s in range(0, len(order), 32)]


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


def test_a_batch_without_padding_goes_to_the_model_without_an_attention_mask():
    batch = collate([{"input_ids": [101, 5, 102], "labels": 1}, {"input_ids": [101, 6, 102], "labels": 0}], pad_id=0)
    assert set(without_full_mask(batch)) == {"input_ids", "labels"}


def test_a_padded_batch_keeps_its_attention_mask():
    batch = collate([{"input_ids": [101, 5, 102], "labels": 1}, {"input_ids": [101, 102], "labels": 0}], pad_id=0)
    assert without_full_mask(batch)["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


# -- batches by a token budget


WIDTHS = [16, 32, 64]


def budget_lengths(n: int = 300, seed: int = 3) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(3, 64) for _ in range(n)]


def test_token_budget_batches_hold_every_example_once():
    lengths = budget_lengths()
    batches = budget_batches(lengths, WIDTHS, 512, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


def test_token_budget_batches_stay_within_the_budget_in_a_few_fixed_shapes():
    lengths = budget_lengths()
    features = [{"input_ids": [1] * n, "labels": [0] * n} for n in lengths]
    objective = Supervised(features, 8, seed=1, group_by_length=True, pad_id=0, budget=(512, WIDTHS))
    shapes = set()
    for batch in objective.batches(epoch=0):
        tensors = objective.collate(batch, epoch=0, position=0)
        shapes.add(tuple(tensors["input_ids"].shape))
        assert tensors["input_ids"].numel() <= 512
        assert tensors["input_ids"].shape[1] in WIDTHS
    assert {width for _, width in shapes} == set(WIDTHS) and len(shapes) <= 2 * len(WIDTHS), "full batches plus one short one per bucket"


def test_token_budget_batches_are_the_same_for_the_same_epoch_and_differ_between_epochs():
    lengths = budget_lengths()
    assert budget_batches(lengths, WIDTHS, 512, seed=1, epoch=2) == budget_batches(lengths, WIDTHS, 512, seed=1, epoch=2)
    assert budget_batches(lengths, WIDTHS, 512, seed=1, epoch=2) != budget_batches(lengths, WIDTHS, 512, seed=1, epoch=3)


def test_an_example_goes_to_the_narrowest_bucket_that_holds_it():
    assert [bucket_width(n, WIDTHS) for n in (1, 16, 17, 64, 90)] == [16, 16, 32, 64, 64]


def test_fine_tuning_by_token_budget_learns_the_tiny_task(ner_standard, tmp_path):
    from nlpstd.runner import run_standard

    text = ner_standard.read_text().replace("finetune: {", "finetune: {token_budget: {max_tokens: 128}, ")
    ner_standard.write_text(text)
    summary = run_standard(ner_standard, tmp_path / "out", stages=["data-prep", "finetune", "evaluate"], tracking=False)
    finetune = summary["stages"]["finetune"]["metrics"]
    assert finetune["steps"] == finetune["total_steps"] > 0
    assert summary["stages"]["evaluate"]["metrics"]["validation_f1"] > 0.5
