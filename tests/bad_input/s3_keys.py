"""Bad S3 locations in a standard: buckets, keys and traversal, refused before any request."""

from __future__ import annotations

from tests.bad_input.case import Case

CASES: list[Case] = []
