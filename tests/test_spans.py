"""The span decoder on hand-written tags: IOB2 repair in both modes, boundaries, character offsets, and
agreement with seqeval, which scores what the decoder returns."""

from __future__ import annotations

import random

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from nlpstd.errors import StandardError
from nlpstd.spans import begin_strays, decode_entities, entity_spans, joined_words, repair_tags
from nlpstd.spec import load_standard


def found(text: str, offsets: list[tuple[int, int]], tags: list[str], repair: str = "start") -> list[tuple[str, str]]:
    return [(e["text"], e["label"]) for e in decode_entities(text, offsets, tags, [0.5] * len(tags), repair)]


PETER = ("Peter Smith met Anna in Paris", [(0, 5), (6, 11), (12, 15), (16, 20), (21, 23), (24, 29)])


def test_a_stray_inside_tag_starts_an_entity_under_start():
    assert found(*PETER, ["B-PER", "I-PER", "O", "I-PER", "O", "B-LOC"]) == [("Peter Smith", "PER"), ("Anna", "PER"), ("Paris", "LOC")]


def test_a_stray_gold_inside_tag_is_trained_as_the_begin_tag_it_is_scored_as():
    tags = ["O", "I-PER", "I-PER", "B-LOC", "I-PER", "I-PER"]
    assert begin_strays(tags) == ["O", "B-PER", "I-PER", "B-LOC", "B-PER", "I-PER"]
    assert get_entities(begin_strays(tags)) == get_entities(tags)


def test_a_stray_inside_tag_is_read_as_outside_under_drop():
    assert found(*PETER, ["B-PER", "I-PER", "O", "I-PER", "O", "B-LOC"], "drop") == [("Peter Smith", "PER"), ("Paris", "LOC")]


def test_drop_removes_a_whole_run_of_strays_and_a_type_change_inside_an_entity():
    assert repair_tags(["O", "I-PER", "I-PER", "B-LOC", "I-ORG", "I-LOC"], "drop") == ["O", "O", "O", "B-LOC", "O", "O"]
    assert found(*PETER, ["B-PER", "I-LOC", "O", "O", "O", "O"]) == [("Peter", "PER"), ("Smith", "LOC")]
    assert found(*PETER, ["B-PER", "I-LOC", "O", "O", "O", "O"], "drop") == [("Peter", "PER")]


def test_adjacent_begin_tags_are_two_entities():
    assert found(*PETER, ["B-PER", "B-PER", "O", "O", "O", "O"]) == [("Peter", "PER"), ("Smith", "PER")]


def test_an_entity_at_the_end_is_closed():
    assert found(*PETER, ["O", "O", "O", "O", "B-LOC", "I-LOC"]) == [("in Paris", "LOC")]
    assert entity_spans(["O", "B-LOC", "I-LOC"]) == [("LOC", 1, 3)]


def test_offsets_skip_punctuation_around_an_entity_and_keep_it_inside(tiny_base):
    from nlpstd.data.encode import words_and_offsets
    from nlpstd.models.build import load_tokenizer

    text = "Dr. Smith (of St. Louis), said: 'Acme-Corp.'"
    pieces = words_and_offsets(load_tokenizer(str(tiny_base)), text)
    words = [w for w, _ in pieces]
    tags = ["O"] * len(words)
    tags[words.index("Smith")] = "B-PER"
    tags[words.index("St"): words.index("Louis") + 1] = ["B-LOC", "I-LOC", "I-LOC"]  # St . Louis
    tags[words.index("Acme"): words.index("Corp") + 1] = ["B-ORG", "I-ORG", "I-ORG"]  # Acme - Corp
    entities = decode_entities(text, [o for _, o in pieces], tags, [0.9] * len(tags))
    assert [(e["text"], e["start"], e["end"]) for e in entities] == [("Smith", 4, 9), ("St. Louis", 14, 23), ("Acme-Corp", 33, 42)]
    assert entities[1]["words"] == [words.index("St"), words.index("Louis") + 1]


def test_the_score_is_the_mean_probability_of_the_entity_words():
    entity = decode_entities(*PETER, ["B-PER", "I-PER", "O", "O", "O", "O"], [0.9, 0.6, 0.99, 0.99, 0.99, 0.99])[0]
    assert entity["score"] == 0.75


def test_joined_words_locate_each_word_in_the_joined_text():
    text, offsets = joined_words(["EU", "rejects", "German", "call", "."])
    assert text == "EU rejects German call ."
    assert [text[s:e] for s, e in offsets] == ["EU", "rejects", "German", "call", "."]


@pytest.mark.parametrize("repair", ["start", "drop"])
def test_the_decoder_finds_exactly_the_entities_seqeval_scores(repair: str):
    rng = random.Random(7)
    alphabet = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    for _ in range(2000):
        tags = repair_tags([rng.choice(alphabet) for _ in range(rng.randint(1, 9))], repair)
        assert [(label, first, end - 1) for label, first, end in entity_spans(tags)] == get_entities(tags)


def test_start_leaves_tags_as_predicted():
    tags = ["I-PER", "O", "B-LOC", "I-ORG"]
    assert repair_tags(tags, "start") == tags


def test_an_unknown_repair_is_refused():
    with pytest.raises(ValueError, match="iob_repair must be one of start, drop"):
        repair_tags(["O"], "keep")


def test_the_standard_takes_the_repair_under_evaluate(ner_standard):
    assert load_standard(ner_standard).evaluate.iob_repair == "start"
    ner_standard.write_text(ner_standard.read_text().replace("gate: {metric: f1, min: 0.0}}", "gate: {metric: f1, min: 0.0}, iob_repair: ignore}"))
    with pytest.raises(StandardError, match="iob_repair"):
        load_standard(ner_standard)


def test_whitespace_split_keeps_pre_split_words_whole(tiny_base):
    from nlpstd.models.build import load_tokenizer
    from nlpstd.predict import split_words

    text = "Smith flew to Paris-based Siemens on 1996-08-30 ."
    words = [w for w, _ in split_words(load_tokenizer(str(tiny_base)), text, "whitespace")]
    assert words == text.split(" ")
    assert len(split_words(load_tokenizer(str(tiny_base)), text, "tokenizer")) > len(words)
