"""Perturbations for the robustness report: labels stay true, offsets stay put, the same seed perturbs alike."""

from __future__ import annotations

import json

import pytest

from nlpstd.evaluate import robustness
from nlpstd.runner import run_standard
from nlpstd.spans import entity_spans

WORDS = [{"tokens": ["Angela", "Merkel", "visited", "Paris", "yesterday", "."],
          "tags": ["B-PER", "I-PER", "O", "B-LOC", "O", "O"]},
         {"tokens": ["Peter", "Blackburn", "spoke", "in", "Brussels", "about", "economics", "!"],
          "tags": ["B-PER", "I-PER", "O", "O", "B-LOC", "O", "O", "O"]}]
TRAIN = [{"tokens": ["Angela", "Merkel", "in", "Paris"], "tags": ["B-PER", "I-PER", "O", "B-LOC"]}]
TEXTS = [{"text": "A wonderful, moving film!", "label": "pos"}, {"text": "Dreadful pacing throughout.", "label": "neg"}]
SPANS = [{"text": "Straße in Berlin.", "spans": [[10, 16, "LOC"]]}]


def test_typos_change_a_share_of_the_words_and_keep_every_length():
    many = [{"text": " ".join(["understanding"] * 200), "label": "pos"}]
    (perturbed,) = robustness.perturb(many, "typos", 0.1, seed=0, train=[])
    words = perturbed["text"].split(" ")
    changed = sum(word != "understanding" for word in words)
    assert 8 <= changed <= 35 and all(len(word) == len("understanding") for word in words)


def test_the_same_seed_perturbs_alike_and_another_seed_not():
    many = [{"text": " ".join(["understanding"] * 200), "label": "pos"}]
    assert robustness.perturb(many, "typos", 0.1, 0, []) == robustness.perturb(many, "typos", 0.1, 0, [])
    assert robustness.perturb(many, "typos", 0.1, 0, []) != robustness.perturb(many, "typos", 0.1, 1, [])


def test_casing_keeps_character_offsets_even_where_a_letter_would_grow():
    (upper,) = robustness.perturb(SPANS, "uppercase", 0.1, 0, [])
    assert upper["text"] == "STRAßE IN BERLIN." and upper["text"][10:16] == "BERLIN" and upper["spans"] == SPANS[0]["spans"]


def test_punctuation_words_go_with_their_tags():
    perturbed = robustness.perturb(WORDS, "punctuation", 0.1, 0, [])
    assert perturbed[0]["tokens"] == ["Angela", "Merkel", "visited", "Paris", "yesterday"]
    assert [len(r["tokens"]) == len(r["tags"]) for r in perturbed] == [True, True]
    assert robustness.perturb(TEXTS, "punctuation", 0.1, 0, [])[0]["text"] == "A wonderful moving film"


def test_an_entity_swap_puts_in_same_type_names_the_training_split_never_had():
    swapped = robustness.perturb(WORDS, "entity_swap", 0.1, 0, TRAIN)
    for before, after in zip(WORDS, swapped):
        assert [label for label, _, _ in entity_spans(after["tags"])] == [label for label, _, _ in entity_spans(before["tags"])]
        assert len(after["tokens"]) == len(after["tags"])
        mentions = {tuple(after["tokens"][s:e]) for _, s, e in entity_spans(after["tags"])}
        assert not mentions & {("Angela", "Merkel"), ("Paris",)}, "a name train holds came back"


@pytest.mark.parametrize(("records", "task", "expected"), [
    (WORDS, "token-classification", list(robustness.PERTURBATIONS)),
    (SPANS, "token-classification", ["typos", "lowercase", "uppercase"]),
    (TEXTS, "sequence-classification", ["typos", "lowercase", "uppercase", "punctuation"]),
])
def test_only_the_perturbations_that_keep_the_labels_true_apply(records, task, expected):
    assert robustness.applicable(list(robustness.PERTURBATIONS), records, task) == expected


def test_evaluate_reports_each_perturbation_and_fails_the_gate_past_max_drop(ner_standard, tmp_path):
    ner_standard.write_text(ner_standard.read_text().replace(
        "evaluate: {gate: {metric: f1, min: 0.0}}",
        "evaluate: {gate: {metric: f1, min: 0.0}, robustness: {perturbations: [typos, uppercase, entity_swap], rate: 0.5, max_drop: 0.0}}"))
    out = tmp_path / "out"
    run_standard(ner_standard, out, stages=["data-prep", "finetune", "evaluate"], tracking=False)

    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    rows = metrics["scores"]["test"]["robustness"]
    assert sorted(rows) == ["entity_swap", "typos", "uppercase"]
    for row in rows.values():
        assert row["drop"] == pytest.approx(metrics["test_f1"] - row["f1"])
    worst = max(row["drop"] for row in rows.values())
    assert metrics["gate"]["passed"] == (worst <= 0)
    champion = json.loads((out / "evaluate" / "champion.json").read_text())
    assert not champion["promote"] or worst <= 0
    if worst > 0:
        assert "more than robustness.max_drop 0.0000" in metrics["gate"]["reason"] and "max_drop" in champion["reason"]
    report = (out / "evaluate" / "report.md").read_text()
    assert "## Robustness (test)" in report and "| entity_swap |" in report
