"""A data file's lines: a regular file (local, or an s3:// object through the cache), decoded as it
is read, with bad bytes and characters no text can hold located by line.

Files are decoded line by line as they are read, never whole, so checking a large file costs its
records and not three copies of its bytes. A line ends at LF, CRLF or a lone CR (what spreadsheets
on old Macs write), in every format alike. Text no example can hold is refused where it stands: a
NUL character, and a lone UTF-16 surrogate (a JSON `"\\ud800"` escape), which no file can encode and
which would otherwise crash the stage that writes the prepared data.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from nlpstd.errors import DataError

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")  # one line with its end, or a last line without one
_LINE_END = re.compile(r"\r\n|\r|\n")
_OTHER_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # where str.splitlines breaks, besides CR and LF
_BLOCK = 1 << 20  # bytes decoded at a time (then up to the next LF)


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


def valid_text(path: str, line: int, field: str, value: str) -> str:
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
