"""The one atomic write: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import stat

import pytest

from nlpstd import fsutil, jsonio


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "current.json"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with fsutil.atomic_file(path) as out:
            out.write(b"half")
            raise RuntimeError("stopped")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["current.json"]


def test_write_text_replaces_the_file_in_utf8_creates_its_folder_and_leaves_nothing_beside_it(tmp_path):
    path = tmp_path / "new" / "notes.txt"
    fsutil.write_text(path, "first")
    fsutil.write_text(path, "人名 second\n")
    assert path.read_bytes() == "人名 second\n".encode("utf-8")
    assert os.listdir(path.parent) == ["notes.txt"]


def test_written_files_get_the_usual_permissions_not_a_private_temporary_files(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = jsonio.write_json(tmp_path / "metrics.json", {"f1": 0.5})
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert jsonio.read_json(path) == {"f1": 0.5}
