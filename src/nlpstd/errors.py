"""Errors a user can act on: each names the file, the line and the field to fix."""

from __future__ import annotations

from pathlib import Path


class NlpstdError(Exception):
    """Base class for every error nlpstd reports to a user (the CLI prints it on one line)."""


class LocatedError(NlpstdError):
    """An error at a place in a file: `file:line: field: message`."""

    def __init__(self, file: str | Path, line: int | None, field: str | None, message: str):
        self.file, self.line, self.field, self.message = str(file), line, field, message
        where = self.file if line is None else f"{self.file}:{line}"
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class StandardError(LocatedError):
    """The standard (YAML) is malformed or inconsistent."""


class DataError(LocatedError):
    """A data file has a bad row, a missing column or an unreadable encoding."""


class GateFailed(NlpstdError):
    """The evaluation gate rejected the model; nothing downstream of it runs."""


class ParityFailed(NlpstdError):
    """An exported format strays from the torch model beyond the standard's tolerances; nothing is uploaded."""


class TrainingDiverged(NlpstdError):
    """The loss (or a held-out score) stopped being a finite number; training stops before any
    checkpoint or best weights hold it."""
