"""Readers: one data file in, plain JSON-serialisable records out, bad input rejected by line.

Every record keeps the 1-based line it came from, so later checks (unknown labels, sub-word
alignment) can still point a user at the row to fix. One module per layout: `conll`, `tables`
(TSV, CSV), `jsonl`; `textfile` reads and decodes the lines they all start from. Record shapes:

- CoNLL: `{"tokens": [...], "tags": [...], "line": L}` (L = line of the first token)
- TSV/CSV/JSONL classification: `{"text": ..., "label": "<str>", "line": L}` (+ `"text_pair"`)
- JSONL spans: `{"text": ..., "spans": [[start, end_exclusive, label], ...], "line": L}`
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from nlpstd.data.columnar import read_columnar, shown_path
from nlpstd.data.conll import read_conll
from nlpstd.data.hygiene import remove_control_characters
from nlpstd.data.jsonl import class_record, json_objects, span_record
from nlpstd.data.labelmap import apply_label_map
from nlpstd.data.sampling import limit
from nlpstd.data.tables import read_table
from nlpstd.data.textfile import read_lines
from nlpstd.errors import DataError

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import DataSpec


def read_split(data: DataSpec, split: str, task: str, seed: int = 0) -> list[dict]:
    """One split's records, cut to `max_train_examples` / `max_eval_examples` when set."""
    return limit(data, split, read_all(data, split, task), seed)


def apply_limit(data: DataSpec, split: str, records: list[dict], seed: int = 0) -> list[dict]:
    """The records a limit keeps (`data.sample`): see `nlpstd.data.sampling.limit`."""
    return limit(data, split, records, seed)


def read_all(data: DataSpec, split: str, task: str) -> list[dict]:
    """Every record of a split, limits ignored (so a quick run validates what a full run would), with
    numbered labels named (`data.label_map`) and control characters removed when the standard says so."""
    path = shown_path(data.files()[split])
    records = _read(data, split, task, path)
    records = apply_label_map(data, path, task, records)
    if data.control_characters == "remove":
        records = remove_control_characters(records, path)
    return records


def _read(data: DataSpec, split: str, task: str, path: str) -> list[dict]:
    if data.format in ("parquet", "datasets"):
        return read_columnar(data, split, task)
    lines = read_lines(path, data.encoding_of(split))
    if data.format == "conll":
        return read_conll(path, lines, re.compile(data.token_pattern) if data.token_pattern else None, data.conll)
    if data.format in ("tsv", "csv"):
        return read_table(path, lines, data)
    read = span_record if task == "token-classification" else class_record
    records = [read(path, line, obj, data) for line, obj in json_objects(path, lines)]
    if not records:
        raise DataError(path, None, None, "no examples found: the file is empty or holds only blank lines")
    return records
