"""Parquet files and Hugging Face datasets, read into the same records as the text formats."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nlpstd.errors import DataError

if TYPE_CHECKING:
    from nlpstd.spec import DataSpec


def read_columnar(data: DataSpec, split: str, task: str) -> list[dict]:
    """Every record of a split of a Parquet file or a Hugging Face dataset."""
    raise DataError(data.files()[split].path, None, "format", f"format {data.format} is not read yet")
