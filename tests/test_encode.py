"""Label alignment to sub-words, spans to BIO, and truncation that is counted."""

from __future__ import annotations

import pytest

from nlpstd.data.encode import IGNORE, encode_sequences, encode_tokens, spans_to_tags
from nlpstd.models.build import load_tokenizer, resolve_base

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_base("minilm-l6"))


def test_first_subword_carries_the_word_label(tokenizer):
    # "Wolfsburg" splits into wolf + ##sburg; only "wolf" is labelled.
    record = {"tokens": ["Peter", "Wolfsburg", "left"], "tags": ["B-PER", "I-PER", "O"]}
    encoded = encode_tokens(tokenizer, [record], LABELS, 32)
    feature = encoded.features[0]
    pieces = tokenizer.convert_ids_to_tokens(feature["input_ids"])
    assert pieces[:2] == ["[CLS]", "peter"] and pieces[-1] == "[SEP]"
    labelled = [(p, LABELS[label]) for p, label in zip(pieces, feature["labels"]) if label != IGNORE]
    assert labelled == [("peter", "B-PER"), ("wolf", "I-PER"), ("left", "O")]


def test_all_subwords_option_labels_continuations_inside(tokenizer):
    record = {"tokens": ["Szczecin"], "tags": ["B-LOC"]}
    feature = encode_tokens(tokenizer, [record], LABELS, 32, label_subwords="all").features[0]
    inner = [LABELS[label] for label in feature["labels"] if label != IGNORE]
    assert len(inner) > 1, "the word splits into several sub-words"
    assert inner[0] == "B-LOC" and set(inner[1:]) == {"I-LOC"}


def test_spans_become_bio_tags_on_words():
    offsets = [(0, 5), (6, 15), (16, 20), (21, 27)]  # "Peter Blackburn from Berlin"
    assert spans_to_tags(offsets, [[0, 15, "PER"], [21, 27, "LOC"]]) == ["B-PER", "I-PER", "O", "B-LOC"]


def test_span_records_tokenize_into_words(tokenizer):
    record = {"text": "Peter Blackburn from Berlin.", "spans": [[0, 15, "PER"], [21, 27, "LOC"]]}
    encoded = encode_tokens(tokenizer, [record], LABELS, 32)
    assert encoded.words[0] == ["Peter", "Blackburn", "from", "Berlin", "."]
    assert encoded.tags[0] == ["B-PER", "I-PER", "O", "B-LOC", "O"]


def test_truncation_is_counted_in_words(tokenizer):
    record = {"tokens": ["word"] * 20, "tags": ["O"] * 20}
    encoded = encode_tokens(tokenizer, [record], LABELS, 10)
    assert encoded.truncated == 1
    assert encoded.dropped == 12  # 10 positions - [CLS] - [SEP] = 8 words kept
    assert len(encoded.features[0]["input_ids"]) == 10


def test_sequence_truncation_is_counted_in_subwords(tokenizer):
    records = [{"text": "one two three four five six", "label": "1"}, {"text": "short", "label": "0"}]
    encoded = encode_sequences(tokenizer, records, ["0", "1"], 6)
    assert (encoded.truncated, encoded.dropped) == (1, 2)
    assert [f["labels"] for f in encoded.features] == [1, 0]
