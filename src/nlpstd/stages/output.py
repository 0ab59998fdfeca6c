"""Stage outputs appear whole or not at all.

A stage writes into `<out>/.<name>.partial/` and renames it to `<out>/<name>/` when done, so a
failed or killed stage never leaves a folder a later stage could mistake for a result. The
training stages (pretrain, finetune) keep their partial folder on failure: its checkpoints
are what a rerun resumes from.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nlpstd import locks
from nlpstd.fsutil import replace_dir
from nlpstd.jsonio import write_json

CHECKPOINT_LOCK_WAIT_S = 120  # a retried pipeline task may start before its failed attempt has let go


def partial_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}.partial")


@contextlib.contextmanager
def staged(out_dir: Path, keep_on_error: bool = False, work_dir: Path | None = None) -> Iterator[Path]:
    """Yield the partial folder to write into; publish it as `out_dir` on success.

    `work_dir` puts the partial folder elsewhere: a pipeline task's output folder is new on
    every run, so its checkpoints live where the next run (or retry) finds them.
    """
    from nlpstd import runtime  # torch: imported by the stages that stage a folder, not by every reader of these helpers

    out_dir = Path(out_dir)
    tmp = Path(work_dir) if work_dir else partial_dir(out_dir)
    if not runtime.is_main():  # under torchrun the main process alone writes and publishes; the others share its folder
        tmp.mkdir(parents=True, exist_ok=True)
        yield tmp
        return
    # checkpoints a rerun resumes from are one process's at a time: two runs of one recipe (a schedule
    # overlapping a manual run, on a shared volume) must not resume and overwrite each other's
    held = locks.exclusive(tmp, "checkpoint folder", wait_s=CHECKPOINT_LOCK_WAIT_S) if keep_on_error else contextlib.nullcontext()
    with held:
        if not keep_on_error:
            shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            yield tmp
        except BaseException:
            if not keep_on_error:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        if tmp != partial_dir(out_dir):  # move beside the target first (maybe across file systems), then rename
            shutil.rmtree(partial_dir(out_dir), ignore_errors=True)
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(shutil.move(str(tmp), str(partial_dir(out_dir))))
        replace_dir(tmp, out_dir)


def write_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    write_json(Path(folder) / "metrics.json", metrics, sort_keys=True)
