"""Bad input in the data layouts of `tabular_layouts`: headerless and joined TSV/CSV columns, label
maps, Parquet files and Hugging Face datasets (see each case's id)."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.bad_input.case import CLASS, CSV, CSV_FILES, SPANS, SPANS_FILES, STANDARD, TOKEN, Case, edited, run_standard


def case(id: str, standard: str, files: dict, file: str, line: int | None, field: str | None, message: str, **more) -> Case:
    return Case(id, **run_standard(standard, files, file=file, line=line, field=field, message=message), **more)


def with_data(standard: str, *settings: str) -> str:
    """`standard` with more lines in its data section."""
    return edited(standard, "model:\n", "".join(f"  {setting}\n" for setting in settings) + "model:\n")


def parquet(**columns: list) -> bytes:
    """A Parquet file of `columns`, as bytes."""
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


HEADERLESS = with_data(CSV, "header: false", "columns: [label, text]")
HEADERLESS_FILES = {"train.csv": "pos,great film\nneg,dull plot\n", "dev.csv": "pos,fine acting\nneg,boring\n"}
NUMBERED = with_data(HEADERLESS, "label_map: {names: [neg, pos]}")
NUMBERED_FILES = {"train.csv": "1,great film\n0,dull plot\n", "dev.csv": "1,fine acting\n0,boring\n"}
NAMES_FILE = with_data(HEADERLESS, "label_map: {file: labels.txt}")
NAMES_FILE_FILES = {**NUMBERED_FILES, "labels.txt": "neg\npos\n"}
NUMBERED_SPANS = with_data(SPANS, "label_map: {names: [PER, LOC], base: 1}")
NUMBERED_SPANS_FILES = {name: text.replace('"PER"', '"1"').replace('"LOC"', '"2"') for name, text in SPANS_FILES.items()}

PARQUET = STANDARD.format(task=CLASS, format="parquet", train="train.parquet", validation="dev.parquet")
PARQUET_FILES = {"train.parquet": parquet(text=["great film", "dull plot"], label=["pos", "neg"]),
                 "dev.parquet": parquet(text=["fine acting", "boring"], label=["pos", "neg"])}
TAGGED = with_data(STANDARD.format(task=TOKEN, format="parquet", train="train.parquet", validation="train.parquet"),
                   "text_column: tokens", "label_column: ner_tags")

DATASETS = STANDARD.format(task=CLASS, format="datasets", train="news", validation="news")


def save_news(inputs: Path) -> None:
    """A DatasetDict folder `news` with a train split only (saved without a progress bar on stderr)."""
    import datasets
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    train = Dataset.from_dict({"text": ["great film", "dull plot"], "label": [1, 0]}, features=features)
    shown = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        DatasetDict({"train": train}).save_to_disk(str(inputs / "news"))
    finally:
        if shown:
            datasets.enable_progress_bars()


CASES = [
    # -- TSV / CSV by position, joined columns, delimiters
    case("csv-headerless-wrong-column-count", HEADERLESS, {**HEADERLESS_FILES, "train.csv": "pos,great film\nneg,dull,plot\n"},
         "train.csv", 2, "columns", "wrong column count: expected 2 fields like data.columns, got 3"),
    case("csv-header-not-matching-columns", with_data(CSV, "columns: [text, label]"),
         {**CSV_FILES, "train.csv": "sentence,label\ngreat film,pos\ndull plot,neg\n"},
         "train.csv", 1, "columns", "the header row names the columns 'sentence', 'label', data.columns 'text', 'label'"),
    case("csv-headerless-text-column-not-in-columns", with_data(CSV, "header: false", "columns: [label, sentence]"),
         HEADERLESS_FILES, "standard.yaml", 3, "data.text_column", "'text' is not one of data.columns (label, sentence)"),
    case("csv-joined-text-columns-all-empty", with_data(CSV, "text_column: [title, body]"),
         {**CSV_FILES, "train.csv": "title,body,label\nBig match,Home wins,pos\n , ,neg\n"},
         "train.csv", 3, "title+body", "empty text"),
    case("csv-delimiter-not-in-the-file", with_data(CSV, "delimiter: ';'"), CSV_FILES,
         "train.csv", 1, "text", "no such column in the header (columns: 'text,label')"),
    # -- label maps
    case("csv-label-number-not-in-the-map", NUMBERED, {**NUMBERED_FILES, "dev.csv": "1,fine acting\n7,boring\n"},
         "dev.csv", 2, "label", "7 is not in data.label_map (numbers 0-1)"),
    case("csv-label-not-a-number-for-the-map", NUMBERED, {**NUMBERED_FILES, "train.csv": "1,great film\nneg,dull plot\n"},
         "train.csv", 2, "label", "neg is not in data.label_map (numbers 0-1)"),
    case("label-map-file-missing", NAMES_FILE, NUMBERED_FILES,
         "labels.txt", None, "label_map", "cannot read the file"),
    case("label-map-file-names-a-label-twice", NAMES_FILE, {**NAMES_FILE_FILES, "labels.txt": "neg\npos\nneg\n"},
         "labels.txt", 3, "label_map", "'neg' is listed already (line 1)"),
    case("label-map-file-blank-line-among-names", NAMES_FILE, {**NAMES_FILE_FILES, "labels.txt": "neg\n\npos\n"},
         "labels.txt", 2, "label_map", "blank line among the names"),
    case("label-map-ids-number-not-in-the-map", with_data(HEADERLESS, "label_map: {ids: {'1': neg, '01': pos}}"),
         NUMBERED_FILES, "train.csv", None, "label_map.ids", "'01' is number 1 again"),
    case("spans-label-number-not-in-the-map", NUMBERED_SPANS,
         {**NUMBERED_SPANS_FILES, "dev.jsonl": '{"text": "Paris waits", "entities": [{"start": 0, "end": 5, "label": "3"}]}\n'},
         "dev.jsonl", 1, "entities", "3 is not in data.label_map (numbers 1-2)"),
    # -- Parquet
    case("parquet-not-a-parquet-file", PARQUET, {**PARQUET_FILES, "train.parquet": "text,label\ngreat film,pos\n"},
         "train.parquet", None, "format", "not a readable Parquet file"),
    case("parquet-missing-text-column", PARQUET,
         {**PARQUET_FILES, "train.parquet": parquet(sentence=["great film"], label=["pos"])},
         "train.parquet", None, "text", "no such column (columns: 'sentence', 'label'); set data.text_column"),
    case("parquet-label-of-a-wrong-type", PARQUET, {**PARQUET_FILES, "dev.parquet": parquet(text=["fine", "boring"], label=[1.0, 0.5])},
         "dev.parquet", 1, "label", "a label is a string, integer or boolean, got 1.0"),
    case("parquet-null-text", PARQUET, {**PARQUET_FILES, "train.parquet": parquet(text=["great film", None], label=["pos", "neg"])},
         "train.parquet", 2, "text", "must be a string, got null"),
    case("parquet-tags-not-iob2", TAGGED, {"train.parquet": parquet(tokens=[["Peter", "left"]], ner_tags=[["PER", "O"]])},
         "train.parquet", 1, "ner_tags[0]", "'PER' is not an IOB2 tag"),
    case("parquet-fewer-tags-than-tokens", TAGGED, {"train.parquet": parquet(tokens=[["Peter", "left"]], ner_tags=[["B-PER"]])},
         "train.parquet", 1, "ner_tags", "1 tags for 2 tokens"),
    case("parquet-numbered-tags-without-names", TAGGED, {"train.parquet": parquet(tokens=[["Peter", "left"]], ner_tags=[[1, 0]])},
         "train.parquet", 1, "ner_tags[0]", "the column has no ClassLabel names: name the tags with data.label_map"),
    # -- Hugging Face datasets (a folder written by save_to_disk, a hub id)
    case("datasets-folder-without-the-split", DATASETS, {}, "news", None, "split",
         "no split 'validation' in the dataset (splits: train); set data.validation.split", setup=save_news),
    case("datasets-hub-id-offline", edited(DATASETS, "train: news\n  validation: news\n",
                                           "train: hf:nlpstd-tests/no-such-dataset\n  validation: hf:nlpstd-tests/no-such-dataset\n"),
         # a hub id is no file path (its `hf:` holds the colon a path may not), so the whole line is matched
         {}, None, None, None, "hf:nlpstd-tests/no-such-dataset: not in the local Hugging Face cache, and HF_HUB_OFFLINE is "
                               "set: the hub cannot be reached offline"),
]
