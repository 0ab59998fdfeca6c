"""How a standard's errors name places and values: `file:line: key.path: message`, on one line."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nlpstd.errors import StandardError


def _failing_at(path: Path, lines: dict[tuple, int]) -> Callable[[tuple, str], None]:
    """A `fail(loc, message)` that raises the StandardError of `loc` in the file at `path`."""

    def fail(loc: tuple, message: str) -> None:
        raise StandardError(path, _line_of(loc, lines), _dotted(loc), message)

    return fail


def _line_of(loc: tuple, lines: dict[tuple, int]) -> int | None:
    """The line of the longest prefix of `loc` that appears in the file (a missing top-level key: line 1)."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        text = str(part) if str(part).isprintable() else repr(part)  # an error stays on one line
        out += f"[{part}]" if isinstance(part, int) else (f".{_clip(text)}" if out else _clip(text))
    return out


def _clip(text: Any, limit: int = 60) -> str:
    """`text` cut to `limit` characters: a 5,000-character value has no place in a one-line error."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: Any) -> str:
    """A value as an error quotes it: its repr, cut short."""
    return _clip(repr(value), 80)



def _file_kind(mode: int) -> str:
    """What a path that is not a regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"
