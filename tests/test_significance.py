"""Bootstrap intervals: recomputed metrics equal the scorers', intervals hold the figure and narrow
with more examples, and a paired difference promotes only what the noise cannot explain."""

from __future__ import annotations

import random

import numpy as np
import pytest

from nlpstd.evaluate import significance
from nlpstd.evaluate.metrics import classification_metrics, ner_metrics, span_metrics
from nlpstd.evaluate.scoring import Scored
from nlpstd.registry import decide

TAGS = ["O", "B-PER", "I-PER", "B-LOC"]
LABELS = ["neg", "neu", "pos"]


def ner_scored(sentences: int, error: float, seed: int) -> Scored:
    """Gold sentences and predictions with each tag wrong with probability `error`."""
    rng = random.Random(seed)
    gold = [[rng.choice(TAGS) for _ in range(rng.randint(3, 12))] for _ in range(sentences)]
    pred = [[rng.choice(TAGS) if rng.random() < error else tag for tag in sentence] for sentence in gold]
    return Scored(ner_metrics(gold, pred), pred, gold)


def classified(examples: int, error: float, seed: int, gold_seed: int = 0) -> Scored:
    rng, gold_rng = random.Random(seed), random.Random(gold_seed)
    gold = [gold_rng.choice(LABELS) for _ in range(examples)]
    pred = [rng.choice(LABELS) if rng.random() < error else label for label in gold]
    return Scored(classification_metrics(gold, pred, LABELS), pred, gold)


def whole(counts: np.ndarray, task: str) -> dict[str, float]:
    return {name: float(values[0]) for name, values in significance.metrics_of(counts.sum(axis=0, keepdims=True), task).items()}


def test_ner_counts_give_back_seqevals_entity_scores_and_token_accuracy():
    scored = ner_scored(200, 0.2, seed=1)
    expected = {name: scored.metrics[name] for name in significance.HEADLINE}
    assert whole(significance.example_counts(scored, "token-classification", TAGS), "token-classification") == pytest.approx(expected)


def test_span_counts_give_back_the_span_scores():
    gold_spans = [[(0, 3, "PER"), (5, 9, "LOC")], [(1, 4, "LOC")], []]
    pred_spans = [[(0, 3, "PER")], [(1, 4, "PER")], [(2, 6, "LOC")]]
    tags = [["B-PER", "O"], ["B-LOC"], ["O"]]
    metrics = span_metrics(gold_spans, pred_spans, tags, tags)
    scored = Scored(metrics, tags, tags, gold_spans=gold_spans, pred_spans=pred_spans)
    counts = significance.example_counts(scored, "token-classification", TAGS)
    assert whole(counts, "token-classification") == pytest.approx({name: metrics[name] for name in significance.HEADLINE})


def test_classification_counts_give_back_the_macro_scores_and_accuracy():
    scored = classified(300, 0.3, seed=2)
    expected = {name: scored.metrics[name] for name in significance.HEADLINE}
    assert whole(significance.example_counts(scored, "sequence-classification", LABELS), "sequence-classification") == pytest.approx(expected)


def test_an_interval_holds_its_figure_and_narrows_with_more_examples():
    small, large = (significance.example_counts(ner_scored(n, 0.2, seed=3), "token-classification", TAGS) for n in (100, 1600))
    small_low, small_high = significance.intervals(small, "token-classification", 0.95)["f1"]
    large_low, large_high = significance.intervals(large, "token-classification", 0.95)["f1"]
    assert small_low < whole(small, "token-classification")["f1"] < small_high
    assert large_high - large_low < (small_high - small_low) / 2


def test_intervals_follow_their_seed():
    counts = significance.example_counts(classified(200, 0.3, seed=4), "sequence-classification", LABELS)
    first, again, other = (significance.intervals(counts, "sequence-classification", 0.9, seed=seed) for seed in (1, 1, 2))
    assert first == again and first != other


def test_the_same_predictions_differ_by_an_interval_of_zero():
    counts = significance.example_counts(ner_scored(300, 0.2, seed=5), "token-classification", TAGS)
    assert significance.paired_difference(counts, counts, "token-classification", "f1", 0.95) == (0.0, 0.0)


def changed(scored: Scored, fixed: int, broken: int) -> Scored:
    """`scored` with `fixed` wrong answers made right and `broken` right answers made wrong."""
    pred = list(scored.predictions)
    wrong = [i for i, (g, p) in enumerate(zip(scored.gold, pred)) if g != p]
    right = [i for i, (g, p) in enumerate(zip(scored.gold, pred)) if g == p]
    for i in wrong[:fixed]:
        pred[i] = scored.gold[i]
    for i in right[:broken]:
        pred[i] = next(label for label in LABELS if label != scored.gold[i])
    return Scored(classification_metrics(scored.gold, pred, LABELS), pred, scored.gold)


def test_a_lead_of_a_few_examples_won_and_lost_is_noise_and_a_large_one_is_not():
    champion = classified(1000, 0.4, seed=6)
    counts = significance.example_counts(champion, "sequence-classification", LABELS)
    noisy = significance.example_counts(changed(champion, fixed=15, broken=10), "sequence-classification", LABELS)
    better = significance.example_counts(changed(champion, fixed=60, broken=10), "sequence-classification", LABELS)
    low, high = significance.paired_difference(noisy, counts, "sequence-classification", "accuracy", 0.95)
    assert low < 0 < high, "+5 examples in 1,000, won and lost by chance, is not a better model"
    low, high = significance.paired_difference(better, counts, "sequence-classification", "accuracy", 0.95)
    assert 0.02 < low < 0.05 < high


def test_models_scored_on_different_examples_cannot_be_compared():
    with pytest.raises(ValueError, match="different examples"):
        significance.paired_difference(np.ones((5, 5)), np.ones((6, 5)), "token-classification", "f1", 0.95)


def test_the_decision_promotes_only_when_the_interval_lies_above_min_delta():
    noisy = decide("f1", "test", 0.884, 0.0, 0.0, champion=0.881, champion_version="3", interval=(-0.004, 0.010), confidence=0.95)
    assert not noisy.promote and "95% interval [-0.0040, +0.0100] does not lie above min_delta" in noisy.reason
    assert noisy.interval == [-0.004, 0.010] and noisy.confidence == 0.95
    sure = decide("f1", "test", 0.90, 0.0, 0.005, champion=0.88, champion_version="3", interval=(0.011, 0.029), confidence=0.95)
    assert sure.promote and "lies above min_delta 0.0050" in sure.reason
    short = decide("f1", "test", 0.90, 0.0, 0.015, champion=0.88, champion_version="3", interval=(0.011, 0.029), confidence=0.95)
    assert not short.promote, "the lower bound must clear min_delta, not only zero"
