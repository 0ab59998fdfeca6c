"""Long texts: token classification reads an example longer than max_length in overlapping windows
(data.stride) and takes each word's prediction from the window where it is most central; sequence
classification cuts the side the standard names. Training, evaluation and predict window alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from conftest import ner_yaml, write_conll_splits, write_standard
from nlpstd.data.encode import IGNORE, encode_sequences, encode_tokens
from nlpstd.errors import StandardError
from nlpstd.inference import word_predictions
from nlpstd.models.build import resolve_base
from nlpstd.predict import Predictor
from nlpstd.runner import run_standard
from nlpstd.spec import load_standard

LABELS = ["O", "B-PER", "I-PER", "B-LOC"]
WORDS = ["Peter", "Blackburn", "visited", "Brussels", "yesterday", "with", "unbelievably", "long", "names"]
TAGS = ["B-PER", "I-PER", "O", "B-LOC", "O", "O", "O", "O", "O"]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_base("minilm-l6"))


def first_pieces(encoded, record: int) -> list[int]:
    """The word ids that carry a label in the windows of one record."""
    return [w for f, r in zip(encoded.features, encoded.record_of) if r == record
            for w, label in zip(f["word_ids"], f["labels"]) if label != IGNORE]


def test_without_stride_a_long_example_is_cut_and_counted(tokenizer):
    encoded = encode_tokens(tokenizer, [{"tokens": WORDS, "tags": TAGS}], LABELS, max_length=8)
    assert len(encoded.features) == 1
    assert encoded.stats() == {"examples": 1, "truncated": 1, "dropped": 3, "windowed": 0, "kept_by_windows": 0}


def test_with_stride_every_word_is_labelled_exactly_once_per_window_start(tokenizer):
    encoded = encode_tokens(tokenizer, [{"tokens": WORDS, "tags": TAGS}], LABELS, max_length=8, stride=2)
    assert len(encoded.features) > 1 and set(encoded.record_of) == {0}
    assert set(first_pieces(encoded, 0)) == set(range(len(WORDS)))
    assert encoded.stats() == {"examples": 1, "truncated": 0, "dropped": 0, "windowed": 1, "kept_by_windows": 3}


def test_a_window_opening_inside_a_word_does_not_label_its_remaining_pieces(tokenizer):
    # "unbelievably" is five pieces; with these settings the third window opens on its fourth piece
    encoded = encode_tokens(tokenizer, [{"tokens": WORDS, "tags": TAGS}], LABELS, max_length=8, stride=2)
    third = encoded.features[2]
    assert tokenizer.convert_ids_to_tokens(third["input_ids"][1]).startswith("##")
    assert third["word_ids"][1] == -1 and third["labels"][1] == IGNORE
    assert first_pieces(encoded, 0).count(WORDS.index("unbelievably")) == 1


def test_short_examples_are_one_window_each(tokenizer):
    records = [{"tokens": WORDS, "tags": TAGS}, {"tokens": ["short", "one"], "tags": ["O", "O"]}]
    windowed = encode_tokens(tokenizer, records, LABELS, max_length=8, stride=2)
    assert windowed.record_of.count(1) == 1
    plain = encode_tokens(tokenizer, records[1:], LABELS, max_length=8)
    assert windowed.features[windowed.record_of.index(1)] == plain.features[0]


def test_each_word_takes_the_window_where_it_is_most_central():
    class Encoded:  # two windows of one 3-word example: word 1 sits at the edge of the first, mid second
        words = [["a", "b", "c"]]
        record_of = [0, 0]
        features = [{"word_ids": [-1, 0, 1, -1]}, {"word_ids": [-1, 0, 1, 2, -1]}]

    def one_hot(labels: list[int]) -> np.ndarray:
        return np.eye(3)[labels] * 10.0

    logits = [one_hot([0, 1, 1, 0]), one_hot([0, 2, 2, 2, 0])]
    (words,) = word_predictions(logits, Encoded())
    # word 0: position 1 in both windows (a tie keeps the first); word 1: position 2 of 4 vs 2 of 5
    assert [label for label, _ in words] == [1, 2, 2]


def test_truncation_side_left_keeps_the_end_of_a_text(tokenizer):
    text = "the start is dull but the ending is wonderful"
    tokenizer.truncation_side = "left"
    try:
        encoded = encode_sequences(tokenizer, [{"text": text, "label": "1"}], ["0", "1"], max_length=6)
    finally:
        tokenizer.truncation_side = "right"
    pieces = tokenizer.convert_ids_to_tokens(encoded.features[0]["input_ids"])
    assert pieces[-2] == "wonderful" and "start" not in pieces and encoded.truncated == 1


@pytest.mark.parametrize("body, field", [
    ("data: {format: tsv, train: train.tsv, validation: dev.tsv, text_column: sentence, stride: 8}", "data.stride"),
    ("data: {format: conll, train: train.txt, validation: dev.txt, max_length: 16, stride: 14}", "data.stride"),
    ("data: {format: conll, train: train.txt, validation: dev.txt, truncation_side: left}", "data.truncation_side"),
])
def test_long_text_settings_that_cannot_apply_are_refused(tmp_path, tiny_base, body, field):
    write_conll_splits(tmp_path)
    (tmp_path / "train.tsv").write_text("sentence\tlabel\ngood\t1\n")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nbad\t0\n")
    task = "sequence-classification" if "tsv" in body else "token-classification"
    path = write_standard(tmp_path, f"name: long\ntask: {task}\n{body}\nmodel: {{base: {tiny_base}}}\n")
    with pytest.raises(StandardError) as error:
        load_standard(path)
    assert error.value.field == field


@pytest.fixture(scope="module")
def windowed_export(tmp_path_factory, tiny_base) -> Path:
    """The tiny NER standard trained with windows of 16 sub-words sharing 6."""
    folder = tmp_path_factory.mktemp("windowed")
    write_conll_splits(folder)
    body = ner_yaml(tiny_base).replace("max_length: 32}", "max_length: 16, stride: 6}").replace("epochs: 3", "epochs: 6")
    run_standard(write_standard(folder, body), folder / "out", tracking=False)
    return folder / "out" / "export" / "model"


def test_predict_finds_entities_past_max_length_only_with_windows(windowed_export):
    sentences = ["Maria Smith flew to Tokyo for Siemens .", "Peter Smith flew to Oslo for Reuters ."] * 4
    text = " ".join(sentences)  # about 80 sub-words: five windows of 16
    with_windows = Predictor(windowed_export)([text])[0]["entities"]
    late = [e for e in with_windows if e["start"] > len(text) // 2]
    assert late, "entities in the second half of the text are found"
    assert all(text[e["start"]:e["end"]] == e["text"] for e in with_windows)

    cut = Predictor(windowed_export)
    cut.stride = None  # what the same model does without windows: words past the limit are `O`
    assert not [e for e in cut([text])[0]["entities"] if e["start"] > len(text) // 2]


def test_a_text_that_fits_is_predicted_the_same_with_or_without_windows(windowed_export):
    text = "Anna Smith flew to Lima ."
    windowed = Predictor(windowed_export)
    plain = Predictor(windowed_export)
    plain.stride = None
    assert windowed([text]) == plain([text])


def test_the_export_records_the_windowing_it_was_trained_with(windowed_export):
    import json

    info = json.loads((windowed_export / "nlpstd.json").read_text())
    assert info["stride"] == 6 and info["max_length"] == 16
