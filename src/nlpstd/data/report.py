"""The data report: what the splits hold before any model sees them.

Sizes, labels (entities per type, or examples per class), lengths in words (characters for
scripts written without spaces, such as Chinese) and sub-words, truncation at `data.max_length`,
how well the tokenizer's vocabulary fits the text (sub-words that are its unknown token,
characters only unknown pieces hold), gold spans that fall inside a word, control characters, empty
and repeated examples, which examples a limit kept and which splits were cut from train, and the
validation and test examples that train already contains. A score on examples the model was trained on measures
memory, not generalisation: the evaluate stage reads the overlap written here and scores the
rest apart (`test_clean`).

Examples are compared as `nlpstd.data.checks` compares them (by what the model reads; "normalized"
also ignores case and runs of whitespace), and the `data.checks` limits are judged there, so data-prep
and `nlpstd validate` refuse the same data in the same words.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from transformers import PreTrainedTokenizerFast

from nlpstd.data.checks import EVAL_SPLITS, REPORT_MD, compared_with, duplicates, enforce, limit_warnings, overlap, violations
from nlpstd.data.checks import share as _share
from nlpstd.data.encode import record_words, unrepresentable_spans
from nlpstd.data.hygiene import control_characters
from nlpstd.data.prepare import PreparedData, label_counts
from nlpstd.evaluate.report import save_figure, table_header, table_row
from nlpstd.jsonio import write_json
from nlpstd.spans import WordUnit, stray_positions

if TYPE_CHECKING:
    from nlpstd.spec import DataChecks

REPORT_JSON = "data_report.json"
MARKDOWN_ROWS = 20  # overlapping examples listed per split in the markdown; the JSON lists them all
# Lengths need the ids alone; skipping the masks makes tokenizing a split about five times faster.
_IDS_ONLY = {"return_attention_mask": False, "return_token_type_ids": False, "verbose": False}
# Finding the characters only unknown pieces cover needs each piece's offsets, a second pass: it is made
# over at most this many of a split's examples that hold an unknown piece (CoNLL-2003 train has 14,041).
FIT_SAMPLE = 2000
UNALIGNED_ROWS = 10  # unaligned gold spans listed per split in the markdown; the JSON lists them all
# Scripts written without spaces between words: a whitespace "word" there is a clause or a sentence.
# Kana, Han (with its extensions and compatibility ideographs), Thai and Lao, Myanmar, Khmer.
_NO_SPACE_SCRIPT = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
                              "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]")
_WHITESPACE = re.compile(r"\s")
_SCRIPT_SAMPLE = 1000  # examples read to decide the length unit

# ---------------------------------------------------------------------------------------
# Per split


def stray_tags(records: list[dict]) -> dict:
    """Gold entities that begin with a stray `I-X` (after `O` or another type) instead of `B-X`: they are
    trained and scored as beginning there (`nlpstd.spans.begin_strays`), and counted among the entities;
    the file line of each, for whoever fixes the data."""
    lines = [record["line"] + position if record.get("line") is not None else None
             for record in records if "tags" in record for position in stray_positions(record["tags"])]
    return {"count": len(lines), "lines": lines}


def _plain_text(record: dict) -> str:
    return "".join(record["tokens"]) if "tokens" in record else record["text"] + record.get("text_pair", "")


def length_unit(records: list[dict]) -> str:
    """`characters` when most letters belong to a script written without spaces (Chinese, Japanese,
    Thai...), where a count of whitespace-separated words measures punctuation, not length; else `words`."""
    text = "".join(_plain_text(record) for record in spread(records, _SCRIPT_SAMPLE))
    letters, spaceless = sum(map(str.isalpha, text)), len(_NO_SPACE_SCRIPT.findall(text))
    return "characters" if letters and spaceless * 2 > letters else "words"


def word_lengths(records: list[dict], unit: str = "words") -> list[int]:
    """Length of each example in `unit`: words (CoNLL tokens, or whitespace-separated words of the text
    and its pair) or characters (whitespace not counted)."""
    if unit == "characters":
        return [_visible(_plain_text(record)) for record in records]
    if records and "tokens" in records[0]:
        return [len(record["tokens"]) for record in records]
    return [len(record["text"].split()) + len(record.get("text_pair", "").split()) for record in records]


def subword_ids(tokenizer: PreTrainedTokenizerFast, records: list[dict], word_unit: WordUnit = "word") -> list[list[int]]:
    """Sub-word ids per example, special tokens included, untruncated. Token tasks are split into words
    the way encoding splits them (`record_words`, in `word_unit`s)."""
    if not records:
        return []
    if "tokens" in records[0] or "spans" in records[0]:
        words = [record_words(tokenizer, record, word_unit)[0] for record in records]
        rows = [tokenizer("", **_IDS_ONLY)["input_ids"]] * len(words)  # a record without words: specials alone
        filled = [i for i, w in enumerate(words) if w]
        if filled:
            ids = tokenizer([words[i] for i in filled], is_split_into_words=True, **_IDS_ONLY)["input_ids"]
            for i, row in zip(filled, ids):
                rows[i] = row
        return rows
    texts = [record["text"] for record in records]
    pairs = [record["text_pair"] for record in records] if "text_pair" in records[0] else None
    return tokenizer(texts, pairs, **_IDS_ONLY)["input_ids"]


def subword_lengths(tokenizer: PreTrainedTokenizerFast, records: list[dict]) -> list[int]:
    """Sub-words per example, special tokens included, untruncated: what `max_length` is compared with."""
    return [len(row) for row in subword_ids(tokenizer, records)]


def spread(records: list[dict], limit: int) -> list[dict]:
    """At most `limit` records taken at even steps over the split, so a sample sees its end as well as its start."""
    step = -(-len(records) // limit) if limit else 1
    return records[::max(1, step)]


def vocabulary_fit(tokenizer: PreTrainedTokenizerFast, records: list[dict], ids: list[list[int]] | None = None,
                   limit: int = FIT_SAMPLE, word_unit: WordUnit = "word") -> dict:
    """How much of the text the vocabulary holds: the share of sub-words (specials left out) that are the
    unknown token, and the share of characters (whitespace left out) that only unknown pieces cover, which
    no model with this vocabulary can read.

    Sub-words are counted in every example, from the ids the lengths come from (`ids`). Finding the
    characters needs each piece's offsets, a second pass: it is made only over the examples that hold
    an unknown piece (none, for most English data), at most `limit` of them spread evenly over the
    split, and scaled up to all of them when there are more."""
    ids = subword_ids(tokenizer, records, word_unit) if ids is None else ids
    unknown_id = tokenizer.unk_token_id
    specials = tokenizer.num_special_tokens_to_add(pair=bool(records) and "text_pair" in records[0])
    subwords = sum(max(0, len(row) - specials) for row in ids)
    unknown = sum(row.count(unknown_id) for row in ids)
    chars = sum(_visible(_plain_text(record)) for record in records)
    holding = [record for record, row in zip(records, ids) if unknown_id in row]
    sample = spread(holding, limit)
    lost = lost_characters(tokenizer, sample, word_unit)
    if len(sample) < len(holding):
        lost = round(lost * len(holding) / len(sample))
    return {"examples": len(records), "with_unknown": len(holding), "located_in": len(sample), "subwords": subwords,
            "unknown": unknown, "unknown_share": _share(unknown, subwords), "chars": chars, "unknown_chars": lost,
            "unknown_char_share": _share(lost, chars), "unknown_token": tokenizer.unk_token}


def lost_characters(tokenizer: PreTrainedTokenizerFast, records: list[dict], word_unit: WordUnit = "word") -> int:
    """Characters (whitespace left out) of `records` that unknown pieces cover and no known piece does."""
    units, batch, unit_of = _fit_inputs(tokenizer, records, word_unit)
    unknown_id, lost = tokenizer.unk_token_id, 0
    for texts, encoding in zip(units, batch.encodings if batch is not None else []):
        known: dict[int, set[int]] = {}  # text (word, or text / text_pair) -> character positions known pieces cover
        unknown_at: dict[int, set[int]] = {}  # the same for unknown pieces
        for i, piece in enumerate(encoding.ids):
            if not encoding.special_tokens_mask[i]:
                start, end = encoding.offsets[i]
                (unknown_at if piece == unknown_id else known).setdefault(unit_of(encoding, i), set()).update(range(start, end))
        for unit, positions in unknown_at.items():
            text = texts[unit]
            lost += sum(not text[p].isspace() for p in positions - known.get(unit, set()) if p < len(text))
    return lost


def _visible(text: str) -> int:
    return len(text) - len(_WHITESPACE.findall(text))


def _fit_inputs(tokenizer: PreTrainedTokenizerFast, sample: list[dict], word_unit: WordUnit) -> tuple[list[list[str]], Any, Any]:
    """(the texts of each row, the tokenized batch with offsets, piece -> index of its text in the row).
    Split words have offsets within each word; a text pair has them within each of its two texts."""
    if not sample:
        return [], None, None
    if "tokens" in sample[0] or "spans" in sample[0]:
        rows = [words for words in (record_words(tokenizer, record, word_unit)[0] for record in sample) if words]
        batch = tokenizer(rows, is_split_into_words=True, return_offsets_mapping=True, verbose=False) if rows else None
        return rows, batch, lambda encoding, i: encoding.word_ids[i]
    pairs = [record["text_pair"] for record in sample] if "text_pair" in sample[0] else None
    batch = tokenizer([record["text"] for record in sample], pairs, return_offsets_mapping=True, verbose=False)
    rows = [[record["text"], record.get("text_pair", "")] for record in sample]
    return rows, batch, lambda encoding, i: encoding.sequence_ids[i]


def unaligned_spans(tokenizer: PreTrainedTokenizerFast, records: list[dict], word_unit: WordUnit = "word") -> dict:
    """Gold spans that start or end inside a word (`unrepresentable_spans`, words split as encoding
    splits them): such a span is tagged on whole words, so the model is trained and scored on a
    different entity than the one annotated."""
    total, items = 0, []
    for index, record in enumerate(records):
        if not record.get("spans"):
            continue
        total += len(record["spans"])
        for start, end, label in unrepresentable_spans(tokenizer, record, word_unit):
            items.append({"index": index, "line": record.get("line"), "start": start, "end": end, "label": label,
                          "span": record["text"][start:end], "text": record["text"]})
    return {"spans": total, "unaligned": len(items), "unaligned_share": _share(len(items), total), "items": items}


def length_summary(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {}
    values = np.asarray(lengths)
    return {"min": int(values.min()), "mean": round(float(values.mean()), 2), "median": float(np.median(values)),
            "p95": float(np.percentile(values, 95)), "max": int(values.max())}


def split_report(records: list[dict], subwords: list[int] | None, specials: int, max_length: int,
                 unit: str = "words") -> dict:
    """Everything the report says about one split on its own; lengths in `unit` (`length_unit`)."""
    lengths = word_lengths(records, unit)
    empty = [i for i, n in enumerate(lengths) if n == 0 or (subwords is not None and subwords[i] <= specials)]
    repeats, conflicting = duplicates(records)
    total = len(records)
    out: dict[str, Any] = {
        "examples": total,
        "labels": label_counts(records),
        "lengths": length_summary(lengths),
        "length_counts": dict(sorted(Counter(lengths).items())),
        "empty": len(empty),
        "empty_indices": empty,
        "duplicates": len(repeats),
        "duplicate_share": _share(len(repeats), total),
        "conflicting_duplicates": conflicting,
        "control": control_characters(records),
    }
    if records and "tags" in records[0]:
        out["stray_tags"] = stray_tags(records)
    if subwords is not None:
        truncated = sum(n > max_length for n in subwords)
        out.update({"subwords": length_summary(subwords), "subword_lengths": dict(sorted(Counter(subwords).items())),
                    "truncated": truncated, "truncated_share": _share(truncated, total)})
    return out


# ---------------------------------------------------------------------------------------
# Across splits


def build(prepared: PreparedData, tokenizer: PreTrainedTokenizerFast | None, tokenizer_note: str, max_length: int,
          name: str = "", stride: int | None = None, word_unit: WordUnit = "word", label_map: dict | None = None) -> dict:
    """The whole report as plain JSON data (checks are added by `check`). With `stride` (data.stride),
    examples over max_length are split into windows rather than cut; the report says which.

    Overlap is measured against the training examples kept (`data.max_train_examples`), not the
    whole train file: what a score can have memorised is what was trained on, and evaluation drops
    exactly those examples from `<split>_clean`; the report says when train was cut."""
    specials = tokenizer.num_special_tokens_to_add() if tokenizer is not None else 0
    unit = length_unit(prepared.splits["train"])
    splits = {}
    for split, records in prepared.splits.items():
        ids = subword_ids(tokenizer, records, word_unit) if tokenizer is not None else None
        subwords = [len(row) for row in ids] if ids is not None else None
        splits[split] = split_report(records, subwords, specials, max_length, unit)
        if tokenizer is not None:
            splits[split]["vocabulary"] = vocabulary_fit(tokenizer, records, ids, word_unit=word_unit)
            if records and "spans" in records[0]:
                splits[split]["alignment"] = unaligned_spans(tokenizer, records, word_unit)
    train = prepared.splits["train"]
    train_file = prepared.read.get("train", len(train))
    sample = prepared.limits.get("train", {}).get("sample", "head")
    return {
        "standard": name,
        "task": prepared.task,
        "fingerprint": prepared.fingerprint,
        "max_length": max_length,
        "stride": stride,
        "word_unit": word_unit,
        "length_unit": unit,
        "tokenizer": {"measured": tokenizer is not None, "note": tokenizer_note},
        "label_unit": "entities" if prepared.task == "token-classification" else "examples",
        "splits": splits,
        "sources": prepared.sources,
        "carved": prepared.carved,
        "label_map": label_map,
        "limits": prepared.limits,
        "overlap": {split: overlap(train, prepared.splits[split], train_file, sample)
                    for split in EVAL_SPLITS if split in prepared.splits},
        "checks": {},
    }


# ---------------------------------------------------------------------------------------
# Checks


def check(report: dict, checks: DataChecks, sources: dict[str, str]) -> list[str]:
    """Compare the report with `data.checks`; record the settings and what exceeds them in the report,
    with the warnings about labels a limit left out (`limit_warnings`, never an error).

    Returns one message per violation and warning (on_violation: warn); with on_violation: fail, the
    first violation raises a DataError naming the split's file, the share, the limit and the setting
    (`nlpstd.data.checks.enforce`, which data-prep has already run on the same figures)."""
    exceeded = violations(report, checks)
    notes = limit_warnings(report.get("limits", {}))
    report["checks"] = {**checks.model_dump(mode="json"), "violations": [message for _, _, message in exceeded] + notes}
    return enforce(exceeded, checks, sources) + notes


# ---------------------------------------------------------------------------------------
# Output


def write(report: dict, out_dir: Path) -> list[Path]:
    """`data_report.json`, `data_report.md` and `plots/*.png` in `out_dir`; returns the files written."""
    out_dir = Path(out_dir)
    plots = [plot_lengths(report, out_dir / "plots" / "lengths.png"), plot_labels(report, out_dir / "plots" / "labels.png")]
    write_json(out_dir / REPORT_JSON, report, indent=1)
    (out_dir / REPORT_MD).write_text(markdown(report, [p.relative_to(out_dir).as_posix() for p in plots]), encoding="utf-8")
    return [out_dir / REPORT_JSON, out_dir / REPORT_MD, *plots]


def overlap_indices(data_dir: Path) -> dict[str, list[int]]:
    """Per evaluated split, the indices (positions in `<split>.jsonl`) of examples train also holds; none
    for a folder without a report (prepared before reports existed)."""
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
    lines += _origin_section(report)
    lines += _vocabulary_section(report)
    lines += _alignment_section(report)
    lines += _control_section(report)
    lines += _labels_section(report)
    lines += _overlap_section(report["overlap"])
    if plots:
        lines += ["", "## Plots", "", *(f"![{Path(plot).stem}]({plot})" for plot in plots)]
    return "\n".join(lines) + "\n"


def _checks_section(checks: dict) -> list[str]:
    if not checks:
        return ["**Checks: not run**"]
    keys = ("max_overlap", "max_duplicates", "max_unknown_share", "max_unaligned_spans")
    keys += ("max_control_characters",) if checks.get("max_control_characters") is not None else ()  # listed once set
    limits = ", ".join(f"{key} {'off' if checks[key] is None else f'{checks[key]:g}'}" for key in keys if key in checks)
    violations = checks["violations"]
    if not violations:
        return [f"**Checks: passed** ({limits})"]
    plural = "s" if len(violations) > 1 else ""
    return [f"**Checks: {len(violations)} warning{plural}** ({limits}, on_violation {checks['on_violation']})", "",
            *(f"- {message}" for message in violations)]


def _splits_section(report: dict) -> list[str]:
    measured, max_length = report["tokenizer"]["measured"], report["max_length"]
    unit = report.get("length_unit", "words")
    header = ["split", "examples", "empty", "duplicates", f"{unit} mean / p95 / max"]
    windows = report.get("stride") is not None
    longer = f"windowed (over {max_length})" if windows else f"truncated at {max_length}"
    header += ["sub-words mean / p95 / max", longer] if measured else []
    lines = ["## Splits", "", *table_header(header)]
    for split, stats in report["splits"].items():
        repeats = _count(stats["duplicates"], stats["duplicate_share"])
        if stats["conflicting_duplicates"]:
            repeats += f", {stats['conflicting_duplicates']:,} with other labels"
        row = [split, f"{stats['examples']:,}", f"{stats['empty']:,}", repeats, _lengths(stats["lengths"])]
        if measured:
            row += [_lengths(stats["subwords"]), _count(stats["truncated"], stats["truncated_share"])]
        lines.append(table_row(row))
    lines += ["", "Duplicates repeat an earlier example of the same split verbatim; empty examples have no words"
              + (" or no sub-words." if measured else ".")]
    if unit == "characters":
        lines += ["Lengths are in characters (whitespace not counted): this text is written without spaces between "
                  "words, so a whitespace word would be a clause."]
    if measured and windows:
        lines += [f"Examples over {max_length} sub-words are split into windows sharing {report['stride']} sub-words "
                  "(data.stride), not cut."]
    elif measured and report["task"] == "token-classification":
        lines += ["A truncated sentence's words beyond the cut are predicted O in evaluation."]
    return lines


def _origin_section(report: dict) -> list[str]:
    """Which splits were cut from train, and which examples the limits kept."""
    carved, limits = report.get("carved") or {}, report.get("limits") or {}
    lines = []
    if carved:
        lines += ["", "## Splits cut from train", "", *table_header(["split", "from", "examples", "share", "stratified", "seed"])]
        lines += [table_row([split, cut["file"], f"{cut['examples']:,} of {cut['train_examples']:,}", f"{cut['share']:g}",
                             "yes" if cut["stratified"] else "no", cut["seed"]]) for split, cut in carved.items()]
        lines += ["", "data.split_from_train: these splits are cut from the train file before any limit, and their lines "
                  "are lines of that file; train is what remains."]
    if limits:
        lines += ["", "## Example limits", "", *table_header(["split", "setting", "kept", "chosen by", "labels kept"])]
        lines += [table_row([split, found["setting"], f"{found['kept']:,} of {found['examples']:,}", f"data.sample: {found['sample']}",
                             f"{found['labels'] - len(found['missing'])} of {found['labels']}"]) for split, found in limits.items()]
    named = report.get("label_map")
    if named:
        source = f"the file {named['file']}" if named.get("file") else f"data.label_map.{named['source']}"
        lines += ["", "## Label names", "", f"The data writes labels as numbers; their names come from {source}.", "",
                  *table_header(["number", "name"])]
        lines += [table_row([number, name]) for number, name in named["names"].items()]
    return lines


def _control_section(report: dict) -> list[str]:
    """Examples holding control characters, per split, the first few located as `file:line`."""
    found = {split: stats["control"] for split, stats in report["splits"].items() if "control" in stats}
    if not any(control["with_control"] for control in found.values()):
        return []
    lines = ["", "## Control characters", "", *table_header(["split", "examples holding them", "characters", "kinds"])]
    lines += [table_row([split, _count(c["with_control"], c["share"]), f"{c['characters']:,}",
                         ", ".join(f"{kind} x{n:,}" for kind, n in c["kinds"].items())]) for split, c in found.items()]
    lines += ["", "Control characters (Unicode Cc; tabs and line breaks excepted) are invisible to a reader, and a tokenizer "
              "drops them or reads them as unknown: `data.control_characters: remove` takes them out as the files are read."]
    sources = report.get("sources", {})
    for split, control in found.items():
        shown = control["items"][:UNALIGNED_ROWS]
        if shown:
            lines += ["", f"{split}, first examples holding them ({len(shown)} of {control['with_control']:,}; more in {REPORT_JSON}): "
                      + ", ".join(f"{_located(sources.get(split), item['line'])} ({' '.join(item['characters'][:3])})" for item in shown)]
    return lines


def _located(path: str | None, line: int | None) -> str:
    """`file:line` by the file's name, or what of it is known."""
    name = Path(path).name if path else "line"
    return f"{name}:{line}" if line is not None else name


