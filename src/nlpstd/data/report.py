"""The data report: what the splits hold before any model sees them.

Sizes, labels (entities per type, or examples per class), lengths in words and sub-words,
truncation at `data.max_length`, empty and repeated examples, and the validation and test
examples that train already contains. A score on examples the model was trained on measures
memory, not generalisation: the evaluate stage reads the overlap written here and scores the
rest apart (`test_clean`).

Examples are compared as `nlpstd.data.checks` compares them (by what the model reads; "normalized"
also ignores case and runs of whitespace), and the `data.checks` limits are judged there, so data-prep
and `nlpstd validate` refuse the same data in the same words.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from transformers import PreTrainedTokenizerFast

from nlpstd.data.checks import EVAL_SPLITS, REPORT_MD, duplicates, enforce, overlap, violations
from nlpstd.data.checks import share as _share
from nlpstd.data.encode import record_words
from nlpstd.data.prepare import PreparedData
from nlpstd.evaluate.report import save_figure

if TYPE_CHECKING:
    from nlpstd.spec import DataChecks

REPORT_JSON = "data_report.json"
MARKDOWN_ROWS = 20  # overlapping examples listed per split in the markdown; the JSON lists them all
# Lengths need the ids alone; skipping the masks makes tokenizing a split about five times faster.
_IDS_ONLY = {"return_attention_mask": False, "return_token_type_ids": False, "verbose": False}

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


# ---------------------------------------------------------------------------------------
# Across splits


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
    violation raises a DataError naming the split's file, the share, the limit and the setting
    (`nlpstd.data.checks.enforce`, which data-prep has already run on the same figures)."""
    exceeded = violations(report, checks)
    report["checks"] = {**checks.model_dump(mode="json"), "violations": [message for _, _, message in exceeded]}
    return enforce(exceeded, checks, sources)


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
