"""Control characters: counted and located in the data report, checked by `data.checks.max_control_characters`,
and removed as read with `data.control_characters: remove` (span offsets moved to match)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlpstd.data import report as data_report
from nlpstd.data.checks import violations
from nlpstd.data.hygiene import control_characters, remove_control_characters
from nlpstd.data.prepare import check_data, prepare
from nlpstd.errors import DataError
from nlpstd.spec import Standard
from nlpstd.stages import data_prep

TOKEN, CLASS = "token-classification", "sequence-classification"


def standard(folder: Path, files: dict[str, str], task: str = CLASS, fmt: str = "jsonl", **options) -> Standard:
    folder.mkdir(parents=True, exist_ok=True)
    data: dict = {"format": fmt, **options}
    for split, content in files.items():
        (folder / f"{split}.{fmt}").write_text(content, encoding="utf-8")
        data[split] = f"{split}.{fmt}"
    std = {"name": "t", "task": task, "data": data, "model": {"base": "minilm-l6"}}
    return Standard.model_validate(std, context={"base_dir": str(folder)})


TRAIN = ('{"text": "good\\u0007 film", "label": "pos"}\n'
         '{"text": "bad\\tplot", "label": "neg"}\n'
         '{"text": "fine\\u001b\\u001b acting", "label": "pos"}\n'
         '{"text": "dull", "label": "neg"}\n')
DEV = '{"text": "great", "label": "pos"}\n{"text": "awful", "label": "neg"}\n'


def test_control_characters_are_counted_per_example_and_in_all():
    found = control_characters([{"text": "a\x07b\x1b", "label": "x", "line": 1}, {"text": "ok", "label": "x", "line": 2}])
    assert (found["with_control"], found["characters"], found["share"]) == (1, 2, 0.5)
    assert found["kinds"] == {"U+0007": 1, "U+001B": 1}


def test_tabs_and_line_breaks_are_not_control_characters_here():
    assert control_characters([{"text": "a\tb\nc\r", "label": "x", "line": 1}])["with_control"] == 0


def test_c1_controls_and_delete_count():
    assert control_characters([{"text": "a\x7fb\x85c\x9f", "label": "x", "line": 1}])["characters"] == 3


def test_control_characters_are_located_by_line():
    found = control_characters([{"text": "ok", "label": "x", "line": 4}, {"text": "a\x0c", "label": "x", "line": 9}])
    assert found["items"] == [{"index": 1, "line": 9, "characters": ["U+000C"]}]


def test_text_pairs_and_conll_tokens_are_searched():
    records = [{"text": "a", "text_pair": "b\x00", "label": "x", "line": 1}, {"tokens": ["E\x07U"], "tags": ["B-ORG"], "line": 3}]
    assert control_characters(records)["with_control"] == 2


def test_removal_cleans_class_texts_and_pairs():
    [record] = remove_control_characters([{"text": "go\x07od", "text_pair": "\x1bfilm", "label": "pos", "line": 1}])
    assert (record["text"], record["text_pair"]) == ("good", "film")


def test_removal_moves_span_offsets_to_the_cleaned_text():
    text = "\x07Bob in\x1b\x1b Paris"
    [record] = remove_control_characters([{"text": text, "spans": [[1, 4, "PER"], [10, 15, "LOC"]], "line": 1}])
    assert record["text"] == "Bob in Paris"
    assert [record["text"][start:end] for start, end, _ in record["spans"]] == ["Bob", "Paris"]


def test_removal_shrinks_a_span_holding_control_characters():
    [record] = remove_control_characters([{"text": "New\x07York", "spans": [[0, 8, "LOC"]], "line": 1}])
    assert record["spans"] == [[0, 7, "LOC"]] and record["text"] == "NewYork"


def test_a_span_of_only_control_characters_is_an_error_at_its_line():
    records = [{"text": "a \x07\x07 b", "spans": [[2, 4, "PER"]], "line": 5}]
    with pytest.raises(DataError, match="holds only control characters") as caught:
        remove_control_characters(records, "train.jsonl")
    assert (caught.value.file, caught.value.line, caught.value.field) == ("train.jsonl", 5, "spans[0]")


def test_removal_cleans_conll_tokens_and_drops_an_o_token_of_only_controls():
    [record] = remove_control_characters([{"tokens": ["E\x07U", "\x0c", "rejects"], "tags": ["B-ORG", "O", "O"], "line": 1}])
    assert (record["tokens"], record["tags"]) == (["EU", "rejects"], ["B-ORG", "O"])


def test_a_conll_entity_token_of_only_controls_is_an_error_at_its_line():
    with pytest.raises(DataError, match="B-PER token holds only control characters") as caught:
        remove_control_characters([{"tokens": ["x", "\x07"], "tags": ["O", "B-PER"], "line": 10}], "train.txt")
    assert caught.value.line == 11


def test_records_without_control_characters_are_returned_unchanged():
    record = {"text": "plain", "label": "x", "line": 1}
    assert remove_control_characters([record])[0] is record


def test_remove_setting_cleans_the_prepared_splits(tmp_path):
    std = standard(tmp_path, {"train": TRAIN, "validation": DEV}, control_characters="remove")
    texts = [record["text"] for record in prepare(std).splits["train"]]
    assert texts == ["good film", "bad\tplot", "fine acting", "dull"]


def test_the_limit_is_not_checked_by_default(tmp_path):
    std = standard(tmp_path, {"train": TRAIN, "validation": DEV})
    assert check_data(std).warnings == []


def test_a_share_over_the_limit_warns(tmp_path):
    std = standard(tmp_path, {"train": TRAIN, "validation": DEV}, checks={"max_control_characters": 0.1})
    [warning] = check_data(std).warnings
    assert "2 of 4 train examples (50.00%) hold control characters (3 in all; first: line 1, U+0007)" in warning


def test_a_share_over_the_limit_fails_when_told_to(tmp_path):
    std = standard(tmp_path, {"train": TRAIN, "validation": DEV},
                   checks={"max_control_characters": 0.1, "on_violation": "fail"})
    with pytest.raises(DataError, match="data.control_characters: remove") as caught:
        check_data(std)
    assert caught.value.field == "data.checks.max_control_characters"


def test_removed_characters_pass_the_limit(tmp_path):
    std = standard(tmp_path, {"train": TRAIN, "validation": DEV}, control_characters="remove",
                   checks={"max_control_characters": 0.0, "on_violation": "fail"})
    assert check_data(std).warnings == []


def test_the_report_lists_control_characters_with_file_and_line(tmp_path):
    std = standard(tmp_path, {"train": TRAIN, "validation": DEV}, checks={"max_overlap": None})
    data_prep.run(std, tmp_path / "out")
    markdown = (tmp_path / "out" / "data_report.md").read_text()
    assert "## Control characters" in markdown
    assert "| train | 2 (50.00%) | 3 | U+0007 x1, U+001B x2 |" in markdown
    assert "train.jsonl:1 (U+0007), train.jsonl:3 (U+001B U+001B)" in markdown


def test_the_report_and_validate_judge_the_same_figures(tmp_path):
    std = standard(tmp_path, {"train": TRAIN, "validation": DEV}, checks={"max_overlap": None, "max_control_characters": 0.25})
    report = data_report.build(prepare(std), None, "not measured", 32)
    assert [message for _, _, message in violations(report, std.data.checks)] == check_data(std).warnings != []
