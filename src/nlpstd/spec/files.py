"""The checks that read files before a run: every data file and the export destination (`check_files`).
(The base model's config.json is read at load time, by `base_config`.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nlpstd.errors import NlpstdError, StandardError
from nlpstd.spec.loading import _parse_yaml, _read_standard
from nlpstd.spec.messages import _dotted, _file_kind, _line_of
from nlpstd.spec.schema import Standard


def check_files(std: Standard, path: str | Path) -> list[str]:
    """Every referenced data file exists, is a regular file and is readable; returns the files checked.
    A named pipe, a folder or a device is refused from its metadata alone: opening a pipe blocks
    until something writes to it, and /dev/zero never ends."""
    path = Path(path)
    lines, _ = _parse_yaml(path, _read_standard(path))
    checked = []
    for split, data_file in std.data.files().items():
        loc = ("data", split)
        if std.data.format == "datasets":  # a saved dataset is a folder, or a hub id
            from nlpstd.data.columnar import check_source

            try:
                check_source(data_file)
            except NlpstdError as exc:
                raise StandardError(path, _line_of(loc, lines), _dotted(loc), str(exc)) from None
            checked.append(data_file.path)
            continue
        if data_file.path.startswith("s3://"):
            from nlpstd import storage

            try:
                storage.fetch(data_file.path)  # into the local cache, where data-prep finds it
            except NlpstdError as exc:
                raise StandardError(path, _line_of(loc, lines), _dotted(loc), str(exc)) from None
            checked.append(data_file.path)
            continue
        try:
            mode = os.stat(data_file.path).st_mode
            if not stat.S_ISREG(mode):
                raise StandardError(path, _line_of(loc, lines), _dotted(loc), f"{data_file.path} is {_file_kind(mode)}, not a file")
            with open(data_file.path, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise StandardError(path, _line_of(loc, lines), _dotted(loc), f"cannot read {data_file.path}: {exc.strerror}") from None
        checked.append(data_file.path)
    if std.export.destination:  # a destination an export may not write into is refused before hours of training
        from nlpstd.export import destination

        loc = ("export", "destination")
        try:
            destination.check(std.export.destination, std.export.register_as or std.name)
        except NlpstdError as exc:
            raise StandardError(path, _line_of(loc, lines), _dotted(loc), str(exc)) from None
    return checked