def _vocabulary_section(report: dict) -> list[str]:
    """The unknown-token shares per split, or why they were not measured."""
    fits = {split: stats["vocabulary"] for split, stats in report["splits"].items() if "vocabulary" in stats}
    if not fits:
        why = report["tokenizer"]["note"].removeprefix("not measured: ")
        return ["", "## Vocabulary fit", "", f"Not measured: {why}."]
    token = next(iter(fits.values()))["unknown_token"]
    lines = ["", "## Vocabulary fit", "", *table_header(["split", f"sub-words that are {token}", "characters lost",
                                                          f"examples with {token}"])]
    for split, fit in fits.items():
        lost = _count(fit["unknown_chars"], fit["unknown_char_share"])
        if fit["located_in"] < fit["with_unknown"]:
            lost += f", estimated from {fit['located_in']:,} examples"
        lines.append(table_row([split, _count(fit["unknown"], fit["unknown_share"]), lost,
                                 _count(fit["with_unknown"], _share(fit["with_unknown"], fit["examples"]))]))
    lines += ["", f"Characters lost are those only {token} pieces cover: the model cannot read them. Many of either "
              "mean the vocabulary was made for another language: train one on this text (`tokenizer: {train: "
              f"wordpiece}}` with `model.size` and pretraining) or choose a `model.base` for it. Sub-words are "
              f"counted in every example; characters are located in at most {FIT_SAMPLE:,} of the examples holding "
              f"{token} per split (spread evenly, then scaled up)."]
    return lines


