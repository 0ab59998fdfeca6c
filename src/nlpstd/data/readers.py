"""Readers: one data file in, plain JSON-serialisable records out, bad input rejected by line.

Every record keeps the 1-based line it came from, so later checks (unknown labels, sub-word
alignment) can still point a user at the row to fix. Record shapes:

- CoNLL: `{"tokens": [...], "tags": [...], "line": L}` (L = line of the first token)
- TSV/CSV/JSONL classification: `{"text": ..., "label": "<str>", "line": L}` (+ `"text_pair"`)
- JSONL spans: `{"text": ..., "spans": [[start, end_exclusive, label], ...], "line": L}`

Files are decoded line by line as they are read, never whole, so checking a large file costs its
records and not three copies of its bytes. A line ends at LF, CRLF or a lone CR (what spreadsheets
on old Macs write), in every format alike. Text no example can hold is refused where it stands: a
NUL character, and a lone UTF-16 surrogate (a JSON `"\\ud800"` escape), which no file can encode and
which would otherwise crash the stage that writes the prepared data.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from nlpstd.errors import DataError

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import DataSpec

_IOB2 = re.compile(r"O|[BI]-\S+")
_SPACES = re.compile(r"[ \t]+")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")  # one line with its end, or a last line without one
_LINE_END = re.compile(r"\r\n|\r|\n")
_OTHER_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # where str.splitlines breaks, besides CR and LF
_BLOCK = 1 << 20  # bytes decoded at a time (then up to the next LF)


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
    lines = read_lines(path, data.encoding_of(split))
    if data.format == "conll":
        return _conll(path, lines, re.compile(data.token_pattern) if data.token_pattern else None)
    if data.format in ("tsv", "csv"):
        return _table(path, lines, data)
    read = _span_record if task == "token-classification" else _class_record
    records = [read(path, line, obj, data) for line, obj in _json_objects(path, lines)]
    if not records:
        raise DataError(path, None, None, "no examples found: the file is empty or holds only blank lines")
    return records


# ---------------------------------------------------------------------------------------
# Files and lines


def regular_file(path: str, field: str | None = None) -> Path:
    """The local file behind `path` (an s3:// object through the local cache), refused before it is
    opened unless it is a regular file: reading a named pipe waits for a writer that never comes, a
    device such as /dev/zero never ends, and a folder has no text. `field` names the setting the
    path came from, when the error should point at it."""
    if str(path).startswith("s3://"):  # the only remote scheme (nlpstd.storage imports boto3: only then)
        from nlpstd import storage

        local = storage.fetch(path)
    else:
        local = Path(path)
    try:
        mode = os.stat(local).st_mode
    except OSError as exc:
        raise DataError(path, None, field, f"cannot read the file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise DataError(path, None, field, f"not a regular file but {_file_kind(mode)}: name a file of text")
    return local


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (reading it would wait for a writer)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


class Undecodable(Exception):
    """A byte the encoding rejects: its value and its 1-based line."""

    def __init__(self, byte: int, line: int):
        super().__init__(f"byte 0x{byte:02x} on line {line}")
        self.byte, self.line = byte, line


def decode_lines(handle: IO[bytes], encoding: str) -> Iterator[str]:
    """The lines of an open binary file, decoded as they are read, each with its line end (LF, CRLF
    or a lone CR); a UTF-8 byte order mark is dropped, since it would stick to the first token or
    column. Raises `Undecodable` at the first byte the encoding rejects.

    The file is read in blocks that end at an LF byte. In every encoding whose LF is a byte of its
    own (UTF-8, Latin-1, cp1252, ...) that splits no character, so a bad byte is located exactly;
    in UTF-16 and UTF-32 the decoder carries a split character over to the next block."""
    decoder = codecs.getincrementaldecoder(encoding)()
    number, pending, first = 0, "", True  # lines yielded; a line whose end is not decoded yet
    while True:
        raw = handle.read(_BLOCK)
        if raw and not raw.endswith(b"\n"):
            raw += handle.readline()
        try:
            decoded = decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:
            raise _undecodable(exc, number, pending + raw[: max(exc.start, 0)].decode(encoding, "replace")) from None
        if first and decoded:
            decoded, first = decoded.removeprefix("\ufeff"), False
        lines = _split_lines(pending + decoded)
        # A last line without its end waits for the next block; so does a last CR, which may begin a CRLF.
        pending = lines.pop() if raw and lines and lines[-1][-1] != "\n" else ""
        number += len(lines)
        yield from lines
        if not raw:
            return


def _split_lines(text: str) -> list[str]:
    """Lines with their ends, broken at LF, CRLF and CR only (`str.splitlines` also breaks at form
    feeds, U+2028 and others, which a data file may hold inside a text)."""
    return text.splitlines(keepends=True) if _OTHER_BREAKS.search(text) is None else _LINE.findall(text)


def _undecodable(exc: UnicodeDecodeError, lines_before: int, text_before: str) -> Undecodable:
    """The error for `exc`, on the line after `lines_before` whole lines and the line ends in `text_before`."""
    return Undecodable(exc.object[exc.start], lines_before + len(_LINE_END.findall(text_before)) + 1)


def read_lines(path: str, encoding: str) -> Iterator[str]:
    """`decode_lines` of a data file; a byte the encoding rejects becomes an error on its line."""
    with open(regular_file(path), "rb") as handle:
        try:
            yield from decode_lines(handle, encoding)
        except Undecodable as bad:
            raise DataError(
                path, bad.line, "encoding",
                f"byte 0x{bad.byte:02x} is not valid {encoding}; "
                "set `encoding:` for this file in the standard (e.g. encoding: latin-1)",
            ) from None


def _valid_text(path: str, line: int, field: str, value: str) -> str:
    """`value`, unless it holds a character no text can: NUL, or half of a UTF-16 surrogate pair."""
    if "\x00" in value:
        raise DataError(path, line, field, f"a NUL character (\\x00) at character {value.index(chr(0)) + 1}: binary data, not text")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DataError(path, line, field, f"a lone surrogate {value[exc.start]!r} at character {exc.start + 1}: "
                            "half of a UTF-16 pair is not a character (check the escape that wrote it)") from None
    return value


# ---------------------------------------------------------------------------------------
# CoNLL


def _conll(path: str, lines: str | Iterable[str], token_pattern: re.Pattern | None = None) -> list[dict]:
    """`TOKEN ... TAG` lines; a blank (or whitespace-only) line ends a sentence. `lines` are a
    file's lines as `read_lines` yields them, or a whole text. With `token_pattern` (data.token_pattern)
    the word is the pattern's first group of each token."""
    if isinstance(lines, str):
        lines = io.StringIO(lines, newline="")  # iterates the lines with their ends, as read_lines does
    records: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []
    width: tuple[int, int] | None = None  # (fields per token line, line that set it)
    number = 0
    # A blank line after the last one flushes the final sentence like any other.
    for number, line in enumerate(chain(lines, [""]), start=1):
        line = line.rstrip("\r\n")
        fields = _SPACES.split(line.strip(" \t")) if line.strip() else []
        if "\x00" in line:  # in the token, the tag, or a column between
            for field, value in (("token", fields[0]), ("tag", fields[-1]), ("columns", line)):
                _valid_text(path, number, field, value)
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
        tokens.append(_word(path, number, fields[0], token_pattern) if token_pattern else fields[0])
        tags.append(fields[-1])
    if not records:
        why = "the file is empty" if number <= 1 else "only blank lines and -DOCSTART- markers, no token lines"
        raise DataError(path, None, None, f"no examples found: {why}")
    return records


def _word(path: str, number: int, token: str, pattern: re.Pattern) -> str:
    """The part of `token` that is the word, as `data.token_pattern`'s first group says."""
    found = pattern.fullmatch(token)
    if found is None or not found.group(1):
        raise DataError(path, number, "token", f"{token!r} does not match data.token_pattern {pattern.pattern!r}"
                        + ("" if found is None else " with a word in its first group"))
    return found.group(1)


# ---------------------------------------------------------------------------------------
# TSV / CSV


def _table(path: str, lines: Iterable[str], data: DataSpec) -> list[dict]:
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
        record[key] = _valid_text(path, line, wanted[key], row[column].strip())
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


# ---------------------------------------------------------------------------------------
# JSON Lines


def _json_objects(path: str, lines: Iterable[str]) -> Iterator[tuple[int, dict]]:
    """(line, object) for every non-blank line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, number, "json", f"invalid JSON: {exc.msg} (column {exc.colno})") from None
        except ValueError as exc:  # an integer literal past Python's digit limit
            raise DataError(path, number, "json", f"invalid JSON: {str(exc).split(';')[0]}") from None
        except RecursionError:
            raise DataError(path, number, "json", "invalid JSON: arrays or objects nested too deeply") from None
        if not isinstance(obj, dict):
            raise DataError(path, number, "json", f"expected one JSON object per line, got {_json_type(obj)}")
        yield number, obj


def _json_type(value: Any) -> str:
    """A JSON value's type as JSON names it."""
    names = ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"), (list, "an array"))
    return "null" if value is None else next(name for kind, name in names if isinstance(value, kind))


def _text(path: str, line: int, obj: dict, field: str) -> str:
    if field not in obj:
        raise DataError(path, line, field, "missing field")
    value = obj[field]
    if not isinstance(value, str):
        raise DataError(path, line, field, f"must be a string, got {_shown(value)}")
    if not value.strip():
        raise DataError(path, line, field, "empty text")
    return _valid_text(path, line, field, value)


def _shown(value: Any) -> str:
    """A JSON value for an error line, written as JSON (null, not None): its start, however long it is."""
    shown = json.dumps(value)
    return shown if len(shown) <= 60 else f"{shown[:57]}..."


def _class_record(path: str, line: int, obj: dict, data: DataSpec) -> dict:
    record: dict[str, Any] = {"text": _text(path, line, obj, data.text_column).strip()}
    field = data.label_column
    if field not in obj:
        raise DataError(path, line, field, "missing field")
    label = obj[field]
    if isinstance(label, bool):  # before int: bool is an int in Python
        label = "true" if label else "false"
    elif isinstance(label, str):
        label = _valid_text(path, line, field, label).strip()
    elif isinstance(label, int):
        label = str(label)
    else:
        raise DataError(path, line, field, f"a label is a string, integer or boolean, got {_shown(label)}")
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
        raise DataError(path, line, field, f"must be a list of spans, got {_shown(obj[field])}")
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
        raise DataError(path, line, where, f"a span is {{start, end, label}} or [start, end, label], got {_shown(item)}")
    for key, value in (("start", start), ("end", end)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise DataError(path, line, f"{where}.{key}", f"must be an integer, got {_shown(value)}")
    stop = end + 1 if span_end == "inclusive" else end
    if start < 0:
        raise DataError(path, line, f"{where}.start", f"must be >= 0, got {start}")
    if stop > length:
        raise DataError(path, line, f"{where}.end", f"{end} ({span_end}) is beyond the end of the text ({length} characters)")
    if stop <= start:
        raise DataError(path, line, f"{where}.end", f"empty span: start {start}, end {end} ({span_end})")
    if not isinstance(label, str) or not label.strip():
        raise DataError(path, line, f"{where}.label", f"must be a non-empty string, got {_shown(label)}")
    return start, stop, _valid_text(path, line, f"{where}.label", label).strip()
