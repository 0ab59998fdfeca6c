"""Where nlpstd keeps what it can rebuild: tokenized blocks, trained tokenizers, downloaded objects."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$NLPSTD_CACHE`, else ~/.cache/nlpstd."""
    return Path(os.environ.get("NLPSTD_CACHE") or Path.home() / ".cache" / "nlpstd").expanduser()
