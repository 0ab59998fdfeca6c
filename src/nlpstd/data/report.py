"""The data report: what the splits hold before any model sees them.

Sizes, labels (entities per type, or examples per class), lengths in words and sub-words,
truncation at `data.max_length`, empty and repeated examples, and the validation and test
examples that train already contains. A score on examples the model was trained on measures
memory, not generalisation: the evaluate stage reads the overlap written here and scores the
rest apart (`test_clean`).

Examples are compared by what the model reads: a CoNLL sentence by its token sequence (the
`-DOCSTART-` document markers are not sentences: the reader drops them, so they are never
compared), a text by the text the reader kept (surrounding whitespace trimmed), a text pair by
both texts. "Normalized" also ignores case and runs of whitespace. Every comparison goes
through a hash set, so the report costs one pass over each split.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from transformers import PreTrainedTokenizerFast

from nlpstd.data.encode import record_words
from nlpstd.data.prepare import PreparedData
from nlpstd.errors import DataError
from nlpstd.evaluate.report import save_figure

if TYPE_CHECKING:
    from nlpstd.spec import DataChecks

REPORT_JSON = "data_report.json"
REPORT_MD = "data_report.md"
MARKDOWN_ROWS = 20  # overlapping examples listed per split in the markdown; the JSON lists them all
EVAL_SPLITS = ("validation", "test")
# Lengths need the ids alone; skipping the masks makes tokenizing a split about five times faster.
_IDS_ONLY = {"return_attention_mask": False, "return_token_type_ids": False, "verbose": False}

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


# ---------------------------------------------------------------------------------------
# Per split


def entity_counts(tags: list[str]) -> Counter[str]:
    """Entities per type, as seqeval reads IOB2: an entity starts at B-X, or at I-X not following X."""
    counts: Counter[str] = Counter()
    previous = ""
    for tag in tags:
        kind = tag[2:]
        if tag.startswith("B-") or (tag.startswith("I-") and previous != kind):
            counts[kind] += 1
        previous = kind  # "" after O
    return counts


def label_counts(records: list[dict]) -> dict[str, int]:
    """Entity mentions per type for token data (not tags: a three-word name is one), examples per class otherwise."""
    counts: Counter[str] = Counter()
    for record in records:
        if "tags" in record:
            counts.update(entity_counts(record["tags"]))
        elif "spans" in record:
            counts.update(span[2] for span in record["spans"])
        else:
            counts[record["label"]] += 1
    return dict(sorted(counts.items()))


def word_lengths(records: list[dict]) -> list[int]:
    """Words per example: CoNLL tokens, or whitespace-separated words of the text (and its pair)."""
    if records and "tokens" in records[0]:
        return [len(record["tokens"]) for record in records]
    return [len(record["text"].split()) + len(record.get("text_pair", "").split()) for record in records]


def subword_lengths(tokenizer: PreTrainedTokenizerFast, records: list[dict]) -> list[int]:
    """Sub-words per example, special tokens included, untruncated: what `max_length` is compared with.
    Token tasks are split into words the way encoding splits them (`record_words`)."""
    if not records:
        return []
    if "tokens" in records[0] or "spans" in records[0]:
        words = [record_words(tokenizer, record)[0] for record in records]
        specials = tokenizer.num_special_tokens_to_add()
        lengths = [specials] * len(words)  # a record without words is its special tokens alone
        filled = [i for i, w in enumerate(words) if w]
        if filled:
            ids = tokenizer([words[i] for i in filled], is_split_into_words=True, **_IDS_ONLY)["input_ids"]
            for i, row in zip(filled, ids):
                lengths[i] = len(row)
        return lengths
    texts = [record["text"] for record in records]
    pairs = [record["text_pair"] for record in records] if "text_pair" in records[0] else None
    return [len(row) for row in tokenizer(texts, pairs, **_IDS_ONLY)["input_ids"]]


def length_summary(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {}
    values = np.asarray(lengths)
    return {"min": int(values.min()), "mean": round(float(values.mean()), 2), "median": float(np.median(values)),
            "p95": float(np.percentile(values, 95)), "max": int(values.max())}


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


def split_report(records: list[dict], subwords: list[int] | None, specials: int, max_length: int) -> dict:
    """Everything the report says about one split on its own."""
    words = word_lengths(records)
    empty = [i for i, n in enumerate(words) if n == 0 or (subwords is not None and subwords[i] <= specials)]
    repeats, conflicting = duplicates(records)
    total = len(records)
    out: dict[str, Any] = {
        "examples": total,
        "labels": label_counts(records),
        "words": length_summary(words),
        "word_lengths": dict(sorted(Counter(words).items())),
        "empty": len(empty),
        "empty_indices": empty,
        "duplicates": len(repeats),
        "duplicate_share": _share(len(repeats), total),
        "conflicting_duplicates": conflicting,
    }
    if subwords is not None:
        truncated = sum(n > max_length for n in subwords)
        out.update({"subwords": length_summary(subwords), "subword_lengths": dict(sorted(Counter(subwords).items())),
                    "truncated": truncated, "truncated_share": _share(truncated, total)})
    return out


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


# ---------------------------------------------------------------------------------------
# Across splits


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
    return {"examples": total, "exact": exact, "exact_share": _share(exact, total), "normalized": len(items),
            "normalized_share": _share(len(items), total), "indices": [item["index"] for item in items], "items": items}


def build(prepared: PreparedData, tokenizer: PreTrainedTokenizerFast | None, tokenizer_note: str, max_length: int,
          name: str = "", stride: int | None = None) -> dict:
    """The whole report as plain JSON data (checks are added by `check`). With `stride` (data.stride),
    examples over max_length are split into windows rather than cut; the report says which."""
    specials = tokenizer.num_special_tokens_to_add() if tokenizer is not None else 0
    splits = {}
    for split, records in prepared.splits.items():
        subwords = subword_lengths(tokenizer, records) if tokenizer is not None else None
        splits[split] = split_report(records, subwords, specials, max_length)
    train = prepared.splits["train"]
    return {
        "standard": name,
        "task": prepared.task,
        "fingerprint": prepared.fingerprint,
        "max_length": max_length,
        "stride": stride,
        "tokenizer": {"measured": tokenizer is not None, "note": tokenizer_note},
        "label_unit": "entities" if prepared.task == "token-classification" else "examples",
        "splits": splits,
        "overlap": {split: overlap(train, prepared.splits[split]) for split in EVAL_SPLITS if split in prepared.splits},
        "checks": {},
    }


# ---------------------------------------------------------------------------------------
# Checks


def check(report: dict, checks: DataChecks, sources: dict[str, str]) -> list[str]:
    """Compare the report with `data.checks`; record the settings and what exceeds them in the report.

    Returns one message per violation (on_violation: warn); with on_violation: fail, the first
    violation raises a DataError naming the split's file, the share, the limit and the setting."""
    violations: list[tuple[str, str, str]] = []  # (split, setting, message)
    if checks.max_overlap is not None:
        for split, found in report["overlap"].items():
            if found["normalized_share"] > checks.max_overlap:
                violations.append((split, "max_overlap", (
                    f"{found['normalized']:,} of {found['examples']:,} {split} examples ({found['normalized_share']:.2%}) also "
                    f"occur in train ({found['exact']:,} verbatim), above data.checks.max_overlap {checks.max_overlap:g}")))
    if checks.max_duplicates is not None:
        for split, stats in report["splits"].items():
            if stats["duplicate_share"] > checks.max_duplicates:
                violations.append((split, "max_duplicates", (
                    f"{stats['duplicates']:,} of {stats['examples']:,} {split} examples ({stats['duplicate_share']:.2%}) repeat "
                    f"an earlier {split} example, above data.checks.max_duplicates {checks.max_duplicates:g}")))
    report["checks"] = {**checks.model_dump(mode="json"), "violations": [message for _, _, message in violations]}
    if violations and checks.on_violation == "fail":
        split, setting, message = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise DataError(sources.get(split, split), None, f"data.checks.{setting}",
                        f"{message}{more}; raise data.checks.{setting} (null turns it off), or set data.checks.on_violation: "
                        f"warn to train anyway and list the examples in {REPORT_MD}")
    return [message for _, _, message in violations]