def _alignment_section(report: dict) -> list[str]:
    """Gold spans that start or end inside a word (span data only), the first few listed."""
    found = {split: stats["alignment"] for split, stats in report["splits"].items() if "alignment" in stats}
    if not found:
        return []
    lines = ["", "## Gold spans inside words", "", *table_header(["split", "spans", "start or end inside a word"])]
    lines += [table_row([split, f"{a['spans']:,}", _count(a["unaligned"], a["unaligned_share"])]) for split, a in found.items()]
    lines += ["", "Entities are tagged on words: a span that starts or ends inside a word is trained as the whole "
              "words it touches, and since scores count the gold spans as annotated, it can never be predicted exactly."]
    for split, aligned in found.items():
        shown = aligned["items"][:UNALIGNED_ROWS]
        if not shown:
            continue
        lines += ["", f"### {split} spans inside words ({len(shown)} of {aligned['unaligned']:,}; all in {REPORT_JSON})", ""]
        lines += table_header([f"{split} line", "label", "characters", "span", "text"])
        lines += [table_row([item["line"], item["label"], f"{item['start']}-{item['end']}", item["span"], _clip(item["text"])])
                  for item in shown]
    return lines


def _labels_section(report: dict) -> list[str]:
    splits = report["splits"]
    unit = "entities per type" if report["label_unit"] == "entities" else "examples per class"
    lines = ["", f"## Labels ({unit})", "", *table_header(["label", *splits])]
    for name in sorted({name for stats in splits.values() for name in stats["labels"]}):
        cells = []
        for stats in splits.values():
            count = stats["labels"].get(name, 0)
            cells.append(f"{count:,} ({_share(count, sum(stats['labels'].values())):.1%})")
        lines.append(table_row([name, *cells]))
    for split, stats in splits.items():
        stray = stats.get("stray_tags", {})
        if stray.get("count"):
            shown = ", ".join(str(line) for line in stray["lines"][:UNALIGNED_ROWS] if line is not None)
            more = f" and {stray['count'] - UNALIGNED_ROWS} more" if stray["count"] > UNALIGNED_ROWS else ""
            begun = sum(stats["labels"].values()) - stray["count"]
            lines += ["", f"{split}: {begun:,} entities begin with a B- tag and {stray['count']:,} with a stray I- tag "
                          f"(after O or another type; lines {shown}{more}). Those are read as B-, the entity seqeval "
                          "and conlleval score as beginning there, and counted above."]
    return lines


