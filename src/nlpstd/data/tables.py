"""TSV and CSV files: a header row, then one example per row, into
`{"text": ..., "label": "<str>", "line": L}` records (+ `"text_pair"`); a quoted field may span lines."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from nlpstd.data.textfile import valid_text
from nlpstd.errors import DataError

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import DataSpec


def read_table(path: str, lines: Iterable[str], data: DataSpec) -> list[dict]:
    """A header row, then one example per row; columns are found by name, in any order. Blank rows
    may end the file; one inside the table is an error."""
    rows = _rows(path, lines, data)
    _, first = next(rows, (1, []))
    if _blank(first):
        if all(_blank(row) for _, row in rows):
            raise DataError(path, None, None, "no examples found: the file is empty or holds only blank lines")
        raise DataError(path, 1, "columns", "the first line is blank; the header row (the column names) must be the first line")
    header = [name.strip() for name in first]
    wanted = {"text": data.text_column, "label": data.label_column}
    if data.text_pair_column:
        wanted["text_pair"] = data.text_pair_column
    for key, name in wanted.items():
        if name not in header:
            columns = ", ".join(repr(c) for c in header)
            raise DataError(path, 1, name, f"no such column in the header (columns: {columns}); set data.{key}_column")
        if header.count(name) > 1:
            raise DataError(path, 1, name, f"the header names this column {header.count(name)} times; which one is meant?")
    index = {key: header.index(name) for key, name in wanted.items()}

    records = []
    blanks: list[tuple[int, list[str]]] = []  # blank rows since the last example: fine at the end only
    for line, row in rows:
        if _blank(row):
            blanks.append((line, row))
            continue
        for blank_line, blank_row in blanks:
            records.append(_table_record(path, blank_line, blank_row, header, index, wanted))
        blanks = []
        records.append(_table_record(path, line, row, header, index, wanted))
    if not records:
        raise DataError(path, None, None, "no examples found: only the header row")
    return records


def _blank(row: list[str]) -> bool:
    return not "".join(row).strip()


def _table_record(path: str, line: int, row: list[str], header: list[str], index: dict[str, int],
                  wanted: dict[str, str]) -> dict[str, Any]:
    if not row:
        raise DataError(path, line, "columns", "blank line inside the table (only trailing blank lines are allowed)")
    if len(row) != len(header):
        raise DataError(path, line, "columns", f"wrong column count: expected {len(header)} fields like the header, got {len(row)}")
    record: dict[str, Any] = {}
    for key, column in index.items():
        record[key] = valid_text(path, line, wanted[key], row[column].strip())
        if not record[key]:
            raise DataError(path, line, wanted[key], f"empty {key.replace('_', ' ')}")
    return {**record, "line": line}


def _rows(path: str, lines: Iterable[str], data: DataSpec) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of every row; quoted fields may span lines, so lines are tracked."""
    quoting = data.quoting if data.quoting is not None else data.format == "csv"
    reader = csv.reader(
        lines,
        delimiter="\t" if data.format == "tsv" else ",",
        quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE,
        strict=True,
    )
    line = 1
    try:
        for row in reader:
            yield line, row
            line = reader.line_num + 1
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            message = (f"a field longer than {csv.field_size_limit():,} characters: an unclosed quote swallows the rows "
                       "after it (check its quotes, or set data.quoting), or a text far longer than max_length could use")
        else:
            message = f"malformed {data.format.upper()} row: {exc} (check its quotes, or set data.quoting)"
        raise DataError(path, line, "columns", message) from None
