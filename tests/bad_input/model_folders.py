"""Bad model folders given to `predict` (and as `model.base`): config, weights, tokenizer, remote code."""

from __future__ import annotations

from tests.bad_input.case import Case

CASES: list[Case] = []
