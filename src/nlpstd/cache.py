"""Where nlpstd keeps what it can rebuild: tokenized blocks, trained tokenizers, downloaded objects."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$NLPSTD_CACHE`, else ~/.cache/nlpstd."""
    return Path(os.environ.get("NLPSTD_CACHE") or Path.home() / ".cache" / "nlpstd").expanduser()


def s3_cache_bytes() -> int:
    """How much of the S3 download cache may hold: `$NLPSTD_S3_CACHE_GB` (default 20) gigabytes."""
    return int(float(os.environ.get("NLPSTD_S3_CACHE_GB") or 20) * 1e9)
