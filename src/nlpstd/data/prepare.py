"""Data preparation: read every split, fix the label set from train, and fingerprint the inputs.

`check_data` is everything data-prep refuses before a tokenizer loads: bad rows, labels train
never shows, training data a model cannot learn from, the `data.checks` limits and the corpus
files. `nlpstd validate` runs the same function, so the two cannot disagree about a file.

The fingerprint hashes file contents and reader options, never paths, so the same data
copied to another folder (or machine) is recognised as the same data.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlpstd.data import checks as data_checks
from nlpstd.data import corpus as corpus_mod
from nlpstd.data.columnar import content_hash
from nlpstd.data.jsonl import span_labels
from nlpstd.data.labelmap import describe
from nlpstd.data.readers import apply_limit, read_all
from nlpstd.data.sampling import carve, labels_of
from nlpstd.data.textfile import read_lines
from nlpstd.errors import DataError
from nlpstd.hashing import sha256_text
from nlpstd.jsonio import write_json
from nlpstd.spans import entity_spans

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import DataFile, DataSpec, Standard

_INTEGER = re.compile(r"-?\d+")


@dataclass
class PreparedData:
    task: str
    labels: list[str]  # the label set of train, in a stable order
    splits: dict[str, list[dict]]  # "train", "validation", optionally "test"
    fingerprint: str
    sources: dict[str, str] = field(default_factory=dict)  # split -> the file it was read from (train's, for a carved split)
    read: dict[str, int] = field(default_factory=dict, compare=False)  # split -> examples in its file (or cut), before the limits
    carved: dict[str, dict] = field(default_factory=dict)  # split -> how it was cut from train (`split_from_train`)
    limits: dict[str, dict] = field(default_factory=dict, compare=False)  # split -> what its limit kept (`limit_record`)


@dataclass
class CheckedData:
    """What `check_data` read: the prepared splits, the corpus manifest, and a message per
    `data.checks` limit exceeded under on_violation: warn."""

    prepared: PreparedData
    corpus: corpus_mod.Corpus | None
    warnings: list[str]

    def summary(self) -> str:
        """What was read, in words: `3 data files, 14,041 train / 3,250 validation examples, 9 labels`."""
        prepared = self.prepared
        counts = []
        for split, records in prepared.splits.items():
            total = prepared.read.get(split, len(records))
            counts.append(f"{len(records):,} {split}" if len(records) == total else f"{len(records):,} of {total:,} {split}")
        text = f"{len(prepared.splits)} data files, {' / '.join(counts)} examples, {len(prepared.labels)} labels"
        if self.corpus is not None:
            files = self.corpus.files
            text += (f", corpus {len(files)} file{'s' if len(files) > 1 else ''}, {sum(f['documents'] for f in files):,} "
                     f"documents ({sum(f['chars'] for f in files):,} characters)")
            fell_back = len(corpus_mod.fallbacks(self.corpus))
            text += f", {fell_back} read as Latin-1" if fell_back else ""
        return text


def check_data(std: Standard) -> CheckedData:
    """Everything data-prep refuses before it loads a tokenizer, in the order it refuses it: every
    split (`prepare`), the `data.checks` limits under on_violation: fail, then the corpus files.

    The corpus is decoded and counted a file at a time; no document is kept."""
    prepared = prepare(std)
    found = data_checks.figures(prepared.splits, prepared.read, std.data.sample)
    warnings = data_checks.enforce(data_checks.violations(found, std.data.checks), std.data.checks, prepared.sources)
    warnings += data_checks.limit_warnings(prepared.limits)
    training = corpus_mod.TrainingText(prepared.sources["train"], prepared.splits["train"])
    corpus = corpus_mod.prepare(std.pretrain.corpus, std.seed, training) if std.pretrain.enabled else None
    return CheckedData(prepared, corpus, warnings)


def prepare(std: Standard) -> PreparedData:
    """Read and check every split (cutting held-out splits from train first, when asked), then apply
    the example limits.

    Labels come from the whole train split and every split is checked whole, so a quick run
    with `max_*_examples` has the same label map, and fails on the same rows, as a full run.
    What is trained on is the limited train split, so it is that which must hold two classes
    (or an entity).
    """
    data, task = std.data, std.task
    full = {split: read_all(data, split, task) for split in data.files()}
    carved = {}
    if data.split_from_train is not None:
        full, carved = cut_from_train(data, full, std.seed)
    splits = {split: apply_limit(data, split, records, std.seed) for split, records in full.items()}
    _check_learnable(data, task, full["train"], splits["train"])  # first: with no class or type, every label is unknown
    labels = label_set(task, full["train"])
    for split, records in full.items():
        if split != "train":
            _check_known(data, split, task, records, labels)
    sources = {split: _file_of(data, split).path for split in full}
    limits = {split: limit_record(data, split, full[split], kept) for split, kept in splits.items() if len(kept) < len(full[split])}
    return PreparedData(task, labels, splits, fingerprint(data, std.seed), sources,
                        {split: len(records) for split, records in full.items()}, carved, limits)


def cut_from_train(data: DataSpec, full: dict[str, list[dict]], seed: int) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """The splits with validation/test cut from train (`data.split_from_train`), in the order train,
    validation, test; and, per cut split, where it came from, for the report and summary.json."""
    whole = full["train"]
    parts = carve(data, whole, seed)
    settings = data.split_from_train
    carved = {split: {"from": "train", "file": data.train.path, "share": getattr(settings, split), "examples": len(records),
                      "train_examples": len(whole), "stratified": settings.stratify, "seed": seed}
              for split, records in parts.items() if split != "train"}
    merged = {**full, **parts}
    return {split: merged[split] for split in ("train", "validation", "test") if split in merged}, carved


def limit_record(data: DataSpec, split: str, records: list[dict], kept: list[dict]) -> dict:
    """What a limit kept of a split: how many examples, how chosen, and the labels (classes, or entity
    types) the split has that the kept examples lack."""
    setting = "max_train_examples" if split == "train" else "max_eval_examples"
    present = {label for record in records for label in labels_of(record)}
    left = present - {label for record in kept for label in labels_of(record)}
    return {"setting": setting, "sample": data.sample, "examples": len(records), "kept": len(kept),
            "labels": len(present), "missing": sorted(left)}


def _file_of(data: DataSpec, split: str) -> DataFile:
    """The file a split was read from: its own, or train's when it was cut from train."""
    return data.files().get(split) or data.train


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
    path = _file_of(data, split).path
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
            where, label = _first_unknown_entity(data, split, record, set(types))
            message = f"entity type {label!r} is not in train's types ({', '.join(types)})"
            raise DataError(path, record["line"], where, message)


