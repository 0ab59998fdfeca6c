"""Files that appear whole or not at all: the one atomic write behind every file nlpstd replaces in place.

A reader (another stage, a serving process polling `current.json`, a rerun after a crash) must never
see half a file. So the bytes go to a temporary file beside the target, are flushed to disk (fsync),
and only then renamed over it: a rename within one folder is atomic, and the fsync first means a power
cut cannot leave the new name pointing at a file the disk never received. The folder is synced too,
where the system allows it, so that the rename itself survives.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write `path`'s new content into; it replaces `path` when the block ends without
    an error, and is removed otherwise (the old `path`, if any, stays as it was). The folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Opened exclusively under a fresh name, with the usual permissions (umask applied), unlike mkstemp's 0600.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """`data` as the whole content of `path`, replaced atomically; returns the path."""
    with atomic_file(path) as out:
        out.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """`text` in UTF-8 as the whole content of `path`, replaced atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable; a no-op where folders cannot be opened (Windows, some network mounts)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
