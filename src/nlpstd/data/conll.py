"""CoNLL files: `TOKEN ... TAG` lines, a blank line between sentences, into
`{"tokens": [...], "tags": [...], "line": L}` records (L = the line of the first token).

`data.conll` says which columns hold the word and the tag, which tag scheme the file uses
(IOB1 and BIOES tags are converted to IOB2 as they are read, so every record holds IOB2), and
which token marks a document line."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING

from nlpstd.data.textfile import valid_text
from nlpstd.errors import DataError

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import ConllLayout

_IOB2 = re.compile(r"O|[BI]-\S+")  # IOB1 tags look the same; only their order differs
_BIOES = re.compile(r"O|[BIES]-\S+")
_SPACES = re.compile(r"[ \t]+")
_SCHEMES = {  # scheme: (a valid tag, what the error calls it)
    "iob2": (_IOB2, "an IOB2 tag (O, B-TYPE or I-TYPE)"),
    "iob1": (_IOB2, "an IOB1 tag (O, B-TYPE or I-TYPE)"),
    "bioes": (_BIOES, "a BIOES tag (O, B-TYPE, I-TYPE, E-TYPE or S-TYPE)"),
}


@dataclass(frozen=True)
class _Layout:
    """`data.conll` as the reader uses it; the defaults are a CoNLL-2003 file's."""

    token: int = 0
    tag: int = -1
    scheme: str = "iob2"
    separator: str | None = "-DOCSTART-"

    @classmethod
    def of(cls, layout: ConllLayout | None) -> _Layout:
        if layout is None:
            return cls()
        return cls(layout.token_column, layout.tag_column, layout.scheme, layout.document_separator)

    def min_fields(self) -> int:
        """Fields a line needs to hold both columns (a negative column counts from the end)."""
        return max(2, *(column + 1 if column >= 0 else -column for column in (self.token, self.tag)))

    def too_few(self, count: int) -> str:
        if (self.token, self.tag) == (0, -1):
            return f"a token line needs at least 2 fields (token ... tag), got {count}"
        return (f"a token line needs at least {self.min_fields()} fields (the token in column {self.token}, "
                f"the tag in column {self.tag}: data.conll), got {count}")

    def is_document_line(self, fields: list[str]) -> bool:
        """The separator as the first field (CoNLL-2003) or as the token (a file with an index column first)."""
        if self.separator is None:
            return False
        return fields[0] == self.separator or _at(fields, self.token) == self.separator


def read_conll(path: str, lines: str | Iterable[str], token_pattern: re.Pattern | None = None,
               layout: ConllLayout | None = None) -> list[dict]:
    """`TOKEN ... TAG` lines; a blank (or whitespace-only) line ends a sentence. `lines` are a
    file's lines as `read_lines` yields them, or a whole text. With `token_pattern` (data.token_pattern)
    the word is the pattern's first group of each token; `layout` (data.conll) places the columns,
    names the tag scheme and the document separator (default: token first, tag last, IOB2, -DOCSTART-)."""
    form = _Layout.of(layout)
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
            _refuse_nul(path, number, fields, line, form)
        if not fields or form.is_document_line(fields):
            if tokens:
                first = number - len(tokens)
                records.append({"tokens": tokens, "tags": _to_iob2(path, first, tags, form.scheme), "line": first})
                tokens, tags = [], []
            continue
        width = _checked_width(path, number, fields, width, form)
        tag = _checked_tag(path, number, fields[form.tag], form.scheme)
        token = fields[form.token]
        tokens.append(_word(path, number, token, token_pattern) if token_pattern else token)
        tags.append(tag)
    if not records:
        raise DataError(path, None, None, f"no examples found: {_why_none(number, form.separator)}")
    return records


def _at(fields: list[str], column: int) -> str | None:
    """The field in `column`, or None when the line is too short to have it."""
    return fields[column] if -len(fields) <= column < len(fields) else None


def _refuse_nul(path: str, number: int, fields: list[str], line: str, form: _Layout) -> None:
    """Name the field that holds the NUL: the token, the tag, or a column between."""
    for field, value in (("token", _at(fields, form.token)), ("tag", _at(fields, form.tag)), ("columns", line)):
        if value is not None:
            valid_text(path, number, field, value)


