"""TSV and CSV files: one example per row (after a header row, or with columns named by `data.columns`),
into `{"text": ..., "label": "<str>", "line": L}` records (+ `"text_pair"`); a quoted field may span lines."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from nlpstd.data.textfile import valid_text
from nlpstd.errors import DataError

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import DataSpec


def read_table(path: str, lines: Iterable[str], data: DataSpec) -> list[dict]:
    """One example per row, columns found by name in any order: names from the header row, or from
    `data.columns` when `data.header` is false (every row is then an example). With both, the header
    must name the columns `data.columns` does, so a file whose columns moved is refused rather than misread.
    Blank rows may end the file; one inside the table is an error."""
    rows = _rows(path, lines, data)
    header = _header(path, rows, data) if data.header else list(data.columns or [])
    source = "the header" if data.header else "data.columns"
    positions = _positions(path, header, data, source)

    records = []
    blanks: list[tuple[int, list[str]]] = []  # blank rows since the last example: fine at the end only
    for line, row in rows:
        if _blank(row):
            blanks.append((line, row))
            continue
        for blank_line, blank_row in blanks:
            records.append(_table_record(path, blank_line, blank_row, len(header), positions, data, source))
        blanks = []
        records.append(_table_record(path, line, row, len(header), positions, data, source))
    if not records:
        why = "only the header row" if data.header else "the file is empty or holds only blank lines"
        raise DataError(path, None, None, f"no examples found: {why}")
    return records


def _header(path: str, rows: Iterator[tuple[int, list[str]]], data: DataSpec) -> list[str]:
    """The column names of the first row (which must be `data.columns` when those are given too)."""
    _, first = next(rows, (1, []))
    if _blank(first):
        if all(_blank(row) for _, row in rows):
            raise DataError(path, None, None, "no examples found: the file is empty or holds only blank lines")
        raise DataError(path, 1, "columns", "the first line is blank; the header row (the column names) must be the first line")
    header = [name.strip() for name in first]
    if data.columns and header != list(data.columns):
        raise DataError(path, 1, "columns", f"the header row names the columns {_listed(header)}, data.columns "
                                            f"{_listed(data.columns)}; make them agree, or set data.header: false "
                                            "if the first row is an example")
    return header


def _listed(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)


def wanted_columns(data: DataSpec) -> dict[str, list[str]]:
    """The columns each record key is read from: text (one or several, joined), label, text pair."""
    text = data.text_column if isinstance(data.text_column, list) else [data.text_column]
    wanted = {"text": list(text), "label": [data.label_column]}
    if data.text_pair_column:
        wanted["text_pair"] = [data.text_pair_column]
    return wanted


def _positions(path: str, header: list[str], data: DataSpec, source: str) -> dict[str, list[int]]:
    """Where each record key's columns stand in a row; `source` is where the names come from."""
    line = 1 if data.header else None
    positions = {}
    for key, names in wanted_columns(data).items():
        for name in names:
            if name not in header:
                raise DataError(path, line, name, f"no such column in {source} (columns: {_listed(header)}); set data.{key}_column")
            if header.count(name) > 1:
                raise DataError(path, line, name, f"{source} names this column {header.count(name)} times; which one is meant?")
        positions[key] = [header.index(name) for name in names]
    return positions


def _blank(row: list[str]) -> bool:
    return not "".join(row).strip()


def _table_record(path: str, line: int, row: list[str], width: int, positions: dict[str, list[int]],
                  data: DataSpec, source: str) -> dict[str, Any]:
    if not row:
        raise DataError(path, line, "columns", "blank line inside the table (only trailing blank lines are allowed)")
    if len(row) != width:
        raise DataError(path, line, "columns", f"wrong column count: expected {width} fields like {source}, got {len(row)}")
    names = wanted_columns(data)
    record: dict[str, Any] = {}
    for key, columns in positions.items():
        cells = [(name, row[column]) for name, column in zip(names[key], columns)]
        record[key] = joined_text(path, line, cells, data.text_separator, key)
    return {**record, "line": line}


def joined_text(path: str, line: int, cells: list[tuple[str, str]], separator: str, key: str) -> str:
    """The stripped text of one or several (column, value) cells, the non-empty ones joined with
    `separator`: a title without a body is still an example, a row with every column empty is not."""
    parts = [valid_text(path, line, name, value).strip() for name, value in cells]
    if not any(parts):
        raise DataError(path, line, "+".join(name for name, _ in cells), f"empty {key.replace('_', ' ')}")
    return separator.join(part for part in parts if part)


def _rows(path: str, lines: Iterable[str], data: DataSpec) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of every row; quoted fields may span lines, so lines are tracked."""
    quoting = data.quoting if data.quoting is not None else data.format == "csv"
    reader = csv.reader(
        lines,
        delimiter=data.delimiter or ("\t" if data.format == "tsv" else ","),
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