# ---------------------------------------------------------------------------------------
# Output


def write(report: dict, out_dir: Path) -> list[Path]:
    """`data_report.json`, `data_report.md` and `plots/*.png` in `out_dir`; returns the files written."""
    out_dir = Path(out_dir)
    plots = [plot_lengths(report, out_dir / "plots" / "lengths.png"), plot_labels(report, out_dir / "plots" / "labels.png")]
    (out_dir / REPORT_JSON).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / REPORT_MD).write_text(markdown(report, [p.relative_to(out_dir).as_posix() for p in plots]), encoding="utf-8")
    return [out_dir / REPORT_JSON, out_dir / REPORT_MD, *plots]


def overlap_indices(data_dir: Path) -> dict[str, list[int]]:
    """Per evaluated split, the indices (positions in `<split>.jsonl`) of examples train also holds;
    empty for a folder prepared before the report existed."""
    path = Path(data_dir) / REPORT_JSON
    if not path.is_file():
        return {}
    report = json.loads(path.read_text(encoding="utf-8"))
    return {split: found["indices"] for split, found in report.get("overlap", {}).items()}


def markdown(report: dict, plots: list[str]) -> str:
    """Verdict first (the checks), then one table per question, then the overlapping examples."""
    title = f"# Data report of {report['standard']}" if report.get("standard") else "# Data report"
    lines = [title, "", *_checks_section(report["checks"]), "",
             f"Task: {report['task']}. Sub-words: {report['tokenizer']['note']}.", ""]
    lines += _splits_section(report)
    lines += _labels_section(report)
    lines += _overlap_section(report["overlap"])
    if plots:
        lines += ["", "## Plots", "", *(f"![{Path(plot).stem}]({plot})" for plot in plots)]
    return "\n".join(lines) + "\n"


