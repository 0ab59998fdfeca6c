"""JSON Lines files: one object per line, into classification records `{"text", "label", "line"}`
(+ `"text_pair"`) or span records `{"text", "spans": [[start, end_exclusive, label], ...], "line"}`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from nlpstd.data.textfile import valid_text
from nlpstd.errors import DataError

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import DataSpec


def json_objects(path: str, lines: Iterable[str]) -> Iterator[tuple[int, dict]]:
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
    return valid_text(path, line, field, value)


def _shown(value: Any) -> str:
    """A JSON value for an error line, written as JSON (null, not None): its start, however long it is."""
    shown = json.dumps(value)
    return shown if len(shown) <= 60 else f"{shown[:57]}..."


def class_record(path: str, line: int, obj: dict, data: DataSpec) -> dict:
    record: dict[str, Any] = {"text": _text(path, line, obj, data.text_column).strip()}
    field = data.label_column
    if field not in obj:
        raise DataError(path, line, field, "missing field")
    label = obj[field]
    if isinstance(label, bool):  # before int: bool is an int in Python
        label = "true" if label else "false"
    elif isinstance(label, str):
        label = valid_text(path, line, field, label).strip()
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


def span_record(path: str, line: int, obj: dict, data: DataSpec) -> dict:
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
    return start, stop, valid_text(path, line, f"{where}.label", label).strip()