def _first_unknown_entity(data: DataSpec, split: str, record: dict, known: set[str]) -> tuple[str, str]:
    """Where the first unknown type is written and the type, in the file's own order (records hold
    spans sorted), found by re-reading a JSON Lines line; a columnar row is named by its field."""
    if data.format != "jsonl":
        return data.entities_field, next(span[2] for span in record["spans"] if span[2] not in known)
    data_file = _file_of(data, split)
    lines = read_lines(data_file.path, data_file.encoding or data.encoding)
    entities = json.loads(next(islice(lines, record["line"] - 1, None)))[data.entities_field]
    for where, label in span_labels(data.entities_field, entities):
        if label not in known:
            return where, label
    return data.entities_field, next(span[2] for span in record["spans"] if span[2] not in known)  # a numbered label, named since


def _check_learnable(data: DataSpec, task: str, records: list[dict], kept: list[dict]) -> None:
    """A classifier trained on one class has nothing to tell apart (its config would even say
    regression), and a tagger that never sees an entity learns to tag everything O: refuse both,
    at the first example trained on, saying so when `max_train_examples` is what left the rest out."""
    path, first = data.files()["train"].path, kept[0]["line"]
    if task == "sequence-classification":
        classes = {record["label"] for record in kept}
        if len(classes) > 1:
            return
        label = next(iter(classes))
        other = next((record for record in records if record["label"] != label), None)
        if other is None:
            message = f"every training example has the label {label!r}; a classifier needs at least two classes"
        else:
            message = (f"the training examples kept by data.max_train_examples ({len(kept):,}) all have the label {label!r}, "
                       f"while line {other['line']} has {other['label']!r}; a classifier needs at least two classes: raise "
                       "max_train_examples, or set data.sample: stratified")
        raise DataError(path, first, data.label_column, message)
    if any(_has_entity(record) for record in kept):
        return
    field = "tag" if data.format == "conll" else data.entities_field
    empty = "every tag is O" if data.format == "conll" else f"every {data.entities_field} list is empty"
    other = next((record for record in records if _has_entity(record)), None)
    if other is None:
        message = f"no training example holds an entity ({empty}); a tagger needs at least one entity to learn"
    else:
        message = (f"the training examples kept by data.max_train_examples ({len(kept):,}) hold no entity ({empty}), while "
                   f"line {other['line']} has one; a tagger needs at least one entity to learn: raise max_train_examples, "
                   "or set data.sample: stratified")
    raise DataError(path, first, field, message)