def _checks_section(checks: dict) -> list[str]:
    if not checks:
        return ["**Checks: not run**"]
    limits = ", ".join(f"{key} {'off' if checks[key] is None else f'{checks[key]:g}'}" for key in ("max_overlap", "max_duplicates"))
    violations = checks["violations"]
    if not violations:
        return [f"**Checks: passed** ({limits})"]
    plural = "s" if len(violations) > 1 else ""
    return [f"**Checks: {len(violations)} warning{plural}** ({limits}, on_violation {checks['on_violation']})", "",
            *(f"- {message}" for message in violations)]


def _splits_section(report: dict) -> list[str]:
    measured, max_length = report["tokenizer"]["measured"], report["max_length"]
    header = ["split", "examples", "empty", "duplicates", "words mean / p95 / max"]
    windows = report.get("stride") is not None
    longer = f"windowed (over {max_length})" if windows else f"truncated at {max_length}"
    header += ["sub-words mean / p95 / max", longer] if measured else []
    lines = ["## Splits", "", *_table_header(header)]
    for split, stats in report["splits"].items():
        repeats = _count(stats["duplicates"], stats["duplicate_share"])
        if stats["conflicting_duplicates"]:
            repeats += f", {stats['conflicting_duplicates']:,} with other labels"
        row = [split, f"{stats['examples']:,}", f"{stats['empty']:,}", repeats, _lengths(stats["words"])]
        if measured:
            row += [_lengths(stats["subwords"]), _count(stats["truncated"], stats["truncated_share"])]
        lines.append(_table_row(row))
    lines += ["", "Duplicates repeat an earlier example of the same split verbatim; empty examples have no words"
              + (" or no sub-words." if measured else ".")]
    if measured and windows:
        lines += [f"Examples over {max_length} sub-words are split into windows sharing {report['stride']} sub-words "
                  "(data.stride), not cut."]
    elif measured and report["task"] == "token-classification":
        lines += ["A truncated sentence's words beyond the cut are predicted O in evaluation."]
    return lines


def _labels_section(report: dict) -> list[str]:
    splits = report["splits"]
    unit = "entities per type" if report["label_unit"] == "entities" else "examples per class"
    lines = ["", f"## Labels ({unit})", "", *_table_header(["label", *splits])]
    for name in sorted({name for stats in splits.values() for name in stats["labels"]}):
        cells = []
        for stats in splits.values():
            count = stats["labels"].get(name, 0)
            cells.append(f"{count:,} ({_share(count, sum(stats['labels'].values())):.1%})")
        lines.append(_table_row([name, *cells]))
    return lines


