"""What produced a stage folder, so that a later stage never reads another recipe's output.

Each stage writes `stage.json` into its folder: the stage, its *identity* and the data fingerprint.
The identity hashes the parts of the standard the stage depends on (`SECTIONS`) together with the
identities of the stages it read, so it changes whenever anything upstream of the folder changes
and stays put when only a later stage's settings do (a new export format does not invalidate a
fine-tuned model). A stage reading an input computes the identity that input must have under its
own standard and refuses a folder that says otherwise, naming both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nlpstd.errors import NlpstdError
from nlpstd.hashing import sha256_json
from nlpstd.jsonio import write_json
from nlpstd.spec import NOT_RECIPE, Standard
from nlpstd.stages.contract import STAGES, inputs_of

FILE = "stage.json"

SECTIONS: dict[str, tuple[str, ...]] = {stage.name: stage.sections for stage in STAGES}


def section_key(std: Standard, sections: tuple[str, ...], *extra: str) -> str:
    """A hash of the named parts of the standard (and `extra` strings): equal keys, interchangeable outputs.
    Settings of speed and placement (`spec.NOT_RECIPE`) never count."""
    data = std.to_dict()
    data["runtime"] = {key: value for key, value in data["runtime"].items() if key not in NOT_RECIPE}
    chosen = {name: _at(data, name) for name in sections}
    return sha256_json([chosen, *extra])


def identity(stage: str, std: Standard) -> str:
    """The identity a `stage` folder made under `std` has: its sections, then its inputs' identities."""
    return section_key(std, SECTIONS[stage], *(f"{s}={identity(s, std)}" for s in inputs_of(stage, std)))


def write(folder: Path, stage: str, std: Standard, data_fingerprint: str, **extra: Any) -> None:
    """`stage.json` of a stage folder being written (before it is published)."""
    record = {"stage": stage, "identity": identity(stage, std), "standard": std.name, "spec_hash": std.spec_hash(),
              "data_fingerprint": data_fingerprint,
              "inputs": {s: identity(s, std) for s in inputs_of(stage, std)}, **extra}
    write_json(Path(folder) / FILE, record)


def read(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def require(folder: Path, stage: str, std: Standard, data_fingerprint: str | None = None, allow_other: bool = False) -> None:
    """Refuse `folder` as this standard's `stage` output unless it is one: same identity, and (when
    given) made from the same prepared data. `allow_other` lets a user reuse it knowingly."""
    if allow_other:
        return
    record, folder = read(folder), Path(folder)
    hint = f"rerun {stage} (or pass --allow-other-inputs to use it anyway)"
    if record is None:
        raise NlpstdError(f"{folder}: no {FILE}: not a {stage} output of nlpstd; {hint}")
    if record.get("stage") != stage:
        raise NlpstdError(f"{folder}: holds the output of {record.get('stage')!r}, not of {stage}; {hint}")
    expected = identity(stage, std)
    if record.get("identity") != expected:
        raise NlpstdError(f"{folder}: {stage} output of another recipe (standard {record.get('standard')!r}, "
                          f"{stage} identity {str(record.get('identity'))[:12]}; {std.name!r} needs {expected[:12]}); {hint}")
    if data_fingerprint is not None and record.get("data_fingerprint") != data_fingerprint:
        raise NlpstdError(f"{folder}: {stage} output made from other data (data fingerprint "
                          f"{str(record.get('data_fingerprint'))[:12]}; the prepared data has {data_fingerprint[:12]}); {hint}")


def _at(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data
