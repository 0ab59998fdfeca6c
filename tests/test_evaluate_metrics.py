"""Metrics and the gate, on hand-written examples whose scores are worked out in the comments."""

import pytest

from nlpstd.evaluate.gate import apply_gate
from nlpstd.evaluate.metrics import classification_metrics, headline, ner_metrics
from nlpstd.spec import GateSpec

# Gold has 3 entities: PER (0-1), LOC (3), ORG (0 of sentence 2).
# Pred finds PER exactly, calls the LOC an ORG, and finds the ORG: 2 of 3 right, 3 predicted.
GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
PRED = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]


def test_ner_micro_scores_count_whole_entities():
    scores = ner_metrics(GOLD, PRED)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)


def test_ner_partial_entity_is_a_miss():
    # Only the first token of the PER is found: a different span, so no credit at all.
    scores = ner_metrics([["B-PER", "I-PER"]], [["B-PER", "O"]])
    assert scores["precision"] == 0.0
    assert scores["recall"] == 0.0


def test_ner_accuracy_is_per_token():
    # 5 of 6 tokens agree (only the LOC/ORG tag differs).
    assert ner_metrics(GOLD, PRED)["accuracy"] == pytest.approx(5 / 6)


def test_ner_support_counts_gold_entities():
    assert ner_metrics(GOLD, PRED)["support"] == 3


def test_ner_per_type_scores_and_support():
    per_type = ner_metrics(GOLD, PRED)["per_type"]
    assert per_type["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert per_type["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # ORG: 2 predicted, 1 right; 1 in gold, found.
    assert per_type["ORG"]["precision"] == pytest.approx(0.5)
    assert per_type["ORG"]["recall"] == 1.0
    assert per_type["ORG"]["f1"] == pytest.approx(2 / 3)
    assert per_type["ORG"]["support"] == 1


def test_ner_values_are_python_numbers():
    scores = ner_metrics(GOLD, PRED)
    assert all(type(scores[key]) is float for key in ("f1", "precision", "recall", "accuracy"))
    assert type(scores["per_type"]["PER"]["support"]) is int


def test_ner_without_entities_scores_zero_not_nan():
    scores = ner_metrics([["O", "O"]], [["O", "O"]])
    assert (scores["f1"], scores["support"], scores["per_type"]) == (0.0, 0, {})
    assert scores["accuracy"] == 1.0


def test_metrics_reject_mismatched_example_counts():
    with pytest.raises(ValueError, match="1 and 2"):
        ner_metrics([["O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="0 and 0"):
        classification_metrics([], [], ["a"])


# Gold: pos, pos, neg, neg. Pred: pos, neg, neg, neg.
# pos: precision 1/1, recall 1/2, f1 2/3.  neg: precision 2/3, recall 2/2, f1 4/5.
CLS_GOLD = ["pos", "pos", "neg", "neg"]
CLS_PRED = ["pos", "neg", "neg", "neg"]
LABELS = ["neg", "pos"]


def test_classification_accuracy_and_macro_averages():
    scores = classification_metrics(CLS_GOLD, CLS_PRED, LABELS)
    assert scores["accuracy"] == pytest.approx(3 / 4)
    assert scores["precision"] == pytest.approx((1 + 2 / 3) / 2)
    assert scores["recall"] == pytest.approx((1 / 2 + 1) / 2)
    assert scores["f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_classification_per_label_scores_and_support():
    per_label = classification_metrics(CLS_GOLD, CLS_PRED, LABELS)["per_label"]
    assert per_label["pos"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert per_label["neg"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 4 / 5, "support": 2})


def test_confusion_matrix_rows_are_gold_columns_predicted_in_label_order():
    scores = classification_metrics(CLS_GOLD, CLS_PRED, LABELS)
    # The one error is a gold "pos" predicted "neg": row pos (1), column neg (0).
    assert scores["confusion_matrix"] == [[2, 0], [1, 1]]
    assert scores["labels"] == LABELS


def test_label_never_seen_scores_zero_without_error():
    scores = classification_metrics(CLS_GOLD, CLS_PRED, ["neg", "pos", "neutral"])
    assert scores["per_label"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert scores["confusion_matrix"][2] == [0, 0, 0]


def test_headline_keeps_only_scalar_floats():
    scores = classification_metrics(CLS_GOLD, CLS_PRED, LABELS)
    assert set(headline(scores)) == {"accuracy", "f1", "precision", "recall"}
    assert set(headline(ner_metrics(GOLD, PRED))) == {"accuracy", "f1", "precision", "recall"}


# ---------------------------------------------------------------------------------------
# Gate

SCORES = {"validation": {"f1": 0.80}, "test": {"f1": 0.8712}}


def test_gate_passes_above_minimum():
    result = apply_gate(GateSpec(metric="f1", min=0.85), SCORES, has_test=True)
    assert result.passed
    assert result.reason == "f1 0.8712 on test >= min 0.8500"


def test_gate_fails_below_minimum():
    result = apply_gate(GateSpec(metric="f1", min=0.85, split="validation"), SCORES, has_test=True)
    assert not result.passed
    assert result.reason == "f1 0.8000 on validation < min 0.8500"


def test_gate_passes_at_exactly_the_minimum():
    assert apply_gate(GateSpec(metric="f1", min=0.8712), SCORES, has_test=True).passed


def test_gate_reads_test_by_default_when_there_is_one():
    assert apply_gate(GateSpec(), SCORES, has_test=True).split == "test"


def test_gate_reads_validation_by_default_without_test():
    result = apply_gate(GateSpec(), {"validation": {"f1": 0.8}}, has_test=False)
    assert (result.split, result.value) == ("validation", 0.8)


def test_gate_names_a_split_that_was_not_scored():
    with pytest.raises(ValueError, match="test split"):
        apply_gate(GateSpec(split="test"), {"validation": {"f1": 0.8}}, has_test=False)


def test_gate_result_as_dict():
    result = apply_gate(GateSpec(metric="f1", min=0.5), SCORES, has_test=True)
    assert result.to_dict() == {
        "passed": True,
        "metric": "f1",
        "value": 0.8712,
        "threshold": 0.5,
        "split": "test",
        "reason": "f1 0.8712 on test >= min 0.5000",
    }
