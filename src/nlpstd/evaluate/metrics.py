"""Scores for both tasks, as plain dicts of Python numbers (JSON, MLflow and reports read them).

NER is scored on whole entities with seqeval (IOB2, default mode), as CoNLL does: a
half-found entity counts as a miss. Classification uses scikit-learn's macro averages, so
a rare label weighs as much as a frequent one.
"""

from __future__ import annotations

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
