"""Weibo NER as JSON Lines spans: the one-character-per-line CoNLL files read back into text and
character spans, so a test (or a measurement) can train on the same data in both forms.

    python tests/weibo_spans.py OUT_DIR      # train/dev/test.jsonl from ../shared/data/weibo-ner

A token is a character followed by its position in a jieba word (`科0`): the position is dropped.
Spans follow the IOB2 reading seqeval gives the CoNLL file: an entity starts at `B-X`, or at an
`I-X` that continues no X entity (the set has a few such stray tags), and runs over `I-X`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

TOKEN = re.compile(r"(.+?)[0-9]+")  # the standards' data.token_pattern for this set


def messages(path: Path) -> Iterator[tuple[list[str], list[str]]]:
    """(characters, tags) per message of a Weibo CoNLL file."""
    chars: list[str] = []
    tags: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if line.strip():
            token, tag = line.rsplit(None, 1)
            chars.append(TOKEN.fullmatch(token).group(1))
            tags.append(tag)
        elif chars:
            yield chars, tags
            chars, tags = [], []


def span_record(chars: list[str], tags: list[str]) -> dict:
    """`{"text", "entities": [{start, end, label}]}` of one message."""
    entities: list[dict] = []
    position, previous = 0, ""
    for char, tag in zip(chars, tags):
        kind = tag[2:] if tag != "O" else ""
        if kind and (tag.startswith("B-") or kind != previous):
            entities.append({"start": position, "end": position + len(char), "label": kind})
        elif kind:
            entities[-1]["end"] = position + len(char)
        position += len(char)
        previous = kind
    return {"text": "".join(chars), "entities": entities}


def write_jsonl(conll: Path, out: Path, limit: int | None = None) -> int:
    """The first `limit` messages (all by default) of `conll` as span records in `out`; returns how many."""
    written = 0
    with open(out, "w", encoding="utf-8") as handle:
        for chars, tags in messages(conll):
            if limit is not None and written == limit:
                break
            handle.write(json.dumps(span_record(chars, tags), ensure_ascii=False) + "\n")
            written += 1
    return written


def write_conll(conll: Path, out: Path, limit: int) -> None:
    """The first `limit` messages of `conll`, lines unchanged."""
    lines, count = [], 0
    for line in conll.read_text(encoding="utf-8").splitlines():
        if not line.strip() and lines and lines[-1].strip():
            count += 1
            if count == limit:
                break
        lines.append(line)
    out.write_text("\n".join(lines) + "\n\n", encoding="utf-8")


if __name__ == "__main__":
    source = Path(os.environ.get("NLPSTD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "weibo-ner"
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    for name in ("train", "dev", "test"):
        print(name, write_jsonl(source / f"{name}.conll", target / f"{name}.jsonl"))