def _checked_width(path: str, number: int, fields: list[str], width: tuple[int, int] | None, form: _Layout) -> tuple[int, int]:
    """Every token line has as many fields as the first, enough to hold the token and the tag apart."""
    if len(fields) < form.min_fields():
        raise DataError(path, number, "columns", form.too_few(len(fields)))
    width = width or (len(fields), number)
    if len(fields) != width[0]:
        raise DataError(path, number, "columns", f"wrong column count: expected {width[0]} fields like line {width[1]}, got {len(fields)}")
    if form.token % len(fields) == form.tag % len(fields):
        raise DataError(path, number, "columns", f"data.conll.token_column ({form.token}) and tag_column ({form.tag}) "
                        f"are the same field of a {len(fields)}-field line")
    return width


def _checked_tag(path: str, number: int, tag: str, scheme: str) -> str:
    valid, name = _SCHEMES[scheme]
    if not valid.fullmatch(tag):
        raise DataError(path, number, "tag", f"{tag!r} is not {name}")
    return tag


def _to_iob2(path: str, first: int, tags: list[str], scheme: str) -> list[str]:
    """One sentence's tags (from line `first` on) in IOB2, which every record holds."""
    if scheme == "iob1":
        return _from_iob1(tags)
    if scheme == "bioes":
        return _from_bioes(path, first, tags)
    return tags


def _from_iob1(tags: list[str]) -> list[str]:
    """IOB1 writes I- on an entity's first token, and B- only where an entity directly follows one
    of its type. Every sequence of IOB1 tags has a single reading (a B- where IOB1 would write I-
    still starts an entity, exactly as in IOB2), so only each tag's form is checked, never the order."""
    converted = []
    previous = "O"
    for tag in tags:
        starts = tag.startswith("I-") and previous[2:] != tag[2:]
        converted.append(f"B-{tag[2:]}" if starts else tag)
        previous = tag
    return converted


def _from_bioes(path: str, first: int, tags: list[str]) -> list[str]:
    """BIOES marks both ends of every entity: B- first, I- inside, E- last, S- for one token.
    S- becomes B- and E- becomes I-. Because both ends are written, a sequence BIOES cannot produce
    (an I- or E- with no entity open, an entity left open, another tag inside an open one) means the
    file is damaged or is not BIOES (IOB2 read as BIOES, say); any guess would move an entity's
    boundary without a word, so it is reported at its line instead."""
    converted = []
    open_type: str | None = None
    for offset, tag in enumerate(tags):
        _check_bioes_step(path, first + offset, tag, open_type, tags[offset - 1] if offset else None)
        open_type = tag[2:] if tag[0] in "BI" else None
        converted.append({"S": "B", "E": "I"}.get(tag[0], tag[0]) + tag[1:])
    if open_type is not None:
        raise DataError(path, first + len(tags) - 1, "tag", f"{tags[-1]!r} ends the sentence inside a {open_type} entity: "
                        f"BIOES closes every entity with E-{open_type} (a one-token entity is S-{open_type})")
    return converted


def _check_bioes_step(path: str, number: int, tag: str, open_type: str | None, previous: str | None) -> None:
    """`tag` may follow what came before: I-/E- only inside an open entity of its type, anything else only outside one."""
    continues = tag[0] in "IE"
    if open_type is not None and not (continues and tag[2:] == open_type):
        raise DataError(path, number, "tag", f"{tag!r} follows {previous!r} inside an open {open_type} entity: "
                        f"BIOES closes it with E-{open_type} first")
    if open_type is None and continues:
        after = "starts the sentence" if previous is None else f"follows {previous!r}"
        raise DataError(path, number, "tag", f"{tag!r} continues a {tag[2:]} entity, but none is open (it {after}): "
                        f"BIOES starts an entity with B-{tag[2:]} (a one-token entity is S-{tag[2:]})")


def _why_none(number: int, separator: str | None) -> str:
    if number <= 1:
        return "the file is empty"
    if separator is None:
        return "only blank lines, no token lines"
    return f"only blank lines and {separator} markers, no token lines"


def _word(path: str, number: int, token: str, pattern: re.Pattern) -> str:
    """The part of `token` that is the word, as `data.token_pattern`'s first group says."""
    found = pattern.fullmatch(token)
    if found is None or not found.group(1):
        raise DataError(path, number, "token", f"{token!r} does not match data.token_pattern {pattern.pattern!r}"
                        + ("" if found is None else " with a word in its first group"))
    return found.group(1)
