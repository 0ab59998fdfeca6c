"""Data preparation: read every split, fix the label set from train, and fingerprint the inputs.

The fingerprint hashes file contents and reader options, never paths, so the same data
copied to another folder (or machine) is recognised as the same data.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nlpstd.data.readers import apply_limit, read_all, read_bytes, read_text
from nlpstd.errors import DataError

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import DataSpec, Standard

_INTEGER = re.compile(r"-?\d+")


@dataclass
class PreparedData:
    task: str
    labels: list[str]  # the label set of train, in a stable order
    splits: dict[str, list[dict]]  # "train", "validation", optionally "test"
    fingerprint: str
    sources: dict[str, str] = field(default_factory=dict)  # split -> the file it was read from


def prepare(std: Standard) -> PreparedData:
    """Read and check every split, then apply the example limits.

    Labels come from the whole train file and every split is checked whole, so a quick run
    with `max_*_examples` has the same label map, and fails on the same rows, as a full run.
    """
    data, task = std.data, std.task
    full = {split: read_all(data, split, task) for split in data.files()}
    labels = label_set(task, full["train"])
    for split, records in full.items():
        if split != "train":
            _check_known(data, split, task, records, labels)
    splits = {split: apply_limit(data, split, records) for split, records in full.items()}
    return PreparedData(task, labels, splits, fingerprint(data), {split: f.path for split, f in data.files().items()})


def label_set(task: str, records: list[dict]) -> list[str]:
    """Token tasks: O, then B-T, I-T per entity type A-Z; classes: sorted (numerically if integers)."""
    if task == "token-classification":
        return ["O"] + [f"{prefix}-{kind}" for kind in sorted(_entity_types(records)) for prefix in "BI"]
    classes = {record["label"] for record in records}
    if all(_INTEGER.fullmatch(label) for label in classes):
        return sorted(classes, key=int)
    return sorted(classes)


def _entity_types(records: list[dict]) -> set[str]:
    if records and "tags" in records[0]:
        return {tag[2:] for record in records for tag in record["tags"] if tag != "O"}
    return {span[2] for record in records for span in record["spans"]}


def _check_known(data: DataSpec, split: str, task: str, records: list[dict], labels: list[str]) -> None:
    """A label that train never shows could never be predicted: reject it at its exact line."""
    path = data.files()[split].path
    if task == "sequence-classification":
        known = set(labels)
        for record in records:
            if record["label"] not in known:
                message = f"label {record['label']!r} is not in train's labels ({', '.join(labels)})"
                raise DataError(path, record["line"], data.label_column, message)
        return
    types = sorted({label[2:] for label in labels if label != "O"})
    for record in records:
        if "tags" in record:
            for offset, tag in enumerate(record["tags"]):
                if tag != "O" and tag[2:] not in types:
                    message = f"entity type {tag[2:]!r} of tag {tag!r} is not in train's types ({', '.join(types)})"
                    raise DataError(path, record["line"] + offset, "tag", message)
        elif any(span[2] not in types for span in record["spans"]):
            index, label = _first_unknown_entity(data, split, record["line"], set(types))
            message = f"entity type {label!r} is not in train's types ({', '.join(types)})"
            raise DataError(path, record["line"], f"{data.entities_field}[{index}].label", message)


def _first_unknown_entity(data: DataSpec, split: str, line: int, known: set[str]) -> tuple[int, str]:
    """Index in the file's own order (records hold spans sorted), found by re-reading the line."""
    text = read_text(data.files()[split].path, data.encoding_of(split))
    entities = json.loads(text.split("\n")[line - 1])[data.entities_field]
    for index, item in enumerate(entities):
        label = (item["label"] if isinstance(item, dict) else item[2]).strip()
        if label not in known:
            return index, label
    raise AssertionError("a record with an unknown entity type has one in its line")


def fingerprint(data: DataSpec) -> str:
    """sha256 over each split's bytes and the reader options that shape the examples."""
    digest = hashlib.sha256()
    for split, data_file in data.files().items():
        content = hashlib.sha256(read_bytes(data_file.path)).hexdigest()
        digest.update(f"{split}:{content}\n".encode())
    options = {
        "format": data.format,
        "encodings": {split: data.encoding_of(split) for split in data.files()},
        "text_column": data.text_column,
        "text_pair_column": data.text_pair_column,
        "label_column": data.label_column,
        "quoting": data.quoting,
        "entities_field": data.entities_field,
        "span_end": data.span_end,
        "max_train_examples": data.max_train_examples,
        "max_eval_examples": data.max_eval_examples,
        "label_subwords": data.label_subwords,
        "max_length": data.max_length,
    }
    digest.update(json.dumps(options, sort_keys=True).encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Save / load


def save(prepared: PreparedData, out_dir: Path) -> None:
    """out_dir/<split>.jsonl, labels.json and summary.json (counts for people and trackers)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, records in prepared.splits.items():
        with open(out_dir / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    (out_dir / "labels.json").write_text(json.dumps(prepared.labels, indent=2) + "\n", encoding="utf-8")
    summary = {
        "task": prepared.task,
        "fingerprint": prepared.fingerprint,
        "sources": prepared.sources,
        "examples": {split: len(records) for split, records in prepared.splits.items()},
        "label_counts": {split: _label_counts(records) for split, records in prepared.splits.items()},
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _label_counts(records: list[dict]) -> dict[str, int]:
    """Classes per example; for token data, entity mentions per type (B- tags or spans)."""
    counts: Counter[str] = Counter()
    for record in records:
        if "tags" in record:
            counts.update(tag[2:] for tag in record["tags"] if tag.startswith("B-"))
        elif "spans" in record:
            counts.update(span[2] for span in record["spans"])
        else:
            counts[record["label"]] += 1
    return dict(sorted(counts.items()))


def load(data_dir: Path) -> PreparedData:
    """The inverse of `save`."""
    data_dir = Path(data_dir)
    try:
        summary = json.loads((data_dir / "summary.json").read_text(encoding="utf-8"))
        labels = json.loads((data_dir / "labels.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(data_dir, None, None, f"not a prepared-data folder ({exc}); run the prepare stage first") from None
    splits = {}
    for split in summary["examples"]:
        with open(data_dir / f"{split}.jsonl", encoding="utf-8") as handle:
            splits[split] = [json.loads(line) for line in handle if line.strip()]
    return PreparedData(summary["task"], labels, splits, summary["fingerprint"], summary.get("sources", {}))
