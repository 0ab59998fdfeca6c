"""Labels written as numbers, named by the standard's `data.label_map`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nlpstd.errors import DataError

if TYPE_CHECKING:
    from nlpstd.spec import DataSpec


def apply_label_map(data: DataSpec, path: str, task: str, records: list[dict]) -> list[dict]:
    """`records` with each numbered label replaced by its name; unchanged without a label map."""
    if data.label_map is None:
        return records
    raise DataError(path, None, "label_map", "label maps are not applied yet")
