"""Bad input in the data layouts of `span_conll_layouts` (see each case's id)."""

from __future__ import annotations

from tests.bad_input.case import Case

CASES: list[Case] = []
