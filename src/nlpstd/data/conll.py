"""CoNLL files: `TOKEN ... TAG` lines, a blank line between sentences, into
`{"tokens": [...], "tags": [...], "line": L}` records (L = the line of the first token)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from itertools import chain

from nlpstd.data.textfile import valid_text
from nlpstd.errors import DataError

_IOB2 = re.compile(r"O|[BI]-\S+")
_SPACES = re.compile(r"[ \t]+")


def read_conll(path: str, lines: str | Iterable[str], token_pattern: re.Pattern | None = None) -> list[dict]:
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
                valid_text(path, number, field, value)
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
