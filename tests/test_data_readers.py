"""Readers: what each format yields on good input, and where each kind of bad input is reported."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from nlpstd.data.readers import read_split
from nlpstd.errors import DataError
from nlpstd.spec import DataSpec, Standard

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO_ROOT / os.environ.get("NLPSTD_DATA", "../shared/data")
TOKEN, CLASS = "token-classification", "sequence-classification"
SPANS = TOKEN  # JSONL with entity spans is read for token classification
DEFAULT_TASK = {"conll": TOKEN, "tsv": CLASS, "csv": CLASS, "jsonl": CLASS}


def data_spec(tmp_path: Path, fmt: str, content: str | bytes, **options) -> DataSpec:
    """A DataSpec whose train and validation are both `content`, written as train.<fmt>."""
    path = tmp_path / f"train.{fmt}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    data = {"format": fmt, "train": path.name, "validation": path.name, **options}
    std = {"name": "t", "task": DEFAULT_TASK[fmt], "data": data, "model": {"base": "minilm-l6"}}
    return Standard.model_validate(std, context={"base_dir": str(tmp_path)}).data


def read(tmp_path: Path, fmt: str, content: str | bytes, task: str | None = None, split: str = "train", **options) -> list[dict]:
    return read_split(data_spec(tmp_path, fmt, content, **options), split, task or DEFAULT_TASK[fmt])


def read_error(tmp_path: Path, fmt: str, content: str | bytes, task: str | None = None, **options) -> DataError:
    with pytest.raises(DataError) as caught:
        read(tmp_path, fmt, content, task, **options)
    return caught.value


def where(tmp_path: Path, fmt: str, line: int, field: str) -> str:
    """The `file:line: field: ` prefix every located error starts with."""
    return f"{tmp_path / f'train.{fmt}'}:{line}: {field}: "


# ---------------------------------------------------------------------------------------
# CoNLL, good input


def test_conll_yields_tokens_tags_and_the_first_token_line(tmp_path):
    text = "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
    assert read(tmp_path, "conll", text) == [
        {"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"], "line": 1},
        {"tokens": ["Peter"], "tags": ["B-PER"], "line": 4},
    ]


def test_conll_token_pattern_keeps_the_word_of_each_token(tmp_path):
    text = "科0\tB-ORG.NAM\n技1\tI-ORG.NAM\n的0\tO\n\n2023\tO\n"
    records = read(tmp_path, "conll", text, token_pattern="(.+?)[0-9]")
    assert [r["tokens"] for r in records] == [["科", "技", "的"], ["202"]]


def test_weibo_tokens_read_as_characters_with_the_shipped_pattern():
    path = DATA_ROOT / "weibo-ner" / "dev.conll"
    if not path.is_file():
        pytest.skip("the Weibo NER data is not beside the checkout")
    std = {"name": "t", "task": TOKEN, "model": {"base": "minilm-l6"},
           "data": {"format": "conll", "train": str(path), "validation": str(path), "token_pattern": "(.+?)[0-9]+"}}
    records = read_split(Standard.model_validate(std, context={"base_dir": "."}).data, "validation", TOKEN)
    tokens = [token for record in records for token in record["tokens"]]
    assert len(records) == 270
    longer = [token for token in tokens if len(token) != 1]
    assert len(longer) < len(tokens) / 100, "one character a line (an emoji sequence may take more code points)"
    assert not any(token[-1].isascii() and token[-1].isdigit() and len(token) > 1 for token in tokens)


def test_conll_skips_docstart_lines(tmp_path):
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n\n-DOCSTART- -X- -X- O\n\nPeter NNP B-NP B-PER\n"
    records = read(tmp_path, "conll", text)
    assert [r["tokens"] for r in records] == [["EU"], ["Peter"]]
    assert [r["line"] for r in records] == [3, 7]


def test_conll_splits_fields_on_tabs_and_runs_of_spaces(tmp_path):
    text = "EU\tNNP\tB-ORG\nrejects  VBZ \t O\n"
    assert read(tmp_path, "conll", text)[0]["tags"] == ["B-ORG", "O"]


def test_conll_whitespace_only_line_ends_a_sentence(tmp_path):
    text = "EU B-ORG\n  \t \nPeter B-PER\n"
    assert [r["tokens"] for r in read(tmp_path, "conll", text)] == [["EU"], ["Peter"]]


def test_conll_takes_the_tag_from_the_last_field(tmp_path):
    text = "EU B-ORG\nrejects O\n"
    assert read(tmp_path, "conll", text)[0] == {"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"], "line": 1}


def test_conll_accepts_crlf_line_endings(tmp_path):
    text = "EU B-ORG\r\nrejects O\r\n\r\nPeter B-PER\r\n"
    assert [r["tags"] for r in read(tmp_path, "conll", text)] == [["B-ORG", "O"], ["B-PER"]]


# ---------------------------------------------------------------------------------------
# TSV / CSV, good input


def test_tsv_finds_columns_by_name_in_any_order(tmp_path):
    text = "label\tsentence\n1\ta fine film\n"
    assert read(tmp_path, "tsv", text, text_column="sentence") == [{"text": "a fine film", "label": "1", "line": 2}]


def test_tsv_strips_whitespace_around_text(tmp_path):
    text = "sentence\tlabel\nit 's a charming journey . \t1\n"
    assert read(tmp_path, "tsv", text, text_column="sentence")[0]["text"] == "it 's a charming journey ."


def test_tsv_without_quoting_keeps_quote_characters(tmp_path):
    text = 'text\tlabel\n"a "quoted" word\t0\n'
    assert read(tmp_path, "tsv", text)[0]["text"] == '"a "quoted" word'


def test_csv_quoted_field_keeps_its_commas(tmp_path):
    text = 'text,label\n"slow, long, and dull",neg\n'
    assert read(tmp_path, "csv", text)[0] == {"text": "slow, long, and dull", "label": "neg", "line": 2}


def test_csv_row_after_a_multiline_field_keeps_its_own_line(tmp_path):
    text = 'text,label\n"two\nlines",a\nnext,b\n'
    assert [r["line"] for r in read(tmp_path, "csv", text)] == [2, 4]


def test_table_reads_a_text_pair_column(tmp_path):
    text = "premise\thypothesis\tlabel\nA man sleeps.\tNobody sleeps.\tcontradiction\n"
    record = read(tmp_path, "tsv", text, text_column="premise", text_pair_column="hypothesis")[0]
    assert (record["text"], record["text_pair"]) == ("A man sleeps.", "Nobody sleeps.")


def test_table_ignores_blank_trailing_lines(tmp_path):
    assert len(read(tmp_path, "tsv", "text\tlabel\ngood\t1\n\n\n")) == 1


def test_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    assert read(tmp_path, "tsv", "\ufefftext\tlabel\ngood\t1\n".encode())[0]["text"] == "good"


def test_encoding_is_read_from_the_file_setting(tmp_path):
    content = "text\tlabel\ncaf\u00e9\t1\n".encode("latin-1")
    path = tmp_path / "train.tsv"
    path.write_bytes(content)
    std = Standard.model_validate(
        {"name": "t", "task": CLASS, "model": {"base": "m"},
         "data": {"format": "tsv", "train": {"path": "train.tsv", "encoding": "latin-1"}, "validation": "train.tsv"}},
        context={"base_dir": str(tmp_path)},
    )
    assert read_split(std.data, "train", CLASS)[0]["text"] == "caf\u00e9"


# ---------------------------------------------------------------------------------------
# JSON Lines, good input


def test_jsonl_classification_stores_int_and_bool_labels_as_strings(tmp_path):
    text = '{"text": "a", "label": 1}\n{"text": "b", "label": true}\n{"text": "c", "label": "neg"}\n'
    assert [r["label"] for r in read(tmp_path, "jsonl", text)] == ["1", "true", "neg"]


def test_jsonl_skips_blank_lines_and_keeps_line_numbers(tmp_path):
    text = '\n{"text": "a", "label": 1}\n   \n{"text": "b", "label": 0}\n'
    assert [r["line"] for r in read(tmp_path, "jsonl", text)] == [2, 4]


def test_jsonl_classification_reads_a_text_pair_field(tmp_path):
    text = '{"q": "why?", "a": "because", "label": 1}\n'
    assert read(tmp_path, "jsonl", text, text_column="q", text_pair_column="a")[0] == {
        "text": "why?", "label": "1", "text_pair": "because", "line": 1
    }


def test_jsonl_exclusive_spans_are_sorted_by_start(tmp_path):
    text = '{"text": "Ann met Bob", "entities": [{"start": 8, "end": 11, "label": "PER"}, {"start": 0, "end": 3, "label": "PER"}]}\n'
    assert read(tmp_path, "jsonl", text, task=SPANS) == [
        {"text": "Ann met Bob", "spans": [[0, 3, "PER"], [8, 11, "PER"]], "line": 1}
    ]


def test_jsonl_inclusive_span_ends_become_exclusive(tmp_path):
    text = '{"text": "Ann met Bob", "entities": [{"start": 0, "end": 2, "label": "PER"}, {"start": 8, "end": 10, "label": "PER"}]}\n'
    records = read(tmp_path, "jsonl", text, task=SPANS, span_end="inclusive")
    assert records[0]["spans"] == [[0, 3, "PER"], [8, 11, "PER"]]


def test_jsonl_spans_may_be_lists_in_a_named_field(tmp_path):
    text = '{"text": "Paris", "ner": [[0, 5, "LOC"]]}\n'
    assert read(tmp_path, "jsonl", text, task=SPANS, entities_field="ner")[0]["spans"] == [[0, 5, "LOC"]]


def test_jsonl_text_without_entities_is_an_example(tmp_path):
    assert read(tmp_path, "jsonl", '{"text": "nothing here", "entities": []}\n', task=SPANS)[0]["spans"] == []


# ---------------------------------------------------------------------------------------
# Limits


def test_max_train_examples_keeps_the_first_n(tmp_path):
    text = "text\tlabel\na\t1\nb\t0\nc\t1\n"
    assert [r["text"] for r in read(tmp_path, "tsv", text, max_train_examples=2)] == ["a", "b"]


def test_max_eval_examples_limits_validation_not_train(tmp_path):
    spec = data_spec(tmp_path, "tsv", "text\tlabel\na\t1\nb\t0\nc\t1\n", max_eval_examples=1)
    assert (len(read_split(spec, "train", CLASS)), len(read_split(spec, "validation", CLASS))) == (3, 1)


# ---------------------------------------------------------------------------------------
# Malformed files: every error names the file, the line and the field


def test_conll_line_with_another_column_count_is_rejected(tmp_path):
    error = read_error(tmp_path, "conll", "\nEU NNP B-NP B-ORG\nrejects VBZ O\n")
    assert str(error).startswith(f"{tmp_path / 'train.conll'}:3: ")
    assert "wrong column count: expected 4 fields like line 2, got 3" in str(error)


def test_conll_line_with_one_field_is_rejected(tmp_path):
    error = read_error(tmp_path, "conll", "EU B-ORG\nrejects\n")
    assert str(error).startswith(f"{tmp_path / 'train.conll'}:2: ")
    assert "at least 2 fields" in str(error)


def test_conll_tag_outside_iob2_is_rejected(tmp_path):
    error = read_error(tmp_path, "conll", "EU B-ORG\nrejects X-VERB\n")
    assert str(error).startswith(where(tmp_path, "conll", 2, "tag"))
    assert "'X-VERB'" in str(error)


def test_undecodable_byte_is_reported_on_its_line_with_the_fix(tmp_path):
    error = read_error(tmp_path, "conll", b"EU B-ORG\n\ncaf\xe9 O\n")
    assert str(error).startswith(where(tmp_path, "conll", 3, "encoding"))
    assert "utf-8" in str(error) and "encoding:" in str(error)


def test_tsv_missing_column_lists_the_header(tmp_path):
    error = read_error(tmp_path, "tsv", "sentence\tlabel\ngood\t1\n")
    assert str(error).startswith(where(tmp_path, "tsv", 1, "text"))
    assert "'sentence', 'label'" in str(error)


def test_tsv_row_with_another_column_count_is_rejected(tmp_path):
    error = read_error(tmp_path, "tsv", "text\tlabel\ngood\t1\nbad\n")
    assert str(error).startswith(f"{tmp_path / 'train.tsv'}:3: ")
    assert "wrong column count" in str(error)


def test_tsv_empty_text_names_the_text_column(tmp_path):
    error = read_error(tmp_path, "tsv", "sentence\tlabel\n  \t1\n", text_column="sentence")
    assert str(error).startswith(where(tmp_path, "tsv", 2, "sentence"))


def test_tsv_empty_label_names_the_label_column(tmp_path):
    error = read_error(tmp_path, "tsv", "text\tlabel\ngood\t1\nfine\t\n")
    assert str(error).startswith(where(tmp_path, "tsv", 3, "label"))


def test_table_blank_line_inside_the_rows_is_rejected(tmp_path):
    error = read_error(tmp_path, "tsv", "text\tlabel\ngood\t1\n\nfine\t0\n")
    assert str(error).startswith(f"{tmp_path / 'train.tsv'}:3: ")
    assert "blank line" in str(error)


def test_csv_unclosed_quote_is_reported_on_its_row(tmp_path):
    error = read_error(tmp_path, "csv", 'text,label\ngood,1\n"never closed,0\n')
    assert str(error).startswith(f"{tmp_path / 'train.csv'}:3: ")


def test_jsonl_invalid_json_is_rejected(tmp_path):
    error = read_error(tmp_path, "jsonl", '{"text": "a", "label": 1}\n{"text": "b", label: 0}\n')
    assert str(error).startswith(where(tmp_path, "jsonl", 2, "json"))


def test_jsonl_line_that_is_not_an_object_is_rejected(tmp_path):
    error = read_error(tmp_path, "jsonl", '["a", 1]\n')
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "json"))


def test_jsonl_missing_label_field_is_rejected(tmp_path):
    error = read_error(tmp_path, "jsonl", '{"text": "a"}\n', label_column="stars")
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "stars"))


def test_jsonl_float_label_is_rejected(tmp_path):
    error = read_error(tmp_path, "jsonl", '{"text": "a", "label": 0.5}\n')
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "label"))


def test_jsonl_empty_text_is_rejected(tmp_path):
    error = read_error(tmp_path, "jsonl", '{"text": " ", "entities": []}\n', task=SPANS)
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "text"))


def test_jsonl_missing_entities_field_is_rejected(tmp_path):
    error = read_error(tmp_path, "jsonl", '{"text": "Paris"}\n', task=SPANS)
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "entities"))


def test_span_end_beyond_the_text_is_rejected(tmp_path):
    text = '{"text": "Paris", "entities": [[0, 1, "LOC"], [2, 6, "LOC"]]}\n'
    error = read_error(tmp_path, "jsonl", text, task=SPANS)
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "entities[1].end"))


def test_inclusive_span_ending_on_the_text_length_is_beyond_the_text(tmp_path):
    text = '{"text": "Paris", "entities": [[0, 5, "LOC"]]}\n'
    error = read_error(tmp_path, "jsonl", text, task=SPANS, span_end="inclusive")
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "entities[0].end"))


def test_span_start_that_is_not_an_integer_is_rejected(tmp_path):
    text = '{"text": "Paris", "entities": [{"start": "0", "end": 5, "label": "LOC"}]}\n'
    error = read_error(tmp_path, "jsonl", text, task=SPANS)
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "entities[0].start"))


def test_negative_span_start_is_rejected(tmp_path):
    error = read_error(tmp_path, "jsonl", '{"text": "Paris", "entities": [[-1, 5, "LOC"]]}\n', task=SPANS)
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "entities[0].start"))


def test_empty_span_is_rejected(tmp_path):
    error = read_error(tmp_path, "jsonl", '{"text": "Paris", "entities": [[2, 2, "LOC"]]}\n', task=SPANS)
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "entities[0].end"))
    assert "empty span" in str(error)


def test_overlapping_spans_are_rejected(tmp_path):
    text = '{"text": "New York City", "entities": [[0, 8, "LOC"], [4, 13, "LOC"]]}\n'
    error = read_error(tmp_path, "jsonl", text, task=SPANS)
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "entities[1]"))
    assert "overlaps entities[0]" in str(error)


def test_span_with_empty_label_is_rejected(tmp_path):
    error = read_error(tmp_path, "jsonl", '{"text": "Paris", "entities": [{"start": 0, "end": 5, "label": ""}]}\n', task=SPANS)
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "entities[0].label"))


def test_span_with_a_missing_key_is_rejected(tmp_path):
    error = read_error(tmp_path, "jsonl", '{"text": "Paris", "entities": [{"start": 0, "label": "LOC"}]}\n', task=SPANS)
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "entities[0].end"))


def test_file_without_examples_is_rejected(tmp_path):
    error = read_error(tmp_path, "conll", "-DOCSTART- -X- -X- O\n\n")
    assert str(error) == f"{tmp_path / 'train.conll'}: no examples found: only blank lines and -DOCSTART- markers, no token lines"


def test_table_with_only_a_header_has_no_examples(tmp_path):
    assert "no examples found" in str(read_error(tmp_path, "tsv", "text\tlabel\n"))


def test_missing_file_is_reported_without_a_line(tmp_path):
    std = Standard.model_validate(
        {"name": "t", "task": CLASS, "model": {"base": "m"},
         "data": {"format": "tsv", "train": "absent.tsv", "validation": "absent.tsv"}},
        context={"base_dir": str(tmp_path)},
    )
    with pytest.raises(DataError) as caught:
        read_split(std.data, "train", CLASS)
    assert str(caught.value).startswith(f"{tmp_path / 'absent.tsv'}: cannot read the file")


# ---------------------------------------------------------------------------------------
# Line ends, byte order marks and encodings: the file is decoded as it is read


def test_jsonl_with_a_byte_order_mark_and_crlf_line_ends_is_read(tmp_path):
    records = read(tmp_path, "jsonl", '\ufeff{"text": "a", "label": "x"}\r\n\r\n{"text": "b", "label": "y"}\r\n'.encode())
    assert [(r["text"], r["line"]) for r in records] == [("a", 1), ("b", 3)]


def test_lone_cr_line_ends_are_line_ends_in_conll(tmp_path):
    records = read(tmp_path, "conll", "EU B-ORG\rrejects O\r\rPeter B-PER\r")
    assert [(r["tokens"], r["line"]) for r in records] == [(["EU", "rejects"], 1), (["Peter"], 4)]


def test_lone_cr_line_ends_are_line_ends_in_a_table(tmp_path):
    assert [r["line"] for r in read(tmp_path, "csv", "text,label\ra,x\rb,y\r")] == [2, 3]


def test_csv_quoted_field_keeps_its_crlf(tmp_path):
    assert read(tmp_path, "csv", 'text,label\r\n"two\r\nlines",a\r\nnext,b\r\n')[0]["text"] == "two\r\nlines"


def test_form_feed_and_line_separator_do_not_end_a_line(tmp_path):
    assert read(tmp_path, "tsv", "text\tlabel\na\x0cb\u2028c\tx\n")[0] == {"text": "a\x0cb\u2028c", "label": "x", "line": 2}


def test_utf16_file_with_its_byte_order_mark_is_read_when_declared(tmp_path):
    content = "text\tlabel\n\u010a film\tpos\r\ndull\tneg\n".encode("utf-16")
    records = read(tmp_path, "tsv", content, encoding="utf-16")
    assert [(r["text"], r["line"]) for r in records] == [("\u010a film", 2), ("dull", 3)]


def test_undecodable_byte_after_lone_crs_is_reported_on_its_line(tmp_path):
    error = read_error(tmp_path, "conll", b"EU B-ORG\r\nfoo O\rZ\xfcrich B-LOC\n")
    assert str(error).startswith(where(tmp_path, "conll", 3, "encoding"))


def test_character_cut_off_by_the_end_of_the_file_is_reported_on_the_last_line(tmp_path):
    error = read_error(tmp_path, "conll", b"EU B-ORG\nZ\xc3")
    assert str(error).startswith(where(tmp_path, "conll", 2, "encoding")) and "0xc3" in str(error)


def test_lines_across_read_blocks_come_back_whole(tmp_path):
    sentences = [f"word{i} O\nName{i} B-PER\n" for i in range(60_000)]  # about 1.3 MB: more than one block
    records = read(tmp_path, "conll", "\n".join(sentences))
    assert len(records) == 60_000
    assert records[-1] == {"tokens": ["word59999", "Name59999"], "tags": ["O", "B-PER"], "line": 3 * 59_999 + 1}


# ---------------------------------------------------------------------------------------
# Text no example can hold, and files that are no data


def test_nul_in_a_conll_token_is_refused(tmp_path):
    error = read_error(tmp_path, "conll", "EU B-ORG\nrej\x00ects O\n")
    assert str(error) == where(tmp_path, "conll", 2, "token") + "a NUL character (\\x00) at character 4: binary data, not text"


def test_nul_in_a_table_text_is_refused(tmp_path):
    assert str(read_error(tmp_path, "tsv", "text\tlabel\nfine\x00\tpos\n")).startswith(where(tmp_path, "tsv", 2, "text"))


def test_nul_escape_in_a_jsonl_text_is_refused(tmp_path):
    error = read_error(tmp_path, "jsonl", '{"text": "a\\u0000b", "label": "x"}\n')
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "text")) and "NUL" in str(error)


@pytest.mark.parametrize(("line", "field"), [('{"text": "a\\ud800b", "label": "x"}', "text"),
                                             ('{"text": "ab", "label": "\\udfff"}', "label")])
def test_lone_surrogate_escape_in_jsonl_is_refused(tmp_path, line, field):
    error = read_error(tmp_path, "jsonl", line + "\n")
    assert str(error).startswith(where(tmp_path, "jsonl", 1, field)) and "a lone surrogate" in str(error)


def test_lone_surrogate_in_a_span_label_is_refused(tmp_path):
    error = read_error(tmp_path, "jsonl", '{"text": "Paris", "entities": [[0, 5, "\\ud800"]]}\n', task=SPANS)
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "entities[0].label"))


@pytest.mark.parametrize(("line", "message"), [("[1, 2]", "got an array"), ("3", "got a number"), ("null", "got null"),
                                               ('"text"', "got a string"), ("true", "got a boolean")])
def test_jsonl_line_that_is_not_an_object_names_its_json_type(tmp_path, line, message):
    assert message in str(read_error(tmp_path, "jsonl", line + "\n"))


def test_jsonl_integer_past_the_digit_limit_is_invalid_json(tmp_path):
    error = read_error(tmp_path, "jsonl", '{"text": "a", "label": ' + "9" * 5000 + "}\n")
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "json")) and "4300 digits" in str(error)


def test_jsonl_nested_too_deeply_is_invalid_json(tmp_path):
    error = read_error(tmp_path, "jsonl", "[" * 100_000 + "]" * 100_000 + "\n")
    assert str(error).startswith(where(tmp_path, "jsonl", 1, "json")) and "nested too deeply" in str(error)


@pytest.mark.parametrize("label", ["null", "{}", "[1]", "1.0"])
def test_jsonl_label_of_another_type_is_shown_as_json(tmp_path, label):
    error = read_error(tmp_path, "jsonl", f'{{"text": "a", "label": {label}}}\n')
    assert str(error) == where(tmp_path, "jsonl", 1, "label") + f"a label is a string, integer or boolean, got {label}"


@pytest.mark.parametrize("offset", ["1.0", "true", '"1"', "null"])
def test_span_offset_that_is_not_an_integer_is_refused(tmp_path, offset):
    error = read_error(tmp_path, "jsonl", f'{{"text": "Paris", "entities": [[0, {offset}, "LOC"]]}}\n', task=SPANS)
    assert str(error) == where(tmp_path, "jsonl", 1, "entities[0].end") + f"must be an integer, got {offset}"


def test_table_whose_first_line_is_blank_has_no_header(tmp_path):
    assert str(read_error(tmp_path, "tsv", "\ntext\tlabel\na\tx\n")).startswith(where(tmp_path, "tsv", 1, "columns"))


def test_table_naming_a_column_twice_is_refused(tmp_path):
    error = read_error(tmp_path, "tsv", "text\tlabel\ttext\na\tx\tb\n")
    assert str(error).startswith(where(tmp_path, "tsv", 1, "text")) and "2 times" in str(error)


def test_field_past_the_csv_size_limit_names_both_causes(tmp_path):
    error = read_error(tmp_path, "tsv", "text\tlabel\n" + "a" * 200_000 + "\tx\n")
    assert str(error).startswith(where(tmp_path, "tsv", 2, "columns"))
    assert "unclosed quote" in str(error) and "max_length" in str(error)


@pytest.mark.parametrize(("fmt", "content", "message"), [
    ("conll", "", "no examples found: the file is empty"),
    ("conll", "\n \n", "no examples found: only blank lines and -DOCSTART- markers, no token lines"),
    ("tsv", "", "no examples found: the file is empty or holds only blank lines"),
    ("csv", "text,label\n\n", "no examples found: only the header row"),
    ("jsonl", "\n\n", "no examples found: the file is empty or holds only blank lines"),
])
def test_file_without_examples_says_what_it_holds(tmp_path, fmt, content, message):
    assert str(read_error(tmp_path, fmt, content)) == f"{tmp_path / f'train.{fmt}'}: {message}"


def test_named_pipe_is_refused_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.tsv")
    std = Standard.model_validate(
        {"name": "t", "task": CLASS, "model": {"base": "m"}, "data": {"format": "tsv", "train": "pipe.tsv", "validation": "pipe.tsv"}},
        context={"base_dir": str(tmp_path)},
    )
    signal.alarm(10)  # opening the pipe would wait for a writer
    try:
        with pytest.raises(DataError, match="not a regular file but a named pipe"):
            read_split(std.data, "train", CLASS)
    finally:
        signal.alarm(0)


# ---------------------------------------------------------------------------------------
# Real data


def real_spec(fmt: str, train: Path, validation: Path, **options) -> DataSpec:
    if not (train.exists() and validation.exists()):
        pytest.skip(f"real data not found under {DATA_ROOT} (set NLPSTD_DATA)")
    data = {"format": fmt, "train": str(train), "validation": str(validation), **options}
    return Standard.model_validate({"name": "t", "task": DEFAULT_TASK[fmt], "data": data, "model": {"base": "m"}}).data


def test_real_conll_train_has_14041_sentences():
    spec = real_spec("conll", DATA_ROOT / "conll2003/train.txt", DATA_ROOT / "conll2003/dev.txt")
    assert len(read_split(spec, "train", TOKEN)) == 14041


def test_real_sst2_dev_has_872_examples():
    spec = real_spec("tsv", DATA_ROOT / "sst2/train.tsv", DATA_ROOT / "sst2/dev.tsv", text_column="sentence")
    assert len(read_split(spec, "validation", CLASS)) == 872
