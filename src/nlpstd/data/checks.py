"""The `data.checks` limits: examples a split repeats, validation/test examples train already holds,
examples holding control characters, sub-words the vocabulary does not know, and gold spans that start
or end inside a word; and the warning when an example limit keeps fewer labels than its split has.

The first three are counted from the records alone, without a tokenizer, so `nlpstd validate` refuses
what data-prep refuses, with the same words: data-prep's report (`nlpstd.data.report`) shows the same
figures, and `violations` reads them from either. The last two need the tokenizer, so only data-prep
judges them, when its report could measure them.

Examples are compared by what the model reads: a CoNLL sentence by its token sequence (the
`-DOCSTART-` document markers are not sentences: the reader drops them, so they are never
compared), a text by the text the reader kept (surrounding whitespace trimmed), a text pair by
both texts. "Normalized" also ignores case and runs of whitespace. Every comparison goes
through a hash set, so the checks cost one pass over each split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nlpstd.data.hygiene import control_characters
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


def overlap(train: list[dict], records: list[dict], train_file: int | None = None, sample: str = "head") -> dict:
    """The examples of `records` that train contains, exactly or once normalized; each with the
    index and line of its first copy in train and whether the two carry the same labels.

    `train` is what is trained on; `train_file` is how many examples the train file holds, when
    `data.max_train_examples` kept fewer (chosen by `sample`), so the figures say what they were compared with."""
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
            "normalized_share": share(len(items), total), "train_examples": len(train),
            "train_file_examples": max(len(train), train_file or 0), "train_sample": sample,
            "indices": [item["index"] for item in items], "items": items}


def compared_with(seen: dict) -> str:
    """What an overlap was measured against, in words: `train`, or `the first 1,000 of 14,041 train examples`
    (`a random sample of ...` when data.sample drew them)."""
    kept, whole = seen.get("train_examples"), seen.get("train_file_examples")
    if kept is None or whole is None or kept >= whole:
        return "train"
    sample = seen.get("train_sample", "head")
    chosen = "the first" if sample == "head" else f"a {sample} sample of"
    return f"{chosen} {kept:,} of {whole:,} train examples (data.max_train_examples; the rest were not compared)"


def figures(splits: dict[str, list[dict]], read: dict[str, int] | None = None, sample: str = "head") -> dict:
    """What the checks compare, shaped as the data report's `splits` and `overlap` sections; `read` is
    each split's examples in its file, before the limits (`PreparedData.read`), chosen by `sample`."""
    counted = {}
    for split, records in splits.items():
        repeats, _ = duplicates(records)
        counted[split] = {"examples": len(records), "duplicates": len(repeats), "duplicate_share": share(len(repeats), len(records)),
                          "control": control_characters(records)}
    train_file = (read or {}).get("train")
    overlaps = {split: overlap(splits["train"], splits[split], train_file, sample) for split in EVAL_SPLITS if split in splits}
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
                    f"occur in {compared_with(seen)} ({seen['exact']:,} verbatim), above data.checks.max_overlap "
                    f"{checks.max_overlap:g}")))
    if checks.max_duplicates is not None:
        for split, stats in found["splits"].items():
            if stats["duplicate_share"] > checks.max_duplicates:
                exceeded.append((split, "max_duplicates", (
                    f"{stats['duplicates']:,} of {stats['examples']:,} {split} examples ({stats['duplicate_share']:.2%}) repeat "
                    f"an earlier {split} example, above data.checks.max_duplicates {checks.max_duplicates:g}")))
    exceeded += _control_violations(found, checks)
    # Measured with a tokenizer, so only data-prep's report holds these (`nlpstd validate` loads none).
    limit = checks.max_unknown_share
    if limit is not None:
        for split, stats in found["splits"].items():
            fit = stats.get("vocabulary")
            if fit and fit["unknown_share"] > limit:
                exceeded.append((split, "max_unknown_share", (
                    f"{fit['unknown_share']:.1%} of {split}'s sub-words are {fit['unknown_token']} and "
                    f"{fit['unknown_char_share']:.1%} of its characters cannot be represented by the tokenizer, above "
                    f"data.checks.max_unknown_share {limit:g}: the vocabulary does not fit this text; train one on it "
                    f"(tokenizer: {{train: wordpiece}} with model.size and pretraining) or choose a model.base for its language")))
    limit = checks.max_unaligned_spans
    if limit is not None:
        for split, stats in found["splits"].items():
            aligned = stats.get("alignment")
            if aligned and aligned["unaligned_share"] > limit:
                first = aligned["items"][0]
                exceeded.append((split, "max_unaligned_spans", (
                    f"{aligned['unaligned']:,} of {aligned['spans']:,} {split} gold spans ({aligned['unaligned_share']:.2%}) "
                    f"start or end inside a word (first: line {first['line']}, {first['label']} {first['span']!r}), above "
                    f"data.checks.max_unaligned_spans {limit:g}: they are tagged on whole words, not as annotated")))
    return exceeded


def _control_violations(found: dict, checks: DataChecks) -> list[tuple[str, str, str]]:
    """Splits whose share of examples holding control characters exceeds `max_control_characters`."""
    limit = checks.max_control_characters
    if limit is None:
        return []
    exceeded = []
    for split, stats in found["splits"].items():
        control = stats.get("control")
        if control and control["share"] > limit:
            first = control["items"][0]
            exceeded.append((split, "max_control_characters", (
                f"{control['with_control']:,} of {control['examples']:,} {split} examples ({control['share']:.2%}) hold "
                f"control characters ({control['characters']:,} in all; first: line {first['line']}, "
                f"{', '.join(first['characters'][:3])}), above data.checks.max_control_characters {limit:g}: remove them "
                "as the file is read (data.control_characters: remove) or clean the file")))
    return exceeded


def limit_warnings(limits: dict[str, dict]) -> list[str]:
    """One message per split whose example limit kept fewer labels (classes, or entity types) than the
    split has (`PreparedData.limits`): never an error, since a quick run may mean it, but a score
    or a model that has never seen a label says little about it."""
    return [limit_warning(split, found) for split, found in limits.items() if found["missing"]]


def limit_warning(split: str, found: dict) -> str:
    """The message, with what to do about it for the way the examples were chosen (`data.sample`)."""
    missing = found["missing"]
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    kept = f"data.{found['setting']} keeps {found['kept']:,} of {found['examples']:,} {split} examples"
    lacking = f"with {found['labels'] - len(missing)} of its {found['labels']} labels (missing: {shown})"
    if found["sample"] == "head":
        advice = "the first ones are kept (data.sample: head) and the file may be sorted by label; data.sample: stratified keeps every label"
    elif found["sample"] == "random":
        advice = "a random sample can miss a rare label; data.sample: stratified keeps every label"
    else:
        advice = f"a stratified sample keeps every label only when it holds at least {found['labels']} examples"
    return f"{kept} {lacking}: {advice}"


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
