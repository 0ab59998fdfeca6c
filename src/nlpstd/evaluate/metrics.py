"""Scores for both tasks, as plain dicts of Python numbers (JSON, MLflow and reports read them).

NER is scored on whole entities, as CoNLL does: a half-found entity counts as a miss. CoNLL words
are scored with seqeval (IOB2, default mode); span data against its gold character spans as given
(`span_metrics`), so a gold span that no run of words matches is still counted, as a miss. Classification uses scikit-learn's macro averages, so
a rare label weighs as much as a frequent one.
"""

from __future__ import annotations

from collections import Counter

from seqeval.metrics import accuracy_score as token_accuracy
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.metrics.sequence_labeling import precision_recall_fscore_support as entity_prfs
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def ner_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """Entity-level micro precision/recall/f1, token accuracy, and the same per entity type."""
    _check_not_empty(gold, pred)
    precision, recall, f1, _ = entity_prfs(gold, pred, average="micro", zero_division=0)
    # seqeval orders per-type rows by sorted type name, over types seen in gold or pred.
    types = sorted({name for name, _, _ in get_entities(gold)} | {name for name, _, _ in get_entities(pred)})
    per_type = {}
    if types:
        rows = zip(types, *entity_prfs(gold, pred, average=None, zero_division=0))
        per_type = {name: _row(p, r, f, s) for name, p, r, f, s in rows}
    return {
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "accuracy": float(token_accuracy(gold, pred)),
        "per_type": per_type,
        "support": len(get_entities(gold)),
    }


Span = tuple[int, int, str]  # (start, end exclusive, label) in characters


def span_metrics(gold_spans: list[list[Span]], pred_spans: list[list[Span]], gold: list[list[str]],
                 pred: list[list[str]]) -> dict:
    """`ner_metrics` with entities compared as character spans, example by example: an entity is
    found when its start, end and label equal a gold span's. Word tags (`gold`, `pred`) give only
    the word accuracy. Gold spans rebuilt from word tags would hide the ones words cannot represent."""
    _check_not_empty(gold_spans, pred_spans)
    hits: Counter[str] = Counter()
    gold_count: Counter[str] = Counter()
    pred_count: Counter[str] = Counter()
    for gold_of, pred_of in zip(gold_spans, pred_spans):
        wanted, found = Counter(gold_of), Counter(pred_of)
        gold_count.update(label for _, _, label in gold_of)
        pred_count.update(label for _, _, label in pred_of)
        for (_, _, label), n in (wanted & found).items():
            hits[label] += n
    per_type = {name: _row(*_prf(hits[name], pred_count[name], gold_count[name]), gold_count[name])
                for name in sorted(gold_count | pred_count)}
    precision, recall, f1 = _prf(sum(hits.values()), sum(pred_count.values()), sum(gold_count.values()))
    return {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "accuracy": float(token_accuracy(gold, pred)),
        "per_type": per_type,
        "support": sum(gold_count.values()),
    }


def _prf(hits: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """Precision, recall, f1 from counts; 0.0 where a count is zero, as seqeval's zero_division=0."""
    precision = hits / predicted if predicted else 0.0
    recall = hits / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def classification_metrics(gold: list[str], pred: list[str], labels: list[str]) -> dict:
    """Accuracy, macro precision/recall/f1, per-label scores and the confusion matrix (rows = gold)."""
    _check_not_empty(gold, pred)
    precision, recall, f1, _ = precision_recall_fscore_support(
        gold, pred, labels=labels, average="macro", zero_division=0
    )
    rows = zip(labels, *precision_recall_fscore_support(gold, pred, labels=labels, average=None, zero_division=0))
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "per_label": {label: _row(p, r, f, s) for label, p, r, f, s in rows},
        "confusion_matrix": confusion_matrix(gold, pred, labels=labels).tolist(),
        "labels": list(labels),
    }


def headline(metrics: dict) -> dict[str, float]:
    """The scalar float entries only: what a tracker logs as metrics."""
    return {key: value for key, value in metrics.items() if isinstance(value, float)}


def _row(precision, recall, f1, support) -> dict:
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(support)}


def _check_not_empty(gold: list, pred: list) -> None:
    """Scores over no examples are meaningless; say so rather than return NaN or zeros."""
    if not gold or len(gold) != len(pred):
        raise ValueError(f"need the same, non-zero number of gold and predicted examples, got {len(gold)} and {len(pred)}")
