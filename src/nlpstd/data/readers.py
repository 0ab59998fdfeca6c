"""Readers: one data file in, plain JSON-serialisable records out, bad input rejected by line.

Every record keeps the 1-based line it came from, so later checks (unknown labels, sub-word
alignment) can still point a user at the row to fix. Record shapes:

- CoNLL: `{"tokens": [...], "tags": [...], "line": L}` (L = line of the first token)
- TSV/CSV/JSONL classification: `{"text": ..., "label": "<str>", "line": L}` (+ `"text_pair"`)
- JSONL spans: `{"text": ..., "spans": [[start, end_exclusive, label], ...], "line": L}`
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlpstd.errors import DataError

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import DataSpec

_IOB2 = re.compile(r"O|[BI]-\S+")
_SPACES = re.compile(r"[ \t]+")


def read_split(data: DataSpec, split: str, task: str) -> list[dict]:
    """One split's records, cut to `max_train_examples` / `max_eval_examples` when set."""
    return apply_limit(data, split, read_all(data, split, task))


def apply_limit(data: DataSpec, split: str, records: list[dict]) -> list[dict]:
    """The first `max_train_examples` (train) or `max_eval_examples` (validation/test) records."""
    limit = data.max_train_examples if split == "train" else data.max_eval_examples
    return records[:limit] if limit else records


def read_all(data: DataSpec, split: str, task: str) -> list[dict]:
    """Every record of a split, limits ignored (so a quick run validates what a full run would)."""
    path = data.files()[split].path
    text = read_text(path, data.encoding_of(split))
    if data.format == "conll":
        records = _conll(path, text)
    elif data.format in ("tsv", "csv"):
        records = _table(path, text, data)
    elif task == "token-classification":
        records = [_span_record(path, line, obj, data) for line, obj in _json_objects(path, text)]
    else:
        records = [_class_record(path, line, obj, data) for line, obj in _json_objects(path, text)]
    if not records:
        raise DataError(path, None, None, "no examples found")
    return records


def read_bytes(path: str) -> bytes:
    """The file's bytes (an s3:// object through the local cache); unreadable files become errors a user can act on."""
    from nlpstd import storage

    try:
        return (storage.fetch(path) if storage.is_remote(path) else Path(path)).read_bytes()
    except OSError as exc:
        raise DataError(path, None, None, f"cannot read the file: {exc.strerror or exc}") from None


def read_text(path: str, encoding: str) -> str:
    """The decoded file; a byte the encoding rejects becomes an error on that byte's line."""
    raw = read_bytes(path)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            path, line, "encoding",
            f"byte 0x{raw[exc.start]:02x} is not valid {encoding}; "
            "set `encoding:` for this file in the standard (e.g. encoding: latin-1)",
        ) from None
    return text.removeprefix("\ufeff")  # a UTF-8 BOM would otherwise stick to the first token/column


# ---------------------------------------------------------------------------------------
# CoNLL


def _conll(path: str, text: str) -> list[dict]:
    """`TOKEN ... TAG` lines; a blank (or whitespace-only) line ends a sentence."""
    records: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []
    width: tuple[int, int] | None = None  # (fields per token line, line that set it)
    # A blank line after the last one flushes the final sentence like any other.
    for number, line in enumerate(text.split("\n") + [""], start=1):
        fields = _SPACES.split(line.strip(" \t\r")) if line.strip() else []
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                records.append({"tokens": tokens, "tags": tags, "line": number - len(tokens)})
                tokens, tags = [], []
            continue
        if len(fields) < 2:
            raise DataError(path, number, "columns", f"a token line needs at least 2 fields (token ... tag), got {len(fields)}")
        width = width or (len(fields), number)
        if len(fields) != width[0]:
            raise DataError(path, number, "columns", f"wrong column count: expected {width[0]} fields like line {width[1]}, got {len(fields)}")
        if not _IOB2.fullmatch(fields[-1]):
            raise DataError(path, number, "tag", f"{fields[-1]!r} is not an IOB2 tag (O, B-TYPE or I-TYPE)")
        tokens.append(fields[0])
        tags.append(fields[-1])
    return records


# ---------------------------------------------------------------------------------------
# TSV / CSV


def _table(path: str, text: str, data: DataSpec) -> list[dict]:
    """A header row, then one example per row; columns are found by name, in any order."""
    rows = _rows(path, text, data)
    while rows and not "".join(rows[-1][1]).strip():
        rows.pop()
    if not rows:
        return []
    header = [name.strip() for name in rows[0][1]]
    wanted = {"text": data.text_column, "label": data.label_column}
    if data.text_pair_column:
        wanted["text_pair"] = data.text_pair_column
    for key, name in wanted.items():
        if name not in header:
            columns = ", ".join(repr(c) for c in header)
            raise DataError(path, 1, name, f"no such column in the header (columns: {columns}); set data.{key}_column")
    index = {key: header.index(name) for key, name in wanted.items()}

    records = []
    for line, row in rows[1:]:
        if not row:
            raise DataError(path, line, "columns", "blank line inside the table (only trailing blank lines are allowed)")
        if len(row) != len(header):
            raise DataError(path, line, "columns", f"wrong column count: expected {len(header)} fields like the header, got {len(row)}")
        record: dict[str, Any] = {}
        for key, column in index.items():
            record[key] = row[column].strip()
            if not record[key]:
                raise DataError(path, line, wanted[key], f"empty {key.replace('_', ' ')}")
        records.append({**record, "line": line})
    return records


