"""JSON Lines files: one object per line, into classification records `{"text", "label", "line"}`
(+ `"text_pair"`) or span records `{"text", "spans": [[start, end_exclusive, label], ...], "line"}`.

Spans come as a flat list (`[{"start", "end", "label"}, ...]` or `[[start, end, label], ...]`), as a
mapping from each type to its pairs (`{"PER": [[0, 4]]}`), or from each type to each mention to its
pairs (CLUENER: `{"name": {"叶老桂": [[9, 11]]}}`); errors name the path into the nesting."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any

from nlpstd.data.textfile import valid_text
from nlpstd.errors import DataError

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import DataSpec

_PLAIN_KEY = re.compile(r"[^\s.\[\]\"']+")  # a mapping key a field path can write after a dot


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
    """Character spans, normalised to exclusive ends, sorted, and checked not to overlap. The entities
    field is a list of spans, or a mapping from each type to its [start, end] pairs, or from each type
    to each mention to its pairs (CLUENER); the shape of each type's value tells which."""
    text = _text(path, line, obj, data.text_column)
    field = data.entities_field
    if field not in obj:
        raise DataError(path, line, field, "missing field")
    entities = obj[field]
    if isinstance(entities, dict):
        found = _mapped_spans(path, line, field, entities, text, data.span_end)
    elif isinstance(entities, list):
        found = [(*_span(path, line, f"{field}[{i}]", item, len(text), data.span_end), f"{field}[{i}]") for i, item in enumerate(entities)]
    else:
        raise DataError(path, line, field, f"must be a list of spans, got {_shown(entities)}")
    spans = sorted((start, stop, label, order, where) for order, (start, stop, label, where) in enumerate(found))
    for (start0, end0, _, _, where0), (start1, _, _, _, where1) in zip(spans, spans[1:]):
        if start1 < end0:
            raise DataError(path, line, where1, f"overlaps {where0} (characters {start0}-{end0})")
    return {"text": text, "spans": [[start, stop, label] for start, stop, label, _, _ in spans], "line": line}


def span_labels(field: str, entities: Any) -> Iterator[tuple[str, str]]:
    """(where the label is written, the label) of each span, in the file's order, for an entities value
    `span_record` accepted: so an error about a span's type can point at the place to fix it."""
    if isinstance(entities, list):
        for i, item in enumerate(entities):
            yield f"{field}[{i}].label", (item["label"] if isinstance(item, dict) else item[2]).strip()
        return
    for kind, spans in entities.items():
        yield from ((_child(field, kind), kind.strip()) for _ in _pairs_of(spans))


def _pairs_of(spans: list | dict) -> Iterator[Any]:
    """Every pair under one type, whichever nested layout holds them."""
    return iter(spans) if isinstance(spans, list) else chain.from_iterable(spans.values())


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
    start, stop = _offsets(path, line, where, start, end, length, span_end)
    if not isinstance(label, str) or not label.strip():
        raise DataError(path, line, f"{where}.label", f"must be a non-empty string, got {_shown(label)}")
    return start, stop, valid_text(path, line, f"{where}.label", label).strip()


def _offsets(path: str, line: int, where: str, start: Any, end: Any, length: int, span_end: str) -> tuple[int, int]:
    """(start, exclusive end) of a non-empty span inside a text of `length` characters."""
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
    return start, stop


def _mapped_spans(path: str, line: int, field: str, entities: dict, text: str, span_end: str) -> list[tuple[int, int, str, str]]:
    """(start, exclusive end, type, where) of every pair in a mapping keyed by type: its value is a list of
    pairs, or a mapping from each mention to the list of pairs where the text holds that mention."""
    found = []
    for kind, spans in entities.items():
        where = _child(field, kind)
        label = _type_label(path, line, where, kind)
        if isinstance(spans, list):
            found += [(*_pair(path, line, f"{where}[{i}]", pair, len(text), span_end), label, f"{where}[{i}]") for i, pair in enumerate(spans)]
        elif isinstance(spans, dict):
            found += [(*span, label, at) for span, at in _mentions(path, line, where, spans, text, span_end)]
        else:
            raise DataError(path, line, where, f"must be a list of [start, end] pairs, or a mapping from each mention "
                            f"to its pairs, got {_shown(spans)}")
    return found


def _type_label(path: str, line: int, where: str, kind: str) -> str:
    """A type named by a mapping's key: the label of every span under it."""
    if not kind.strip():
        raise DataError(path, line, where, f"an entity type must be a non-empty string, got {_shown(kind)}")
    return valid_text(path, line, where, kind).strip()


def _mentions(path: str, line: int, where: str, mentions: dict, text: str, span_end: str) -> Iterator[tuple[tuple[int, int], str]]:
    """((start, exclusive end), where) of each pair under each mention, each checked to cover its mention."""
    for mention, pairs in mentions.items():
        at = _child(where, mention)
        if not isinstance(pairs, list):
            raise DataError(path, line, at, f"must be a list of [start, end] pairs, got {_shown(pairs)}")
        for i, pair in enumerate(pairs):
            start, stop = _pair(path, line, f"{at}[{i}]", pair, len(text), span_end)
            if text[start:stop] != mention:
                raise DataError(path, line, f"{at}[{i}]", f"the text holds {text[start:stop]!r} at characters {pair[0]}-{pair[1]} "
                                f"({span_end} end), not the mention {mention!r}")
            yield (start, stop), f"{at}[{i}]"


def _pair(path: str, line: int, where: str, pair: Any, length: int, span_end: str) -> tuple[int, int]:
    """One [start, end] pair of a mapping layout, as (start, exclusive end)."""
    if not isinstance(pair, list) or len(pair) != 2:
        raise DataError(path, line, where, f"a span here is a [start, end] pair, got {_shown(pair)}")
    return _offsets(path, line, where, pair[0], pair[1], length, span_end)


def _child(where: str, key: str) -> str:
    """The field path of a mapping's key: `entities.PER`, or `entities["New York"]` for a key a dot cannot carry."""
    if _PLAIN_KEY.fullmatch(key) and key.isprintable():
        return f"{where}.{key}"
    return f"{where}[{json.dumps(key, ensure_ascii=not key.isprintable())}]"  # escapes what a terminal cannot show
