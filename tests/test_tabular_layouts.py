"""Data layouts beyond one header row and named labels: columns by position, joined text columns,
other delimiters, numbered labels named by data.label_map, Parquet files and Hugging Face datasets."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nlpstd.data.columnar import check_source, content_hash
from nlpstd.data.labelmap import describe
from nlpstd.data.readers import read_split
from nlpstd.errors import DataError
from nlpstd.spec import DataSpec, Standard

TOKEN, CLASS = "token-classification", "sequence-classification"
NEWS = ["World", "Sports", "Business", "Sci/Tech"]


def spec(tmp_path: Path, task: str, **data) -> DataSpec:
    """The data section of a standard in `tmp_path`; validation reads the train source unless given."""
    data = {"validation": data["train"], **data}
    std = {"name": "t", "task": task, "data": data, "model": {"base": "minilm-l6"}}
    return Standard.model_validate(std, context={"base_dir": str(tmp_path)}).data


def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text, encoding="utf-8", newline="")
    return name


def texts_and_labels(records: list[dict]) -> list[tuple[str, str, int]]:
    return [(r["text"], r["label"], r["line"]) for r in records]


def test_headerless_csv_reads_columns_by_position_and_names_numbers_from_a_file(tmp_path):
    write(tmp_path, "labels.txt", "World\nSports\nBusiness\nSci/Tech\n\n")
    train = write(tmp_path, "train.csv", '3,"Stocks rally, again"\n1,Rain in Oslo\n4,New chip\n')
    data = spec(tmp_path, CLASS, format="csv", train=train, header=False, columns=["label", "text"],
                label_map={"file": "labels.txt", "base": 1})
    assert texts_and_labels(read_split(data, "train", CLASS)) == [
        ("Stocks rally, again", "Business", 1), ("Rain in Oslo", "World", 2), ("New chip", "Sci/Tech", 3)]
    assert describe(data.label_map) == {"source": "file", "file": str(tmp_path / "labels.txt"), "base": 1,
                                        "names": {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}}


def test_title_and_body_columns_are_joined_and_an_empty_one_is_left_out(tmp_path):
    train = write(tmp_path, "train.csv", "title,body,label\nBig match,Home side wins,sport\nMarkets fall,,business\n")
    data = spec(tmp_path, CLASS, format="csv", train=train, text_column=["title", "body"], text_separator=". ")
    assert texts_and_labels(read_split(data, "train", CLASS)) == [
        ("Big match. Home side wins", "sport", 2), ("Markets fall", "business", 3)]


def test_a_delimiter_overrides_the_formats_own(tmp_path):
    train = write(tmp_path, "train.csv", "text;label\nfine, really;pos\ndull;neg\n")
    data = spec(tmp_path, CLASS, format="csv", train=train, delimiter=";")
    assert texts_and_labels(read_split(data, "train", CLASS)) == [("fine, really", "pos", 2), ("dull", "neg", 3)]


def test_label_map_by_ids_compares_numbers_as_integers_and_may_merge_them(tmp_path):
    train = write(tmp_path, "train.tsv", "text\tlabel\nawful\t01\nmeh\t2\ngreat\t5\n")
    data = spec(tmp_path, CLASS, format="tsv", train=train, label_map={"ids": {"1": "negative", "2": "negative", "5": "positive"}})
    assert [r["label"] for r in read_split(data, "train", CLASS)] == ["negative", "negative", "positive"]
    assert describe(data.label_map)["names"] == {"1": "negative", "2": "negative", "5": "positive"}


def test_jsonl_span_labels_are_named_by_the_label_map(tmp_path):
    train = write(tmp_path, "train.jsonl", '{"text": "Peter lives in Paris", "entities": [[15, 20, "2"], [0, 5, "1"]]}\n')
    data = spec(tmp_path, TOKEN, format="jsonl", train=train, label_map={"names": ["PER", "LOC"], "base": 1})
    assert read_split(data, "train", TOKEN)[0]["spans"] == [[0, 5, "PER"], [15, 20, "LOC"]]


def test_parquet_classification_reads_columns_by_name_and_maps_numbers(tmp_path):
    table = pa.table({"id": [7, 8], "sentence": ["a fine film", "a dull one"], "label": [1, 0]})
    pq.write_table(table, tmp_path / "train.parquet")
    data = spec(tmp_path, CLASS, format="parquet", train="train.parquet", text_column="sentence",
                label_map={"names": ["negative", "positive"]})
    assert texts_and_labels(read_split(data, "train", CLASS)) == [("a fine film", "positive", 1), ("a dull one", "negative", 2)]


def test_parquet_tokens_and_tags_take_their_names_from_the_class_label(tmp_path):
    from datasets import ClassLabel, Dataset, Features, List, Value

    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=["O", "B-PER", "I-PER", "B-LOC"]))})
    rows = {"tokens": [["Peter", "Smith", "left"], [], ["to", "Oslo"]], "ner_tags": [[1, 2, 0], [], [0, 3]]}
    Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / "train.parquet"))
    data = spec(tmp_path, TOKEN, format="parquet", train="train.parquet", text_column="tokens", label_column="ner_tags")
    assert read_split(data, "train", TOKEN) == [
        {"tokens": ["Peter", "Smith", "left"], "tags": ["B-PER", "I-PER", "O"], "line": 1},
        {"tokens": ["to", "Oslo"], "tags": ["O", "B-LOC"], "line": 3},
    ]


def save_news(folder: Path, test_rows: int = 1) -> None:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=NEWS)})
    train = Dataset.from_dict({"text": ["Stocks rally", "Cup final tonight"], "label": [2, 1]}, features=features)
    test = Dataset.from_dict({"text": ["New chip"] * test_rows, "label": [3] * test_rows}, features=features)
    DatasetDict({"train": train, "test": test}).save_to_disk(str(folder))


def test_datasets_folder_reads_each_split_with_class_label_names(tmp_path):
    save_news(tmp_path / "news")
    data = spec(tmp_path, CLASS, format="datasets", train="news", validation={"path": "news", "split": "test"})
    assert texts_and_labels(read_split(data, "train", CLASS)) == [("Stocks rally", "Business", 1), ("Cup final tonight", "Sports", 2)]
    assert texts_and_labels(read_split(data, "validation", CLASS)) == [("New chip", "Sci/Tech", 1)]


def test_datasets_content_hash_follows_the_rows_not_the_save(tmp_path):
    for name, rows in (("a", 1), ("b", 1), ("c", 2)):
        save_news(tmp_path / name, rows)
    data = spec(tmp_path, CLASS, format="datasets", train="a", validation="b", test="c")
    first, again, more = (content_hash(f) for f in (data.train, data.validation, data.test))
    assert first == again != more
    check_source(data.train)


def test_hub_id_offline_without_a_cache_is_a_located_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = spec(tmp_path, CLASS, format="datasets", train="hf:nlpstd-tests/no-such-dataset")
    with pytest.raises(DataError) as caught:
        read_split(data, "train", CLASS)
    assert str(caught.value).startswith("hf:nlpstd-tests/no-such-dataset: ")
    assert "the hub cannot be reached offline" in str(caught.value)


def test_the_label_names_reach_the_data_report_and_the_prepared_label_set(tmp_path):
    import json

    from nlpstd.spec import load_standard
    from nlpstd.stages import data_prep

    write(tmp_path, "labels.txt", "negative\npositive\n")
    rows = "".join(f"{i % 2 + 1},review number {i} was {'good' if i % 2 else 'bad'}\n" for i in range(12))
    write(tmp_path, "train.csv", rows)
    write(tmp_path, "standard.yaml", "name: named\ntask: sequence-classification\nmodel: {base: minilm-l6}\n"
          "data:\n  format: csv\n  train: train.csv\n  header: false\n  columns: [label, text]\n"
          "  split_from_train: {validation: 0.25}\n  label_map: {file: labels.txt, base: 1}\n")
    data_prep.run(load_standard(tmp_path / "standard.yaml"), tmp_path / "out")

    assert json.loads((tmp_path / "out" / "labels.json").read_text()) == ["negative", "positive"]  # the model's id2label
    report = (tmp_path / "out" / "data_report.md").read_text()
    assert "## Label names" in report and "| 1 | negative |" in report and "| 2 | positive |" in report
    assert "## Splits cut from train" in report