def _has_entity(record: dict) -> bool:
    return any(tag != "O" for tag in record["tags"]) if "tags" in record else bool(record["spans"])


def fingerprint(data: DataSpec, seed: int = 0) -> str:
    """sha256 over each split's bytes and the reader options that shape the examples (`seed` counts when
    it draws a sample or cuts splits from train)."""
    lines = [f"{split}:{content_hash(data_file)}\n" for split, data_file in data.files().items()]
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
    # Later options count only when they differ from their default, so data read without them keeps its fingerprint.
    options.update(_changed(data, ("token_pattern", "word_unit", "sample", "split_from_train", "text_separator", "label_map",
                                   "header", "columns", "delimiter", "conll", "control_characters")))
    options.update({f"{split}.{key}": value for split, data_file in data.files().items()
                    for key, value in _changed(data_file, ("split", "subset")).items()})
    if data.sample != "head" or data.split_from_train is not None:
        options["seed"] = seed
    if data.label_map is not None:  # a names file counts by its names, not by its path
        options["label_names"] = describe(data.label_map)["names"]
    return sha256_text("".join(lines) + json.dumps(options, sort_keys=True))


def _changed(section: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The settings among `keys` that differ from their defaults, as JSON values."""
    dumped = section.model_dump(mode="json")
    defaults = type(section).model_fields
    return {key: dumped[key] for key in keys if getattr(section, key) != defaults[key].get_default(call_default_factory=True)}


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
    write_json(out_dir / "labels.json", prepared.labels)
    summary = {
        "task": prepared.task,
        "fingerprint": prepared.fingerprint,
        "sources": prepared.sources,
        **({"carved": prepared.carved} if prepared.carved else {}),
        "examples": {split: len(records) for split, records in prepared.splits.items()},
        "label_counts": {split: label_counts(records) for split, records in prepared.splits.items()},
    }
    write_json(out_dir / "summary.json", summary)


def label_counts(records: list[dict]) -> dict[str, int]:
    """Examples per class; for token data, entity mentions per type (not tags: a three-word name is one),
    chunked as seqeval reads IOB2 (`entity_spans`), so an entity that begins with a stray `I-X` counts,
    as training (`begin_strays`) and scoring read it. `summary.json` and the data report both count so."""
    counts: Counter[str] = Counter()
    for record in records:
        if "tags" in record:
            counts.update(label for label, _, _ in entity_spans(record["tags"]))
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
    return PreparedData(summary["task"], labels, splits, summary["fingerprint"], summary.get("sources", {}),
                        carved=summary.get("carved", {}))
