"""Parquet files and Hugging Face datasets, read into the same records as the text formats.

`format: parquet` reads a split's file with pyarrow; `format: datasets` reads a folder written by
`Dataset.save_to_disk` / `DatasetDict.save_to_disk`, or a hub id `hf:NAME` (`DataFile.subset` is its
configuration) through `datasets.load_dataset`, which honours HF_HUB_OFFLINE. A row's number (1-based)
stands for its line in every error and record. Columns are found by name:

- sequence classification: `text_column` (a string column, or several joined with `text_separator`),
  `label_column` (strings, integers or booleans), optional `text_pair_column`.
- token classification, tokens and tags (HF conll2003, wnut_17): `text_column` is a list-of-strings
  column (`tokens`), `label_column` a list column of IOB2 tags (`ner_tags`), as strings or as numbers.
- token classification, text and spans: `text_column` is a string column, `entities_field` a list of
  `{start, end, label}` structs, checked as JSON Lines spans are.

A number that stands for a label is named by the column's ClassLabel names (kept by `datasets`, also in
the metadata of a Parquet file it writes), unless `data.label_map` is set: the standard's map wins.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nlpstd.data.jsonl import span_record
from nlpstd.data.labelmap import NumberedNames, load_names
from nlpstd.data.tables import joined_text, wanted_columns
from nlpstd.data.textfile import regular_file, valid_text
from nlpstd.errors import DataError
from nlpstd.hashing import sha256_file, sha256_json, sha256_text

if TYPE_CHECKING:
    import pyarrow as pa

    from nlpstd.spec import DataSpec
    from nlpstd.spec.schema import DataFile

_HUB = re.compile(r"(?:^|/)hf:(?P<name>[^:]+)$")
_IOB2 = re.compile(r"O|[BI]-\S+")  # the tags a CoNLL file holds once read
_TRUE = ("1", "on", "yes", "true")  # how huggingface_hub reads HF_HUB_OFFLINE


def hub_name(path: str) -> str | None:
    """The dataset id of a hub path `hf:NAME`; also when a loader joined it to the standard's folder."""
    found = _HUB.search(path)
    return found["name"] if found else None


def shown_path(data_file: DataFile) -> str:
    """The path errors name: a hub id as written (`hf:NAME`), a folder or file as it is."""
    name = hub_name(data_file.path)
    return f"hf:{name}" if name else data_file.path


def read_columnar(data: DataSpec, split: str, task: str) -> list[dict]:
    """Every record of a split of a Parquet file or a Hugging Face dataset."""
    data_file = data.files()[split]
    path = shown_path(data_file)
    table, features = _parquet(path) if data.format == "parquet" else _split_of(data_file, split)
    if table.num_rows == 0:
        raise DataError(path, None, None, "no examples found: the split has no rows")
    if task != "token-classification":
        return _class_records(path, table, features, data)
    if _is_list(table, data.text_column):
        return _token_records(path, table, features, data)
    return _span_records(path, table, features, data)


# ---------------------------------------------------------------------------------------
# Sources


def _parquet(path: str) -> tuple[pa.Table, dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(regular_file(path))
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, None, "format", f"not a readable Parquet file: {exc}") from None
    return table, _features_of(table.schema)


def _features_of(schema: pa.Schema) -> dict:
    """The `datasets` features a Parquet file's metadata records (ClassLabel names among them); none
    for a file written without them, whose numbers then need data.label_map."""
    from datasets import Features

    try:
        return dict(Features.from_arrow_schema(schema))
    except (ValueError, TypeError, KeyError):
        return {}


def _split_of(data_file: DataFile, split: str) -> tuple[pa.Table, dict]:
    """The rows and features of the split a `datasets` source names (`DataFile.split`, or this split's name)."""
    from datasets import DatasetDict

    path, name = shown_path(data_file), data_file.split or split
    loaded = load_source(data_file)
    if isinstance(loaded, DatasetDict):
        if name not in loaded:
            raise DataError(path, None, "split", f"no split {name!r} in the dataset (splits: {', '.join(loaded)}); "
                                                 f"set data.{split}.split")
        loaded = loaded[name]
    return loaded.with_format("arrow")[:], dict(loaded.features)


def load_source(data_file: DataFile) -> Any:
    """The `Dataset` or `DatasetDict` of a `save_to_disk` folder or a hub id, without progress bars."""
    check_source(data_file)
    name = hub_name(data_file.path)
    with _quiet():
        return _from_disk(data_file.path) if name is None else _from_hub(name, data_file.subset)


