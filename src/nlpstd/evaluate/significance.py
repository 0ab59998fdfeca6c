"""How sure a score is: bootstrap intervals for a model's headline metrics, and a paired bootstrap
for the difference between two models scored on the same examples.

On CoNLL's 3,453 test sentences a tenth of a point of F1 is well inside the noise, so "beats the
champion" alone would promote a model that is not better. Both intervals come from the same
resampling: examples are drawn with replacement, and the metrics recomputed on each draw. Every
headline metric (entity micro F1/precision/recall and token accuracy; macro F1/precision/recall and
accuracy) is a function of per-example counts summed over the examples, so a draw costs a
weighted sum, not a rescoring; the paired version draws the same examples for both models.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities

from nlpstd.evaluate.scoring import Scored

RESAMPLES = 1000
HEADLINE = ("f1", "precision", "recall", "accuracy")  # the metrics a resample recomputes
_CELLS_PER_CHUNK = 4_000_000  # resamples x examples x counts held at once


def example_counts(scored: Scored, task: str, labels: list[str]) -> np.ndarray:
    """(examples, counts): what each example adds to the sums its task's metrics are made of.

    NER: entities found, predicted and gold, then words right and words; classification: per
    label true positives, predictions and gold, then right answers."""
    if task == "token-classification":
        rows = []
        for i, (gold, pred) in enumerate(zip(scored.gold, scored.predictions)):
            if scored.gold_spans:  # span data: entities compared as character spans, as `span_metrics` does
                wanted, found = Counter(scored.gold_spans[i]), Counter(scored.pred_spans[i])
            else:
                wanted, found = Counter(get_entities(gold)), Counter(get_entities(pred))
            hits = sum((wanted & found).values())
            right = sum(g == p for g, p in zip(gold, pred))
            rows.append((hits, sum(found.values()), sum(wanted.values()), right, len(gold)))
        return np.array(rows, dtype=np.float64).reshape(-1, 5)
    index = {label: i for i, label in enumerate(labels)}
    gold = np.array([index[g] for g in scored.gold])
    pred = np.array([index[p] for p in scored.predictions])
    one_hot = np.eye(len(labels))
    return np.hstack([one_hot[gold] * (gold == pred)[:, None], one_hot[pred], one_hot[gold], (gold == pred)[:, None]])


def metrics_of(sums: np.ndarray, task: str) -> dict[str, np.ndarray]:
    """The headline metrics from summed counts (one row per resample), computed as `metrics.py` does."""
    if task == "token-classification":
        hits, predicted, gold, right, words = sums.T
        precision, recall = _ratio(hits, predicted), _ratio(hits, gold)
        return {"f1": _f1(precision, recall), "precision": precision, "recall": recall, "accuracy": _ratio(right, words)}
    labels = (sums.shape[1] - 1) // 3
    hits, predicted, gold = sums[:, :labels], sums[:, labels : 2 * labels], sums[:, 2 * labels : 3 * labels]
    precision, recall = _ratio(hits, predicted), _ratio(hits, gold)
    return {"accuracy": sums[:, -1] / gold.sum(axis=1), "f1": _f1(precision, recall).mean(axis=1),
            "precision": precision.mean(axis=1), "recall": recall.mean(axis=1)}


def intervals(counts: np.ndarray, task: str, confidence: float, seed: int = 0,
              resamples: int = RESAMPLES) -> dict[str, tuple[float, float]]:
    """Per headline metric, the bootstrap percentile interval at `confidence`."""
    drawn: dict[str, list[np.ndarray]] = {}
    for sums in _sums(counts, seed, resamples):
        for name, values in metrics_of(sums, task).items():
            drawn.setdefault(name, []).append(values)
    return {name: _percentiles(np.concatenate(values), confidence) for name, values in drawn.items()}


def paired_difference(candidate: np.ndarray, champion: np.ndarray, task: str, metric: str, confidence: float,
                      seed: int = 0, resamples: int = RESAMPLES) -> tuple[float, float]:
    """The interval at `confidence` of `metric`(candidate) - `metric`(champion), both scored on the
    same examples, each resample drawing the same examples for both."""
    if candidate.shape != champion.shape:
        raise ValueError(f"the models were scored on different examples ({len(candidate)} and {len(champion)})")
    both = np.hstack([candidate, champion])
    width = candidate.shape[1]
    differences = [metrics_of(sums[:, :width], task)[metric] - metrics_of(sums[:, width:], task)[metric]
                   for sums in _sums(both, seed, resamples)]
    return _percentiles(np.concatenate(differences), confidence)


def _sums(counts: np.ndarray, seed: int, resamples: int) -> Iterator[np.ndarray]:
    """The counts summed over each resample of the examples, a chunk of resamples at a time."""
    rng = np.random.default_rng(seed)
    examples = len(counts)
    if not examples:
        raise ValueError("no examples to resample")
    chunk = max(1, _CELLS_PER_CHUNK // (examples * counts.shape[1]))
    for start in range(0, resamples, chunk):
        picks = rng.integers(0, examples, size=(min(chunk, resamples - start), examples))
        yield counts[picks].sum(axis=1)


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (seqeval's and scikit-learn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64), where=denominator > 0)


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    return _ratio(2 * precision * recall, precision + recall)
