"""`nlpstd pipeline ...`: the Kubeflow pipeline commands (`python -m pipelines ...`) under the one `nlpstd` command.

`pipelines/` and `components/` sit beside `src/` in a checkout and are not part of the installed
package (the image and the editable install both run from a checkout), so the command finds the
checkout first: from where nlpstd is installed (an editable install points into it), else the
current folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nlpstd
from nlpstd.errors import NlpstdError

PROG = "nlpstd pipeline"


def is_checkout(folder: Path) -> bool:
    """A checkout of nlpstd holds the pipeline command and the components it builds from."""
    return (folder / "pipelines" / "__main__.py").is_file() and (folder / "components").is_dir()


def find_checkout(start: Path | None = None, cwd: Path | None = None) -> Path:
    """The checkout root: the first parent of `start` (nlpstd's own folder) that is one, else `cwd`."""
    start = Path(nlpstd.__file__).resolve().parent if start is None else start
    cwd = Path.cwd() if cwd is None else cwd
    for folder in (*start.parents, cwd):
        if is_checkout(folder):
            return folder
    raise NlpstdError(f"no pipelines/__main__.py and components/ above {start} nor in {cwd}: "
                      f"`{PROG}` runs from a checkout of nlpstd (cd into one, or pip install -e it)")


def main(argv: list[str], start: Path | None = None, cwd: Path | None = None) -> int:
    """Run `python -m pipelines` with `argv`, its help and usage naming `nlpstd pipeline`."""
    root = str(find_checkout(start, cwd))
    if root not in sys.path:
        sys.path.insert(0, root)
    from pipelines.__main__ import main as pipelines_main

    return pipelines_main(argv, prog=PROG)
