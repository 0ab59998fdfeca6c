"""One process at a time in an output folder or a checkpoint folder.

Two runs writing into one `--out` delete each other's partial folders and resume each other's live
checkpoints. A lock is an OS file lock (`flock`) on a file beside the folder: the kernel releases it
when its holder exits, however it exits (`kill -9` included), so a lock left by a dead process is
never in the way. The file holds who took it (host, PID, start, command) so the refusal can say who
is in the way; it is removed on release, which leaves nothing beside the folder after a clean run.
Where the file system does not share locks between machines (some network mounts), two machines
could both take one: run one writer per folder there.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from nlpstd.errors import NlpstdError


class FolderInUse(NlpstdError):
    """Another process holds the lock of the folder this one would write into."""


def lock_path(folder: Path) -> Path:
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.lock")


@contextlib.contextmanager
def exclusive(folder: Path, purpose: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold `folder` for this process, or refuse naming the holder: at once, or once `wait_s` seconds
    have passed (a pipeline's retry may start while the failed attempt is still being torn down).
    `purpose` says what the folder is in the refusal ("output folder", "checkpoint folder")."""
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            handle.close()
            if time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            raise FolderInUse(f"{folder}: this {purpose} is in use by {holder}; wait for it to finish, or choose "
                              "another folder") from None
        if _same_file(handle, path):  # not a file a releasing holder just removed
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                 "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                 "command": " ".join(sys.argv)[:500]}))
        handle.flush()
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # before unlocking: a waiter that then locks the old file sees it is gone and retries
        handle.close()


def _same_file(handle, path: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"process {info['pid']} on {info['host']} since {info['since']} ({info['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
