"""The content hashes behind fingerprints and identities: sha256, as hex.

Their values are stored (in caches, folder names, MLflow runs, study names), so the bytes hashed
here never change: JSON is `json.dumps(..., sort_keys=True)` with its default separators and ASCII
escapes, not the human-readable form `nlpstd.jsonio` writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_json(data: Any) -> str:
    """sha256 of `data` as canonical JSON (keys sorted): equal data, equal hash, whatever the key order."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
