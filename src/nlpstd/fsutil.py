"""Files and folders that appear whole or not at all: the one atomic write behind every file nlpstd
replaces in place, and the one folder swap behind every stage output and checkpoint.

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
import shutil
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
    _flush(path.parent)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """`data` as the whole content of `path`, replaced atomically; returns the path."""
    with atomic_file(path) as out:
        out.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """`text` in UTF-8 as the whole content of `path`, replaced atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target`, replacing it; the old copy is removed only after the rename.

    `new` reaches the disk before it is renamed, and the renames before the old copy goes: without
    that, a machine that stops soon after could find the new names with some of their data never
    written, and no old copy to fall back on."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    _flush_tree(new)
    if target.exists():
        target.rename(old)
    new.rename(target)
    _flush(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def _flush_tree(folder: Path) -> None:
    """Every file and folder below `folder`, and `folder` itself, to disk (in any order: all of it
    is flushed before the rename)."""
    for path in [*folder.rglob("*"), folder]:
        _flush(path)


def _flush(path: Path) -> None:
    """fsync a file, or a folder's entries where the system allows it (POSIX; some network mounts
    refuse to sync a folder, and then only its files are synced)."""
    folder = path.is_dir()
    if folder and os.name != "posix":
        return
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        if not folder:
            raise
        return
    try:
        os.fsync(descriptor)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(descriptor)
