"""Stage outputs appear whole or not at all.

A stage writes into `<out>/.<name>.partial/` and renames it to `<out>/<name>/` when done, so a
failed or killed stage never leaves a folder a later stage could mistake for a result. The
fine-tuning stage keeps its partial folder on failure: its checkpoints are what a rerun
resumes from.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nlpstd.train.checkpoint import replace_dir


def partial_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}.partial")


@contextlib.contextmanager
def staged(out_dir: Path, keep_on_error: bool = False) -> Iterator[Path]:
    """Yield the partial folder to write into; publish it as `out_dir` on success."""
    out_dir, tmp = Path(out_dir), partial_dir(out_dir)
    if not keep_on_error:
        shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        if not keep_on_error:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out_dir)


def write_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    (Path(folder) / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
