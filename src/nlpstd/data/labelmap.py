"""Labels written as numbers, named by the standard's `data.label_map`.

Readers give every label as the string the data holds ("1", "01", "7"); the map turns each into its
name, so the label set, the reports and the model's id2label all speak of names. A number is compared
as an integer ("01" is 1); an `ids` key that is not an integer is compared as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nlpstd.data.textfile import read_lines, regular_file, valid_text
from nlpstd.errors import DataError

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import DataSpec
    from nlpstd.spec.schema import LabelMap

_INTEGER = re.compile(r"[+-]?[0-9]+")
_SHOWN = 12  # numbers an error lists before it cuts the list short


@dataclass(frozen=True)
class NumberedNames:
    """A loaded label map: each number (as `number_key` writes it) and its name."""

    by_number: dict[str, str]
    numbers: str
    """The numbers the map holds, for an error line: `1-4`, or `0, 1, 5`."""

    def name(self, path: str, line: int | None, field: str | None, value: str) -> str:
        """The name of label `value`, or an error at the row that holds a number the map lacks."""
        name = self.by_number.get(number_key(value))
        if name is None:
            raise DataError(path, line, field, f"{value} is not in data.label_map (numbers {self.numbers})")
        return name


def number_key(value: str) -> str:
    """How a label is looked up: an integer string as its integer ("01" → "1"), anything else as written."""
    value = value.strip()
    return str(int(value)) if _INTEGER.fullmatch(value) else value


def load_names(label_map: LabelMap, where: str) -> NumberedNames:
    """The map's names by number; a names file is read here (UTF-8). `where` is the data file whose
    labels are named, for the errors a list in the standard can only point at through it."""
    if label_map.ids is not None:
        return _from_ids(label_map.ids, where)
    if label_map.file is not None:
        names = _names_file(label_map.file)
    else:
        names = list(label_map.names or [])
        _no_repeats(where, "label_map.names", names, "position")
    numbers = {str(label_map.base + index): name for index, name in enumerate(names)}
    return NumberedNames(numbers, f"{label_map.base}-{label_map.base + len(names) - 1}")


def _from_ids(ids: dict[str, str], where: str) -> NumberedNames:
    """Numbers as written in `ids`; several numbers may share a name (1 and 2 both `negative`)."""
    numbers: dict[str, str] = {}
    for written, name in ids.items():
        key = number_key(written)
        if key in numbers:
            raise DataError(where, None, "label_map.ids", f"{written!r} is number {key} again: each number once")
        numbers[key] = name
    keys = sorted(numbers, key=lambda k: (not _INTEGER.fullmatch(k), int(k) if _INTEGER.fullmatch(k) else 0, k))
    shown = ", ".join(keys[:_SHOWN]) + (", ..." if len(keys) > _SHOWN else "")
    return NumberedNames(numbers, shown)


def _names_file(path: str) -> list[str]:
    """One name per line; blank lines may end the file, not interrupt it; each name once."""
    regular_file(path, "label_map")  # a missing file or a folder, named as the label map's
    names: list[str] = []
    blank: int | None = None  # the first blank line since the last name
    for number, line in enumerate(read_lines(path, "utf-8"), start=1):
        name = valid_text(path, number, "label_map", line.strip())
        if not name:
            blank = blank or number
            continue
        if blank is not None:
            raise DataError(path, blank, "label_map", "blank line among the names (one name per line; only trailing blank lines are allowed)")
        names.append(name)
    _no_repeats(path, "label_map", names, "line")
    if not names:
        raise DataError(path, None, "label_map", "no names: the file is empty or holds only blank lines")
    return names


def _no_repeats(path: str, field: str, names: list[str], unit: str) -> None:
    """Refuses a name listed twice: two numbers would train as one class, surely by mistake. In a file
    the error stands on the second line (names have no blank lines between them, so line = position)."""
    first: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in first:
            line = position if unit == "line" else None
            raise DataError(path, line, field, f"{name!r} is listed already ({unit} {first[name]}): each name once")
        first[name] = position


def apply_label_map(data: DataSpec, path: str, task: str, records: list[dict]) -> list[dict]:
    """`records` with each numbered label named: a classification record's `label`, each span's label.
    CoNLL-like records (`tags`) come named from their reader (`columnar` maps numbered tags itself, since
    it checks them as IOB2 tags); without a label map, records are returned unchanged."""
    if data.label_map is None:
        return records
    names = load_names(data.label_map, path)
    if task == "token-classification":
        return [_spans_named(path, record, names, data.entities_field) for record in records]
    return [{**record, "label": names.name(path, record["line"], data.label_column, record["label"])} for record in records]


def _spans_named(path: str, record: dict, names: NumberedNames, field: str) -> dict:
    if "spans" not in record:
        return record
    spans = [[start, end, names.name(path, record["line"], field, f"{label}")] for start, end, label in record["spans"]]
    return {**record, "spans": spans}


def describe(label_map: LabelMap) -> dict[str, Any]:
    """What the data report shows of a label map: where the names come from, and each number's name."""
    source = next(key for key in ("names", "file", "ids") if getattr(label_map, key) is not None)
    described: dict[str, Any] = {"source": source}
    if label_map.file is not None:
        described["file"] = label_map.file
    if source != "ids":
        described["base"] = label_map.base
    described["names"] = load_names(label_map, label_map.file or "data.label_map").by_number
    return described