def _overlap_section(overlaps: dict) -> list[str]:
    if not overlaps:
        return []
    lines = ["", "## Overlap with train", "",
             "Verbatim: the same token sequence (CoNLL; `-DOCSTART-` lines are document markers, not sentences, "
             "and are never compared) or the same text as read. Normalized: also equal once case is folded and "
             "whitespace collapsed (includes the verbatim ones). Evaluation scores these splits again without "
             "them (`<split>_clean`).", ""]
    against = compared_with(next(iter(overlaps.values())))
    if against != "train":
        lines += [f"Compared with {against}: these are the examples the model is trained on, and so the ones a "
                  "score can have memorised; the train file may hold more of them.", ""]
    lines += table_header(["split", "examples", "verbatim in train", "normalized in train"])
    for split, found in overlaps.items():
        lines.append(table_row([split, f"{found['examples']:,}", _count(found["exact"], found["exact_share"]),
                                 _count(found["normalized"], found["normalized_share"])]))
    for split, found in overlaps.items():
        shown = found["items"][:MARKDOWN_ROWS]
        if not shown:
            continue
        lines += ["", f"### {split} examples found in train ({len(shown)} of {found['normalized']:,}; all in {REPORT_JSON})", ""]
        lines += table_header([f"{split} line", "train line", "match", "same labels", "text"])
        for item in shown:
            same = "yes" if item["same_labels"] else "no"
            lines.append(table_row([item["line"], item["train_line"], item["match"], same, _clip(item["text"])]))
    return lines


def _count(count: int, share: float) -> str:
    return f"{count:,} ({share:.2%})"


def _lengths(summary: dict) -> str:
    return f"{summary['mean']:.1f} / {summary['p95']:.0f} / {summary['max']}" if summary else ""


def _clip(text: str, width: int = 100) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------------------------------
# Plots (a bare Figure on the Agg canvas: pyplot's global state is left alone)


def plot_lengths(report: dict, path: Path) -> Path:
    """Share of each split's examples per length, in words or characters (left) and sub-words (right, with
    max_length marked)."""
    fig = Figure(figsize=(11.0, 4.0))
    word_ax, sub_ax = fig.subplots(1, 2)
    for ax, key, unit in ((word_ax, "length_counts", report.get("length_unit", "words")), (sub_ax, "subword_lengths", "sub-words")):
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
