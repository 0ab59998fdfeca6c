"""Bad input in the data layouts of `tabular_layouts` (see each case's id)."""

from __future__ import annotations

from tests.bad_input.case import Case

CASES: list[Case] = []
