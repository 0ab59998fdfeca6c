"""JSON that people read: non-ASCII text (a Chinese label, an accented name) stays as written, in UTF-8.

`json.dumps` escapes every non-ASCII character by default (`"\\u4eba\\u540d"`): valid JSON, but a label
nobody can read in an editor, a diff or a terminal. Every JSON file and JSON line nlpstd writes for
people goes through here. Hash inputs keep plain `json.dumps` on purpose: their bytes are part of
identities and fingerprints already on disk, and nobody reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nlpstd import fsutil


def dumps(data: Any, **options: Any) -> str:
    """`json.dumps` with non-ASCII characters kept (the options are `json.dumps`'s)."""
    return json.dumps(data, ensure_ascii=False, **options)


def write_json(path: str | Path, data: Any, *, indent: int | None = 2, **options: Any) -> Path:
    """`data` as one JSON document in a UTF-8 file, ending in a newline, replaced atomically (a reader sees
    the old file or the new one, never half of one); returns the path."""
    return fsutil.write_text(path, dumps(data, indent=indent, **options) + "\n")


def read_json(path: str | Path) -> Any:
    """The JSON document in a UTF-8 file (whatever the locale's default encoding is)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
