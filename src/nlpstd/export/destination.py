"""Publishing an export to `export.destination` without ever destroying what is there.

A destination is a folder (local or `s3://`) that nlpstd alone writes into:

    DESTINATION/
      20261206T071500Z-3f2a9c0d/   one folder per published export, written once and never replaced
      current.json                 which of them serves now: written last, in one atomic write

An export goes into a new folder of its own, and `current.json` moves to it only after the folder is
complete (on S3: after its manifest). A failed upload therefore leaves the previous export serving,
and a reader of `current.json` never meets half a model. A destination that holds anything else (a
standard's folder, a user's files) is refused before any work, so an export never writes among files
it did not write; nothing is ever deleted.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nlpstd import fsutil, jsonio, storage
from nlpstd.errors import NlpstdError

POINTER = "current.json"
_SLOT = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
_PARTIAL = re.compile(r"^\.(\d{8}T\d{6}Z-[0-9a-f]{8})\.partial(\.old)?$")


def new_slot() -> str:
    """The name of a new export folder: its UTC time, then randomness so that two exports never collide."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def slot_uri(destination: str, slot: str) -> str:
    return f"{destination.rstrip('/')}/{slot}" if storage.is_remote(destination) else str(Path(destination) / slot)


def check(destination: str, name: str) -> None:
    """Refuse a destination that holds anything nlpstd did not write, or that serves another model."""
    entries = _entries(destination)
    foreign = [entry for entry in entries if not (entry == POINTER or _SLOT.match(entry) or _PARTIAL.match(entry))]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise NlpstdError(f"{destination} holds files nlpstd did not write ({shown}); an export "
                          "never writes among other files: name an empty or new folder")
    pointer = current(destination)
    if pointer is not None and pointer.get("registered_model") != name:
        raise NlpstdError(f"{destination} serves {pointer.get('registered_model')!r}; "
                          f"give {name!r} a destination of its own")


def current(destination: str) -> dict[str, Any] | None:
    """What `current.json` says serves now, or None before the first export."""
    if storage.is_remote(destination):
        text = storage.read_text(f"{destination.rstrip('/')}/{POINTER}")
    else:
        path = Path(destination) / POINTER
        text = path.read_text(encoding="utf-8") if path.is_file() else None
    if text is None:
        return None
    try:
        pointer = json.loads(text)
    except ValueError:
        raise NlpstdError(f"{destination}/{POINTER} is not JSON; it was not written by nlpstd") from None
    if not isinstance(pointer, dict) or pointer.get("nlpstd_destination") != 1:
        raise NlpstdError(f"{destination}/{POINTER} was not written by nlpstd")
    return pointer


def upload(folder: Path, destination: str, slot: str) -> str:
    """Copy `folder` into the new `slot` of `destination`, complete or not at all; returns its URI.
    Nothing serves it until `point` names it."""
    uri = slot_uri(destination, slot)
    if storage.is_remote(destination):
        storage.upload_folder(folder, uri)
        return uri
    target = Path(uri)
    if target.exists():
        raise NlpstdError(f"{target} exists already; an export folder is never replaced")
    tmp = target.with_name(f".{slot}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(folder, tmp)
        fsutil.replace_dir(tmp, target)  # flushed to disk, then renamed into place
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return uri


def point(destination: str, slot: str, record: dict[str, Any]) -> None:
    """Make `slot` the export that serves: `current.json` replaced in one atomic write."""
    text = jsonio.dumps({"nlpstd_destination": 1, "folder": slot, "uri": slot_uri(destination, slot),
                       "published": datetime.now(timezone.utc).isoformat(timespec="seconds"), **record}, indent=2) + "\n"
    if storage.is_remote(destination):
        storage.write_text(f"{destination.rstrip('/')}/{POINTER}", text)
        return
    fsutil.write_text(Path(destination) / POINTER, text)


def _entries(destination: str) -> list[str]:
    if storage.is_remote(destination):
        return storage.list_names(destination)
    folder = Path(destination)
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise NlpstdError(f"{destination} is a file, not a folder")
    return sorted(path.name for path in folder.iterdir())