def _rows(path: str, text: str, data: DataSpec) -> list[tuple[int, list[str]]]:
    """(first line, fields) of every row; quoted fields may span lines, so lines are tracked."""
    quoting = data.quoting if data.quoting is not None else data.format == "csv"
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter="\t" if data.format == "tsv" else ",",
        quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE,
        strict=True,
    )
    rows, line = [], 1
    try:
        for row in reader:
            rows.append((line, row))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(path, line, "columns", f"malformed {data.format.upper()} row: {exc} (check its quotes, or set data.quoting)") from None
    return rows


# ---------------------------------------------------------------------------------------
# JSON Lines


def _json_objects(path: str, text: str) -> Iterator[tuple[int, dict]]:
    """(line, object) for every non-blank line."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, number, "json", f"invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(path, number, "json", f"expected one JSON object per line, got {type(obj).__name__}")
        yield number, obj


def _text(path: str, line: int, obj: dict, field: str) -> str:
    if field not in obj:
        raise DataError(path, line, field, "missing field")
    value = obj[field]
    if not isinstance(value, str):
        raise DataError(path, line, field, f"must be a string, got {value!r}")
    if not value.strip():
        raise DataError(path, line, field, "empty text")
    return value


def _class_record(path: str, line: int, obj: dict, data: DataSpec) -> dict:
    record: dict[str, Any] = {"text": _text(path, line, obj, data.text_column).strip()}
    field = data.label_column
    if field not in obj:
        raise DataError(path, line, field, "missing field")
    label = obj[field]
    if isinstance(label, bool):  # before int: bool is an int in Python
        label = "true" if label else "false"
    elif isinstance(label, (str, int)):
        label = str(label).strip()
    else:
        raise DataError(path, line, field, f"a label is a string, integer or boolean, got {label!r}")
    if not label:
        raise DataError(path, line, field, "empty label")
    record["label"] = label
    if data.text_pair_column:
        record["text_pair"] = _text(path, line, obj, data.text_pair_column).strip()
    return {**record, "line": line}


def _span_record(path: str, line: int, obj: dict, data: DataSpec) -> dict:
    """Character spans, normalised to exclusive ends, sorted, and checked not to overlap."""
    text = _text(path, line, obj, data.text_column)
    field = data.entities_field
    if field not in obj:
        raise DataError(path, line, field, "missing field")
    if not isinstance(obj[field], list):
        raise DataError(path, line, field, f"must be a list of spans, got {obj[field]!r}")
    spans = sorted(
        (*_span(path, line, f"{field}[{i}]", item, len(text), data.span_end), i)
        for i, item in enumerate(obj[field])
    )
    for (start0, end0, _, i0), (start1, _, _, i1) in zip(spans, spans[1:]):
        if start1 < end0:
            raise DataError(path, line, f"{field}[{i1}]", f"overlaps {field}[{i0}] (characters {start0}-{end0})")
    return {"text": text, "spans": [[start, end, label] for start, end, label, _ in spans], "line": line}


def _span(path: str, line: int, where: str, item: Any, length: int, span_end: str) -> tuple[int, int, str]:
    """One span as (start, exclusive end, label)."""
    if isinstance(item, dict):
        for key in ("start", "end", "label"):
            if key not in item:
                raise DataError(path, line, f"{where}.{key}", "missing field")
        start, end, label = item["start"], item["end"], item["label"]
    elif isinstance(item, list) and len(item) == 3:
        start, end, label = item
    else:
        raise DataError(path, line, where, f"a span is {{start, end, label}} or [start, end, label], got {item!r}")
    for key, value in (("start", start), ("end", end)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise DataError(path, line, f"{where}.{key}", f"must be an integer, got {value!r}")
    stop = end + 1 if span_end == "inclusive" else end
    if start < 0:
        raise DataError(path, line, f"{where}.start", f"must be >= 0, got {start}")
    if stop > length:
        raise DataError(path, line, f"{where}.end", f"{end} ({span_end}) is beyond the end of the text ({length} characters)")
    if stop <= start:
        raise DataError(path, line, f"{where}.end", f"empty span: start {start}, end {end} ({span_end})")
    if not isinstance(label, str) or not label.strip():
        raise DataError(path, line, f"{where}.label", f"must be a non-empty string, got {label!r}")
    return start, stop, label.strip()
