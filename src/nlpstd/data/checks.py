"""The `data.checks` limits: examples a split repeats, and validation/test examples train already holds.

Both are counted from the records alone, without a tokenizer, so `nlpstd validate` refuses what
data-prep refuses, with the same words: data-prep's report (`nlpstd.data.report`) shows the same
figures, and `violations` reads them from either.

Examples are compared by what the model reads: a CoNLL sentence by its token sequence (the
`-DOCSTART-` document markers are not sentences: the reader drops them, so they are never
compared), a text by the text the reader kept (surrounding whitespace trimmed), a text pair by
both texts. "Normalized" also ignores case and runs of whitespace. Every comparison goes
through a hash set, so the checks cost one pass over each split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nlpstd.errors import DataError

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import DataChecks

REPORT_MD = "data_report.md"  # where data-prep lists the examples a check counted
EVAL_SPLITS = ("validation", "test")

# ---------------------------------------------------------------------------------------
# What an example is, for comparisons


def example_text(record: dict) -> str:
    """The example as one line of text, for people: tokens joined by spaces, a pair joined by ` ||| `."""
    if "tokens" in record:
        return " ".join(record["tokens"])
    return record["text"] + (f" ||| {record['text_pair']}" if "text_pair" in record else "")


def exact_key(record: dict) -> tuple:
    """Verbatim identity: the token sequence, or the text (and its pair) as read."""
    if "tokens" in record:
        return ("tokens", *record["tokens"])
    return ("text", record["text"], record.get("text_pair"))


def normalized_key(record: dict) -> tuple:
    """The same, with runs of whitespace collapsed and case folded (`İ`, `ß` included)."""
    if "tokens" in record:
        return ("tokens", " ".join(" ".join(record["tokens"]).split()).casefold())
    pair = record.get("text_pair")
    return ("text", _normalize(record["text"]), None if pair is None else _normalize(pair))


def _normalize(text: str) -> str:
    return " ".join(text.split()).casefold()


def gold(record: dict) -> Any:
    """What an example is labelled with, comparable across copies of it."""
    if "tags" in record:
        return tuple(record["tags"])
    if "spans" in record:
        return tuple(tuple(span) for span in record["spans"])
    return record["label"]


def share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


# ---------------------------------------------------------------------------------------
# Repeats within a split, overlap with train


def duplicates(records: list[dict]) -> tuple[list[int], int]:
    """Indices of examples that repeat an earlier one of the same split, and how many of those carry other labels."""
    first: dict[tuple, int] = {}
    repeats, conflicting = [], 0
    for index, record in enumerate(records):
        key = exact_key(record)
        if key in first:
            repeats.append(index)
            conflicting += gold(records[first[key]]) != gold(record)
        else:
            first[key] = index
    return repeats, conflicting


def overlap(train: list[dict], records: list[dict]) -> dict:
    """The examples of `records` that train contains, exactly or once normalized; each with the
    index and line of its first copy in train and whether the two carry the same labels."""
    exact_index: dict[tuple, int] = {}
    normalized_index: dict[tuple, int] = {}
    for index, record in enumerate(train):
        exact_index.setdefault(exact_key(record), index)
        normalized_index.setdefault(normalized_key(record), index)
    items = []
    for index, record in enumerate(records):
        match, found = "exact", exact_index.get(exact_key(record))
        if found is None:
            match, found = "normalized", normalized_index.get(normalized_key(record))
        if found is not None:
            items.append({"index": index, "line": record.get("line"), "train_index": found,
                          "train_line": train[found].get("line"), "match": match,
                          "same_labels": gold(train[found]) == gold(record), "text": example_text(record)})
    exact = sum(item["match"] == "exact" for item in items)
    total = len(records)
    return {"examples": total, "exact": exact, "exact_share": share(exact, total), "normalized": len(items),
            "normalized_share": share(len(items), total), "indices": [item["index"] for item in items], "items": items}


def figures(splits: dict[str, list[dict]]) -> dict:
    """What the checks compare, shaped as the data report's `splits` and `overlap` sections."""
    counted = {}
    for split, records in splits.items():
        repeats, _ = duplicates(records)
        counted[split] = {"examples": len(records), "duplicates": len(repeats), "duplicate_share": share(len(repeats), len(records))}
    overlaps = {split: overlap(splits["train"], splits[split]) for split in EVAL_SPLITS if split in splits}
    return {"splits": counted, "overlap": overlaps}


# ---------------------------------------------------------------------------------------
# The limits


def violations(found: dict, checks: DataChecks) -> list[tuple[str, str, str]]:
    """(split, setting, message) for each limit of `checks` that `found` (the `figures`, or the data
    report) exceeds."""
    exceeded: list[tuple[str, str, str]] = []
    if checks.max_overlap is not None:
        for split, seen in found["overlap"].items():
            if seen["normalized_share"] > checks.max_overlap:
                exceeded.append((split, "max_overlap", (
                    f"{seen['normalized']:,} of {seen['examples']:,} {split} examples ({seen['normalized_share']:.2%}) also "
                    f"occur in train ({seen['exact']:,} verbatim), above data.checks.max_overlap {checks.max_overlap:g}")))
    if checks.max_duplicates is not None:
        for split, stats in found["splits"].items():
            if stats["duplicate_share"] > checks.max_duplicates:
                exceeded.append((split, "max_duplicates", (
                    f"{stats['duplicates']:,} of {stats['examples']:,} {split} examples ({stats['duplicate_share']:.2%}) repeat "
                    f"an earlier {split} example, above data.checks.max_duplicates {checks.max_duplicates:g}")))
    return exceeded


def enforce(exceeded: list[tuple[str, str, str]], checks: DataChecks, sources: dict[str, str]) -> list[str]:
    """The messages to warn with (on_violation: warn); with on_violation: fail, the first violation
    raises a DataError naming the split's file, the share, the limit and the setting."""
    if exceeded and checks.on_violation == "fail":
        split, setting, message = exceeded[0]
        more = f" (and {len(exceeded) - 1} more)" if len(exceeded) > 1 else ""
        raise DataError(sources.get(split, split), None, f"data.checks.{setting}",
                        f"{message}{more}; raise data.checks.{setting} (null turns it off), or set data.checks.on_violation: "
                        f"warn to train anyway and list the examples in {REPORT_MD}")
    return [message for _, _, message in exceeded]