def check_source(data_file: DataFile) -> None:
    """Refuses what `format: datasets` cannot read, before any is read: it takes a hub id `hf:NAME` or
    a local folder that `save_to_disk` wrote (one with dataset_dict.json or state.json)."""
    path = data_file.path
    if hub_name(path) is not None:
        return
    if path.startswith("s3://"):
        raise DataError(path, None, None, "format datasets reads a local folder or a hub id (hf:NAME); copy the folder here first")
    if not os.path.isdir(path):
        what = "no such folder" if not os.path.exists(path) else "a file, not a folder"
        raise DataError(path, None, None, f"{what}: format datasets reads a folder written by save_to_disk, or a hub id (hf:NAME)")
    if not any(os.path.isfile(os.path.join(path, name)) for name in ("dataset_dict.json", "state.json")):
        raise DataError(path, None, None, "not a folder written by save_to_disk (it has no dataset_dict.json or state.json)")


def _from_disk(path: str) -> Any:
    from datasets import load_from_disk

    try:
        return load_from_disk(path)
    except (OSError, ValueError) as exc:
        raise DataError(path, None, None, f"cannot load the dataset folder: {exc}") from None


def _from_hub(name: str, subset: str | None) -> Any:
    from datasets import load_dataset

    try:
        return load_dataset(name, subset)
    except (OSError, ValueError) as exc:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE:
            raise DataError(f"hf:{name}", None, None, "not in the local Hugging Face cache, and HF_HUB_OFFLINE is set: the hub "
                                                      "cannot be reached offline (load it once online, or save it with "
                                                      "save_to_disk and name the folder)") from None
        raise DataError(f"hf:{name}", None, None, f"cannot load the dataset from the hub: {exc}") from None


@contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars while loading: an error or a log line stays the only output."""
    import datasets

    shown = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if shown:
            datasets.enable_progress_bars()


# ---------------------------------------------------------------------------------------
# Records


def _column(path: str, table: pa.Table, name: str, key: str) -> list:
    if name not in table.column_names:
        columns = ", ".join(repr(c) for c in table.column_names)
        raise DataError(path, None, name, f"no such column (columns: {columns}); set data.{key}")
    return table.column(name).to_pylist()


def _is_list(table: pa.Table, name: str) -> bool:
    import pyarrow as pa

    if name not in table.column_names:
        return False
    kind = table.schema.field(name).type
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _shown(value: Any) -> str:
    """A value for an error line: null, or its start, however long it is."""
    shown = "null" if value is None else repr(value)
    return shown if len(shown) <= 60 else f"{shown[:57]}..."


def _class_names(feature: Any) -> list[str] | None:
    """A ClassLabel's names, of a column or of the items of a list column."""
    from datasets import ClassLabel

    feature = getattr(feature, "feature", feature)  # List(ClassLabel) / Sequence(ClassLabel)
    return list(feature.names) if isinstance(feature, ClassLabel) else None


def _class_records(path: str, table: pa.Table, features: dict, data: DataSpec) -> list[dict]:
    columns = {key: [(name, _column(path, table, name, f"{key}_column")) for name in names]
               for key, names in wanted_columns(data).items()}
    names = None if data.label_map is not None else _class_names(features.get(data.label_column))
    records = []
    for row in range(table.num_rows):
        line = row + 1
        record = {key: _text(path, line, [(name, values[row]) for name, values in cells], data.text_separator, key)
                  for key, cells in columns.items() if key != "label"}
        record["label"] = _label(path, line, data.label_column, columns["label"][0][1][row], names)
        records.append({**record, "line": line})
    return records


def _text(path: str, line: int, cells: list[tuple[str, Any]], separator: str, key: str) -> str:
    for name, value in cells:
        if not isinstance(value, str):
            raise DataError(path, line, name, f"must be a string, got {_shown(value)}")
    return joined_text(path, line, cells, separator, key)


def _label(path: str, line: int, field: str, value: Any, names: list[str] | None) -> str:
    """A label as a string: a ClassLabel number named, any other number as written (data.label_map names it)."""
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "true" if value else "false"
    if isinstance(value, int):
        return _class_name(path, line, field, value, names) if names is not None else str(value)
    if not isinstance(value, str):
        raise DataError(path, line, field, f"a label is a string, integer or boolean, got {_shown(value)}")
    label = valid_text(path, line, field, value).strip()
    if not label:
        raise DataError(path, line, field, "empty label")
    return label


def _class_name(path: str, line: int, field: str, value: int, names: list[str]) -> str:
    if 0 <= value < len(names):
        return names[value]
    why = " (-1 marks a row without a label, as in a test split the hub keeps unlabelled)" if value == -1 else ""
    raise DataError(path, line, field, f"{value} is not a class of the column's ClassLabel (0-{len(names) - 1}){why}")


