"""The content hashes behind fingerprints and identities: sha256, as hex.

Their values are stored (in caches, folder names, MLflow runs, study names), so the bytes hashed
here never change: JSON is `json.dumps(..., sort_keys=True)` with its default separators and ASCII
escapes, not the human-readable form `nlpstd.jsonio` writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import IO, Any


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    with open(path, "rb") as handle:
        return sha256_handle(handle)


def sha256_handle(handle: IO[bytes]) -> str:
    """sha256 of what is left to read in an open binary file: the bytes that were read, when a
    caller has the file open already (hashing by path again could see a file replaced meanwhile)."""
    return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_text(text: str) -> str:
    """sha256 of `text` in UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_json(data: Any) -> str:
    """sha256 of `data` as canonical JSON (keys sorted): equal data, equal hash, whatever the key order."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
