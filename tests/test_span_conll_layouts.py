"""Data layouts beyond the default ones: JSON Lines entities keyed by type (and by mention), and CoNLL
files with other columns, tag schemes (IOB1, BIOES, read as IOB2) and document separators."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlpstd.data.conll import read_conll
from nlpstd.data.jsonl import span_labels
from nlpstd.data.readers import read_split
from nlpstd.errors import DataError
from nlpstd.spec import DataSpec, Standard

TOKEN = "token-classification"


def data_spec(tmp_path: Path, fmt: str, content: str, **options) -> DataSpec:
    """A DataSpec whose train and validation are both `content`, written as train.<fmt>."""
    path = tmp_path / f"train.{fmt}"
    path.write_text(content, encoding="utf-8", newline="")
    std = {"name": "t", "task": TOKEN, "model": {"base": "minilm-l6"},
           "data": {"format": fmt, "train": path.name, "validation": path.name, **options}}
    return Standard.model_validate(std, context={"base_dir": str(tmp_path)}).data


def spans(tmp_path: Path, content: str, **options) -> list[dict]:
    return read_split(data_spec(tmp_path, "jsonl", content, **options), "train", TOKEN)


def conll(tmp_path: Path, content: str, **layout) -> list[dict]:
    """`content` read with `data.conll` set to `layout`, as the standard parses it."""
    data = data_spec(tmp_path, "conll", content, conll=layout)
    return read_conll(str(data.files()["train"].path), content, None, data.conll)


# ---------------------------------------------------------------------------------------
# JSON Lines: entities keyed by type


def test_by_type_mapping_reads_each_pair_as_a_span_of_its_type(tmp_path):
    text = '{"text": "Anna met Tom in Paris", "entities": {"PER": [[0, 4], [9, 12]], "LOC": [[16, 21]]}}\n'
    assert spans(tmp_path, text) == [
        {"text": "Anna met Tom in Paris", "spans": [[0, 4, "PER"], [9, 12, "PER"], [16, 21, "LOC"]], "line": 1}
    ]


def test_by_type_and_mention_mapping_with_inclusive_ends_reads_chinese_text(tmp_path):
    text = ('{"text": "浙商银行企业信贷部叶老桂博士则从另一个角度", '
            '"label": {"name": {"叶老桂": [[9, 11]]}, "company": {"浙商银行": [[0, 3]]}}}\n')
    records = spans(tmp_path, text, entities_field="label", span_end="inclusive")
    assert records[0]["spans"] == [[0, 4, "company"], [9, 12, "name"]]


def test_mention_that_the_text_does_not_hold_is_refused_at_its_pair(tmp_path):
    text = '{"text": "浙商银行企业信贷部叶老桂博士", "label": {"name": {"叶老桂": [[8, 10]]}}}\n'
    with pytest.raises(DataError) as caught:
        spans(tmp_path, text, entities_field="label", span_end="inclusive")
    assert caught.value.line == 1
    assert caught.value.field == "label.name.叶老桂[0]"
    assert "the text holds '部叶老'" in caught.value.message and "'叶老桂'" in caught.value.message


def test_spans_of_two_types_that_overlap_name_both_pairs(tmp_path):
    text = '{"text": "New York City", "entities": {"LOC": [[0, 8]], "ORG": [[4, 13]]}}\n'
    with pytest.raises(DataError) as caught:
        spans(tmp_path, text)
    assert (caught.value.field, caught.value.message) == ("entities.ORG[0]", "overlaps entities.LOC[0] (characters 0-8)")


def test_span_labels_point_at_the_key_of_a_mapping_and_the_label_of_a_list():
    assert list(span_labels("entities", {"PER": [[0, 4], [9, 12]], "LOC": {"Paris": [[16, 21]]}})) == [
        ("entities.PER", "PER"), ("entities.PER", "PER"), ("entities.LOC", "LOC")]
    assert list(span_labels("entities", [[0, 4, " PER"], {"start": 5, "end": 6, "label": "LOC"}])) == [
        ("entities[0].label", "PER"), ("entities[1].label", "LOC")]


# ---------------------------------------------------------------------------------------
# CoNLL: schemes, columns, documents


def test_iob1_starts_entities_with_i_and_splits_adjacent_entities_of_one_type_with_b(tmp_path):
    text = "Anna I-PER\nTom I-PER\nLee B-PER\nin O\nParis I-LOC\nBerlin I-LOC\nEU I-ORG\n"
    assert conll(tmp_path, text, scheme="iob1")[0]["tags"] == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC", "B-ORG"]


def test_bioes_becomes_iob2(tmp_path):
    text = "Anna S-PER\nin O\nNew B-LOC\nYork I-LOC\nCity E-LOC\nEU B-ORG\nhq E-ORG\n\nParis S-LOC\n"
    assert [r["tags"] for r in conll(tmp_path, text, scheme="bioes")] == [
        ["B-PER", "O", "B-LOC", "I-LOC", "I-LOC", "B-ORG", "I-ORG"], ["B-LOC"]]


def test_bioes_sequence_it_cannot_write_is_refused_at_its_line(tmp_path):
    with pytest.raises(DataError) as caught:
        conll(tmp_path, "in O\nNew B-LOC\nYork O\n", scheme="bioes")
    assert (caught.value.line, caught.value.field) == (3, "tag")
    assert "inside an open LOC entity" in caught.value.message


def test_token_and_tag_columns_are_chosen_by_number(tmp_path):
    text = "1\tB-ORG\tEU\tNNP\n2\tO\trejects\tVBZ\n"
    assert conll(tmp_path, text, token_column=-2, tag_column=1) == [{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"], "line": 1}]


def test_custom_document_separator_lines_are_skipped(tmp_path):
    text = "#doc O\nEU B-ORG\n\n#doc O\nPeter B-PER\n"
    records = conll(tmp_path, text, document_separator="#doc")
    assert [(r["tokens"], r["line"]) for r in records] == [(["EU"], 2), (["Peter"], 5)]


def test_separator_found_in_the_token_column_marks_a_document_too(tmp_path):
    text = "0 -DOCSTART- O\n1 EU B-ORG\n"
    assert conll(tmp_path, text, token_column=1)[0]["tokens"] == ["EU"]


def test_null_document_separator_reads_docstart_as_a_token(tmp_path):
    text = "-DOCSTART- O\nEU B-ORG\n"
    assert conll(tmp_path, text, document_separator=None) == [{"tokens": ["-DOCSTART-", "EU"], "tags": ["O", "B-ORG"], "line": 1}]


def test_two_argument_call_keeps_the_default_layout():
    assert read_conll("train.txt", "-DOCSTART- -X- O\n\nEU NNP B-ORG\n") == [{"tokens": ["EU"], "tags": ["B-ORG"], "line": 3}]