def _token_records(path: str, table: pa.Table, features: dict, data: DataSpec) -> list[dict]:
    """Tokens and tags per row; a row without tokens is skipped, as a blank line is in CoNLL."""
    tokens_column, tags_column = data.text_column, data.label_column
    assert isinstance(tokens_column, str)  # the rules allow one text column for token classification
    all_tokens = _column(path, table, tokens_column, "text_column")
    all_tags = _column(path, table, tags_column, "label_column")
    numbered = load_names(data.label_map, path) if data.label_map is not None else None
    names = None if numbered is not None else _class_names(features.get(tags_column))
    records = []
    for row, (tokens, tags) in enumerate(zip(all_tokens, all_tags)):
        line = row + 1
        for name, values in ((tokens_column, tokens), (tags_column, tags)):
            if not isinstance(values, list):
                raise DataError(path, line, name, f"must be a list, got {_shown(values)}")
        if not tokens and not tags:
            continue
        if len(tokens) != len(tags):
            raise DataError(path, line, tags_column, f"{len(tags)} tags for {len(tokens)} tokens")
        words = [_token(path, line, f"{tokens_column}[{i}]", token) for i, token in enumerate(tokens)]
        named = [_tag(path, line, f"{tags_column}[{i}]", tag, names, numbered) for i, tag in enumerate(tags)]
        records.append({"tokens": words, "tags": named, "line": line})
    if not records:
        raise DataError(path, None, None, "no examples found: every row has no tokens")
    return records


def _token(path: str, line: int, field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise DataError(path, line, field, f"a token is a string, got {_shown(value)}")
    if not value.strip():
        raise DataError(path, line, field, "empty token")
    return valid_text(path, line, field, value)


def _tag(path: str, line: int, field: str, value: Any, names: list[str] | None, numbered: NumberedNames | None) -> str:
    """An IOB2 tag, named by data.label_map or the column's ClassLabel when written as a number."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DataError(path, line, field, f"a tag is a string or an integer, got {_shown(value)}")
    if numbered is not None:
        tag = numbered.name(path, line, field, str(value))
    elif isinstance(value, int):
        if names is None:
            raise DataError(path, line, field, f"{value} is a number, and the column has no ClassLabel names: name the tags with data.label_map")
        tag = _class_name(path, line, field, value, names)
    else:
        tag = valid_text(path, line, field, value).strip()
    if not _IOB2.fullmatch(tag):
        raise DataError(path, line, field, f"{tag!r} is not an IOB2 tag (O, B-TYPE or I-TYPE)")
    return tag


def _span_records(path: str, table: pa.Table, features: dict, data: DataSpec) -> list[dict]:
    """Text and entity spans per row, checked as JSON Lines spans are (`jsonl.span_record`)."""
    text_column = data.text_column
    assert isinstance(text_column, str)  # the rules allow one text column for token classification
    texts = _column(path, table, text_column, "text_column")
    entities = _column(path, table, data.entities_field, "entities_field")
    feature = getattr(features.get(data.entities_field), "feature", None)
    names = _class_names(feature.get("label")) if isinstance(feature, dict) and data.label_map is None else None
    records = []
    for row, (text, spans) in enumerate(zip(texts, entities)):
        obj = {text_column: text, data.entities_field: _labels_as_text(spans, names)}
        records.append(span_record(path, row + 1, obj, data))
    return records


def _labels_as_text(spans: Any, names: list[str] | None) -> Any:
    """Spans whose numbered labels are written as strings (named when the ClassLabel says how), as
    the span reader takes them; anything malformed is left for it to report."""
    if not isinstance(spans, list):
        return spans
    fixed = []
    for span in spans:
        label = span.get("label") if isinstance(span, dict) else None
        if isinstance(label, int) and not isinstance(label, bool):
            label = names[label] if names is not None and 0 <= label < len(names) else str(label)
            span = {**span, "label": label}
        fixed.append(span)
    return fixed


# ---------------------------------------------------------------------------------------
# Fingerprint


def content_hash(data_file: DataFile) -> str:
    """sha256 of what a split is read from: a file's bytes; for a `save_to_disk` folder or a hub id, the
    Arrow files the dataset is made of (each split, in order) and its features. The folder's state.json
    is left out: its `_fingerprint` may differ between two saves of the same rows."""
    if hub_name(data_file.path) is None and not os.path.isdir(data_file.path):
        return sha256_file(regular_file(data_file.path))
    from datasets import DatasetDict

    loaded = load_source(data_file)
    parts = loaded.items() if isinstance(loaded, DatasetDict) else [("", loaded)]
    lines = []
    for split, dataset in sorted(parts):
        files = sorted((entry["filename"] for entry in dataset.cache_files), key=os.path.basename)
        hashes = ",".join(sha256_file(name) for name in files)
        lines.append(f"{split}:{hashes}:{sha256_json(dataset.features.to_dict())}\n")
    return sha256_text("".join(lines))
