"""Bad command-line flags and arguments: one line naming the flag, never a usage dump or a traceback."""

from __future__ import annotations

from tests.bad_input.case import Case

CASES: list[Case] = []