def _overlap_section(overlaps: dict) -> list[str]:
    if not overlaps:
        return []
    lines = ["", "## Overlap with train", "",
             "Verbatim: the same token sequence (CoNLL; `-DOCSTART-` lines are document markers, not sentences, "
             "and are never compared) or the same text as read. Normalized: also equal once case is folded and "
             "whitespace collapsed (includes the verbatim ones). Evaluation scores these splits again without "
             "them (`<split>_clean`).", ""]
    lines += _table_header(["split", "examples", "verbatim in train", "normalized in train"])
    for split, found in overlaps.items():
        lines.append(_table_row([split, f"{found['examples']:,}", _count(found["exact"], found["exact_share"]),
                                 _count(found["normalized"], found["normalized_share"])]))
    for split, found in overlaps.items():
        shown = found["items"][:MARKDOWN_ROWS]
        if not shown:
            continue
        lines += ["", f"### {split} examples found in train ({len(shown)} of {found['normalized']:,}; all in {REPORT_JSON})", ""]
        lines += _table_header([f"{split} line", "train line", "match", "same labels", "text"])
        for item in shown:
            same = "yes" if item["same_labels"] else "no"
            lines.append(_table_row([item["line"], item["train_line"], item["match"], same, _clip(item["text"])]))
    return lines


def _count(count: int, share: float) -> str:
    return f"{count:,} ({share:.2%})"


def _lengths(summary: dict) -> str:
    return f"{summary['mean']:.1f} / {summary['p95']:.0f} / {summary['max']}" if summary else ""


def _clip(text: str, width: int = 100) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table_header(cells: list[str]) -> list[str]:
    return [_table_row(cells), _table_row(["---"] * len(cells))]


def _table_row(cells: list) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


# ---------------------------------------------------------------------------------------
# Plots (a bare Figure on the Agg canvas: pyplot's global state is left alone)


def plot_lengths(report: dict, path: Path) -> Path:
    """Share of each split's examples per length, in words (left) and sub-words (right, with max_length marked)."""
    fig = Figure(figsize=(11.0, 4.0))
    word_ax, sub_ax = fig.subplots(1, 2)
    for ax, key, unit in ((word_ax, "word_lengths", "words"), (sub_ax, "subword_lengths", "sub-words")):
        drawn = False
        for split, stats in report["splits"].items():
            counts = stats.get(key)
            if not counts:
                continue
            lengths = [int(n) for n in counts]
            weights = [c / stats["examples"] for c in counts.values()]
            ax.hist(lengths, bins=min(60, max(lengths) - min(lengths) + 1), weights=weights, histtype="step", linewidth=1.5, label=split)
            drawn = True
        if drawn:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "not measured at data-prep", ha="center", va="center", transform=ax.transAxes, color="gray")
        ax.set_xlabel(f"{unit} per example")
        ax.set_ylabel("share of examples")
        ax.set_title(f"Length in {unit}")
    if report["tokenizer"]["measured"]:
        sub_ax.axvline(report["max_length"], color="tab:red", linestyle="--", linewidth=1)
        sub_ax.text(report["max_length"], sub_ax.get_ylim()[1] * 0.95, " max_length", color="tab:red", va="top")
    return save_figure(fig, path)


def plot_labels(report: dict, path: Path) -> Path:
    """Share of each label (entity type or class) per split, side by side."""
    splits = report["splits"]
    names = sorted({name for stats in splits.values() for name in stats["labels"]})
    fig = Figure(figsize=(7.0, max(3.0, 0.5 * len(names) * max(1, len(splits)) / 2 + 1.5)))
    ax = fig.add_subplot()
    height = 0.8 / max(1, len(splits))
    for offset, (split, stats) in enumerate(splits.items()):
        total = sum(stats["labels"].values()) or 1
        ax.barh([y + offset * height for y in range(len(names))], [stats["labels"].get(n, 0) / total for n in names],
                height=height, label=split)
    ax.set_yticks([y + height * (len(splits) - 1) / 2 for y in range(len(names))], names)
    ax.invert_yaxis()
    ax.set_xlabel(f"share of {report['label_unit']}")
    ax.set_title("Label distribution")
    ax.legend()
    return save_figure(fig, path)
