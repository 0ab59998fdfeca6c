"""What nlpstd says while it works, through `logging`: the library only logs, the caller decides.

Every module logs to `logging.getLogger(__name__)` (below the `nlpstd` logger). The command line,
a pipeline task and the test suite call `configure()`: progress and facts (INFO) as bare lines on
stdout, warnings and errors on stderr. An application embedding nlpstd can instead attach its own
handlers to the `nlpstd` logger, or silence it (`logging.getLogger("nlpstd").setLevel(logging.WARNING)`).
Progress bars stay tqdm's.
"""

from __future__ import annotations

import logging
import sys

NAMES = ("nlpstd", "pipelines")  # the library, and the orchestration beside it


class _Console(logging.StreamHandler):
    """A handler that writes to whatever `sys.stdout` or `sys.stderr` is at the moment of writing,
    so that a redirection made after `configure()` (pytest's capture, a caller's) is honoured."""

    def __init__(self, errors: bool):
        super().__init__()
        self.errors = errors

    @property
    def stream(self):
        return sys.stderr if self.errors else sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler assigns it once; the property decides instead
        pass


class _Below(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def configure(level: int = logging.INFO) -> None:
    """Bare lines: INFO and below to stdout, WARNING and above to stderr. Idempotent: calling it
    again replaces the handlers it added before rather than printing every line twice."""
    out, err = _Console(errors=False), _Console(errors=True)
    out.addFilter(_Below(logging.WARNING))
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(logging.Formatter("%(message)s"))
    for name in NAMES:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _Console)]:
            logger.removeHandler(old)
        logger.addHandler(out)
        logger.addHandler(err)
        logger.setLevel(level)
        logger.propagate = False
