"""Preparation: the label set, unknown-label checks, the fingerprint, and save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlpstd.data.prepare import PreparedData, check_data, fingerprint, load, prepare, save
from nlpstd.errors import DataError
from nlpstd.spec import Standard, load_standard

TOKEN, CLASS = "token-classification", "sequence-classification"


def standard(folder: Path, fmt: str, task: str, files: dict[str, str | bytes], **options) -> Standard:
    """Write `files` (split -> content) as <split>.<fmt> in `folder`, and a standard reading them."""
    folder.mkdir(parents=True, exist_ok=True)
    data: dict = {"format": fmt, **options}
    for split, content in files.items():
        path = folder / f"{split}.{fmt}"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        data[split] = path.name
    std = {"name": "t", "task": task, "data": data, "model": {"base": "minilm-l6"}}
    return Standard.model_validate(std, context={"base_dir": str(folder)})


def conll(*sentences: str) -> str:
    """Sentences given as `token/TAG token/TAG ...`, written one token per line."""
    blocks = ["\n".join(" ".join(pair.split("/")) for pair in sentence.split()) for sentence in sentences]
    return "\n\n".join(blocks) + "\n"


def tsv(*rows: str) -> str:
    return "text\tlabel\n" + "".join(f"{row}\n" for row in rows)


# ---------------------------------------------------------------------------------------
# Labels


def test_token_labels_are_o_then_b_and_i_for_each_type_alphabetically(tmp_path):
    std = standard(tmp_path, "conll", TOKEN, {"train": conll("Bob/B-PER in/O Paris/B-LOC"), "validation": conll("x/O")})
    assert prepare(std).labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_token_labels_include_b_and_i_when_train_shows_only_one(tmp_path):
    std = standard(tmp_path, "conll", TOKEN, {"train": conll("York/I-LOC"), "validation": conll("x/O")})
    assert prepare(std).labels == ["O", "B-LOC", "I-LOC"]


def test_span_labels_come_from_the_span_types(tmp_path):
    train = '{"text": "Bob in Paris", "entities": [[7, 12, "LOC"], [0, 3, "PER"]]}\n'
    std = standard(tmp_path, "jsonl", TOKEN, {"train": train, "validation": train})
    assert prepare(std).labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_integer_class_labels_sort_numerically(tmp_path):
    std = standard(tmp_path, "tsv", CLASS, {"train": tsv("a\t10", "b\t2", "c\t1"), "validation": tsv("d\t2")})
    assert prepare(std).labels == ["1", "2", "10"]


def test_other_class_labels_sort_alphabetically(tmp_path):
    std = standard(tmp_path, "tsv", CLASS, {"train": tsv("a\tpos", "b\tneg", "c\t1"), "validation": tsv("d\tneg")})
    assert prepare(std).labels == ["1", "neg", "pos"]


def test_labels_come_from_all_of_train_even_when_train_is_cut(tmp_path):
    std = standard(
        tmp_path, "tsv", CLASS, {"train": tsv("a\t0", "b\t1", "c\t2"), "validation": tsv("d\t2")}, max_train_examples=2
    )
    prepared = prepare(std)
    assert (prepared.labels, len(prepared.splits["train"])) == (["0", "1", "2"], 2)


# ---------------------------------------------------------------------------------------
# Labels that train never shows


def test_unknown_entity_type_in_validation_names_the_token_line(tmp_path):
    files = {"train": conll("Bob/B-PER"), "validation": conll("a/O", "in/O Rome/B-LOC")}
    with pytest.raises(DataError) as caught:
        prepare(standard(tmp_path, "conll", TOKEN, files))
    assert str(caught.value).startswith(f"{tmp_path / 'validation.conll'}:4: tag: ")
    assert "'LOC'" in str(caught.value) and "PER" in str(caught.value)


def test_unknown_class_in_test_names_the_label_column(tmp_path):
    files = {"train": tsv("a\tpos", "b\tneg"), "validation": tsv("c\tpos"), "test": tsv("d\tneg", "e\tneutral")}
    with pytest.raises(DataError) as caught:
        prepare(standard(tmp_path, "tsv", CLASS, files))
    assert str(caught.value).startswith(f"{tmp_path / 'test.tsv'}:3: label: ")
    assert "'neutral'" in str(caught.value) and "neg, pos" in str(caught.value)


def test_unknown_span_type_names_the_entity_index_as_written_in_the_file(tmp_path):
    train = '{"text": "Bob", "entities": [[0, 3, "PER"]]}\n'
    validation = '{"text": "Bob in Rome", "entities": [[7, 11, "LOC"], [0, 3, "PER"]]}\n'
    with pytest.raises(DataError) as caught:
        prepare(standard(tmp_path, "jsonl", TOKEN, {"train": train, "validation": validation}))
    assert str(caught.value).startswith(f"{tmp_path / 'validation.jsonl'}:1: entities[0].label: ")


# ---------------------------------------------------------------------------------------
# Training data a model cannot learn from


def test_training_labels_of_a_single_class_are_refused_at_the_first_example(tmp_path):
    files = {"train": tsv("a\tpos", "b\tpos"), "validation": tsv("c\tneg")}
    with pytest.raises(DataError) as caught:
        prepare(standard(tmp_path, "tsv", CLASS, files))
    assert str(caught.value) == (f"{tmp_path / 'train.tsv'}:2: label: every training example has the label 'pos'; "
                                 "a classifier needs at least two classes")


def test_a_cut_that_leaves_one_class_names_max_train_examples_and_the_next_class(tmp_path):
    files = {"train": tsv("a\tpos", "b\tpos", "c\tneg"), "validation": tsv("d\tneg")}
    with pytest.raises(DataError) as caught:
        prepare(standard(tmp_path, "tsv", CLASS, files, max_train_examples=2))
    assert str(caught.value).startswith(f"{tmp_path / 'train.tsv'}:2: label: the training examples kept by "
                                        "data.max_train_examples (2) all have the label 'pos', while line 4 has 'neg'")


def test_a_cut_that_keeps_two_classes_trains(tmp_path):
    files = {"train": tsv("a\tpos", "b\tneg", "c\tpos"), "validation": tsv("d\tneg")}
    assert len(prepare(standard(tmp_path, "tsv", CLASS, files, max_train_examples=2)).splits["train"]) == 2


def test_conll_training_data_without_an_entity_is_refused(tmp_path):
    files = {"train": conll("a/O b/O", "c/O"), "validation": conll("d/O")}
    with pytest.raises(DataError) as caught:
        prepare(standard(tmp_path, "conll", TOKEN, files))
    assert str(caught.value).startswith(f"{tmp_path / 'train.conll'}:1: tag: no training example holds an entity (every tag is O)")


def test_a_stray_inside_tag_is_an_entity_to_learn(tmp_path):
    files = {"train": conll("a/O b/I-PER"), "validation": conll("d/O")}
    assert prepare(standard(tmp_path, "conll", TOKEN, files)).labels == ["O", "B-PER", "I-PER"]


def test_span_training_data_without_an_entity_is_refused_naming_the_entities_field(tmp_path):
    train = '{"text": "it rains", "spans": []}\n'
    files = {"train": train, "validation": '{"text": "Bob", "spans": [[0, 3, "PER"]]}\n'}
    with pytest.raises(DataError) as caught:
        prepare(standard(tmp_path, "jsonl", TOKEN, files, entities_field="spans"))
    assert str(caught.value).startswith(f"{tmp_path / 'train.jsonl'}:1: spans: no training example holds an entity")


def test_a_cut_before_the_first_entity_says_where_the_entity_is(tmp_path):
    files = {"train": conll("a/O", "b/O", "Bob/B-PER"), "validation": conll("d/O")}
    with pytest.raises(DataError) as caught:
        prepare(standard(tmp_path, "conll", TOKEN, files, max_train_examples=2))
    assert "kept by data.max_train_examples (2) hold no entity (every tag is O), while line 5 has one" in str(caught.value)


# ---------------------------------------------------------------------------------------
# check_data: what data-prep and validate both refuse, without a tokenizer


def test_check_data_refuses_a_data_check_under_on_violation_fail(tmp_path):
    files = {"train": tsv("a\tpos", "b\tneg"), "validation": tsv("A\tpos", "c\tneg")}
    std = standard(tmp_path, "tsv", CLASS, files, checks={"max_overlap": 0.2, "on_violation": "fail"})
    with pytest.raises(DataError) as caught:
        check_data(std)
    assert str(caught.value).startswith(f"{tmp_path / 'validation.tsv'}: data.checks.max_overlap: 1 of 2 validation examples")


def test_check_data_returns_the_warnings_of_on_violation_warn(tmp_path):
    files = {"train": tsv("a\tpos", "a\tpos", "b\tneg"), "validation": tsv("c\tneg")}
    checked = check_data(standard(tmp_path, "tsv", CLASS, files, checks={"max_duplicates": 0}))
    assert checked.warnings == ["1 of 3 train examples (33.33%) repeat an earlier train example, above data.checks.max_duplicates 0"]


def test_check_data_judges_the_checks_on_the_cut_splits_as_the_report_does(tmp_path):
    files = {"train": tsv("a\tpos", "b\tneg", "c\tpos"), "validation": tsv("d\tneg", "c\tpos")}
    std = standard(tmp_path, "tsv", CLASS, files, max_train_examples=2, checks={"max_overlap": 0, "on_violation": "fail"})
    assert check_data(std).warnings == []  # "c" is in train's file, but not among the examples trained on


def test_check_data_counts_the_corpus_without_keeping_it(tmp_path):
    (tmp_path / "books").mkdir()
    (tmp_path / "books/a.txt").write_text("One.\n\nTwo\r\nlines.\n")
    files = {"train": conll("Bob/B-PER"), "validation": conll("x/O")}
    corpus = {"files": ["books/*.txt"], "held_out_fraction": 0.5}
    std = Standard.model_validate(
        {**standard(tmp_path, "conll", TOKEN, files).model_dump(mode="json", by_alias=True),
         "pretrain": {"enabled": True, "corpus": corpus}},
        context={"base_dir": str(tmp_path)},
    )
    counted = check_data(std)
    assert counted.corpus.files[0]["documents"] == 2 and sum(counted.corpus.documents.values()) == 2
    assert sorted(document for _, _, document in counted.corpus.stream()) == ["One.", "Two lines."]
    assert counted.summary() == ("2 data files, 1 train / 1 validation examples, 3 labels, "
                                 "corpus 1 file, 2 documents (14 characters)")


# ---------------------------------------------------------------------------------------
# Splits


def test_prepare_cuts_validation_and_test_to_max_eval_examples(tmp_path):
    rows = tsv("a\t0", "b\t1", "c\t0")
    std = standard(tmp_path, "tsv", CLASS, {"train": rows, "validation": rows, "test": rows}, max_eval_examples=2)
    assert {split: len(records) for split, records in prepare(std).splits.items()} == {
        "train": 3, "validation": 2, "test": 2
    }


def test_prepare_has_no_test_split_when_none_is_set(tmp_path):
    std = standard(tmp_path, "tsv", CLASS, {"train": tsv("a\t0", "c\t1"), "validation": tsv("b\t0")})
    assert set(prepare(std).splits) == {"train", "validation"}


def test_prepare_reads_a_standard_file(tmp_path):
    (tmp_path / "train.tsv").write_text(tsv("a\t0", "b\t1"))
    (tmp_path / "standard.yaml").write_text(
        "name: t\ntask: sequence-classification\nmodel: {base: minilm-l6}\n"
        "data: {format: tsv, train: train.tsv, validation: train.tsv}\n"
    )
    assert prepare(load_standard(tmp_path / "standard.yaml")).splits["validation"][1]["text"] == "b"


# ---------------------------------------------------------------------------------------
# Fingerprint


def test_fingerprint_is_the_same_for_the_same_data_in_another_folder(tmp_path):
    files = {"train": tsv("a\t0"), "validation": tsv("b\t1")}
    here = standard(tmp_path / "here", "tsv", CLASS, files)
    there = standard(tmp_path / "elsewhere/there", "tsv", CLASS, files)
    assert there.data.train.path != here.data.train.path
    assert fingerprint(there.data) == fingerprint(here.data)


def test_fingerprint_changes_with_one_byte_of_data(tmp_path):
    before = fingerprint(standard(tmp_path, "tsv", CLASS, {"train": tsv("a\t0"), "validation": tsv("b\t1")}).data)
    after = fingerprint(standard(tmp_path, "tsv", CLASS, {"train": tsv("a\t1"), "validation": tsv("b\t1")}).data)
    assert before != after


@pytest.mark.parametrize(
    "option",
    [{"encoding": "latin-1"}, {"quoting": True}, {"max_train_examples": 1}, {"max_length": 256}, {"label_subwords": "all"}],
)
def test_fingerprint_changes_with_a_reader_option(tmp_path, option):
    files = {"train": tsv("a\t0"), "validation": tsv("b\t1")}
    assert fingerprint(standard(tmp_path, "tsv", CLASS, files, **option).data) != fingerprint(
        standard(tmp_path, "tsv", CLASS, files).data
    )


# ---------------------------------------------------------------------------------------
# Save / load


def test_save_then_load_gives_back_the_same_prepared_data(tmp_path):
    std = standard(tmp_path / "src", "conll", TOKEN, {"train": conll("Bob/B-PER"), "validation": conll("x/O")})
    prepared = prepare(std)
    save(prepared, tmp_path / "out")
    assert load(tmp_path / "out") == prepared


def test_save_writes_a_summary_with_counts(tmp_path):
    std = standard(tmp_path / "src", "tsv", CLASS, {"train": tsv("a\t0", "b\t1", "c\t1"), "validation": tsv("d\t1")})
    prepared = prepare(std)
    save(prepared, tmp_path / "out")
    assert json.loads((tmp_path / "out/summary.json").read_text()) == {
        "task": CLASS,
        "fingerprint": prepared.fingerprint,
        "sources": {"train": str(tmp_path / "src" / "train.tsv"), "validation": str(tmp_path / "src" / "validation.tsv")},
        "examples": {"train": 3, "validation": 1},
        "label_counts": {"train": {"0": 1, "1": 2}, "validation": {"1": 1}},
    }


def test_summary_counts_entity_mentions_for_token_data(tmp_path):
    prepared = PreparedData(TOKEN, ["O"], {"train": [{"tokens": list("abc"), "tags": ["B-PER", "I-PER", "B-LOC"], "line": 1}]}, "f")
    save(prepared, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["label_counts"] == {"train": {"LOC": 1, "PER": 1}}


def test_load_of_a_folder_without_prepared_data_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="run the prepare stage first"):
        load(tmp_path)


def test_summary_counts_an_entity_that_begins_with_a_stray_i_tag_as_the_data_report_and_seqeval_do(tmp_path):
    from seqeval.metrics.sequence_labeling import get_entities

    from nlpstd.data import report as data_report

    # Strays: I-PER after O, I-LOC after PER. seqeval (and training, through begin_strays) begin an entity at each.
    records = [{"tokens": list("abcdef"), "tags": ["I-PER", "O", "I-PER", "I-LOC", "B-LOC", "I-LOC"], "line": 1}]
    save(PreparedData(TOKEN, ["O"], {"train": records}, "f"), tmp_path)
    counts = json.loads((tmp_path / "summary.json").read_text())["label_counts"]["train"]
    assert counts == {"LOC": 2, "PER": 2} == data_report.label_counts(records)
    assert sum(counts.values()) == len(get_entities(records[0]["tags"]))
