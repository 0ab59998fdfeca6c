"""Control characters in a text: found, counted, and removed when the standard asks.

A control character is one of Unicode category Cc (U+0000-U+001F, U+007F-U+009F) other than tab,
line feed and carriage return: a stray form feed, escape or NUL pasted in with the text. A tokenizer
drops some and maps others to its unknown token, so a model sees something else than a reader of the
text does, and two examples that look equal are not compared as equal.

Removal (`data.control_characters: remove`) keeps every record: a span's offsets are moved to the text
without those characters, and a CoNLL token made only of them is dropped when it is tagged O. An
annotation left with nothing at all (a span, or an entity's token, made only of control characters)
is an error at its line rather than a silent loss of a gold entity.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from pathlib import Path

from nlpstd.errors import DataError

CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # category Cc, less \t \n \r
LOCATED = 1000  # examples listed by position in the report's JSON (the markdown shows fewer)


def code_points(text: str) -> list[str]:
    """The control characters of `text` as `U+000C` names, in order."""
    return [f"U+{ord(char):04X}" for char in CONTROL.findall(text)]


def record_texts(record: dict) -> list[str]:
    """The texts of an example a model reads: the text and its pair, or the CoNLL tokens."""
    if "tokens" in record:
        return record["tokens"]
    return [record["text"], *([record["text_pair"]] if "text_pair" in record else [])]


def control_characters(records: list[dict]) -> dict:
    """Examples holding a control character, the characters in all, per kind, and the first examples
    holding them (index, line, the characters) for whoever fixes the file."""
    kinds: dict[str, int] = {}
    items = []
    for index, record in enumerate(records):
        found = [name for text in record_texts(record) for name in code_points(text)]
        if not found:
            continue
        for name in found:
            kinds[name] = kinds.get(name, 0) + 1
        if len(items) < LOCATED:
            items.append({"index": index, "line": record.get("line"), "characters": found})
    holding = sum(1 for record in records if any(CONTROL.search(text) for text in record_texts(record)))
    total = len(records)
    return {"examples": total, "with_control": holding, "share": round(holding / total, 6) if total else 0.0,
            "characters": sum(kinds.values()), "kinds": dict(sorted(kinds.items())), "items": items}


def remove_control_characters(records: list[dict], path: str | Path | None = None) -> list[dict]:
    """`records` without control characters in their texts (tabs and line breaks kept), span offsets
    moved to match; `path` names the file in the error about an annotation nothing is left of."""
    where = str(path) if path is not None else "the data file"
    return [_cleaned(record, where) for record in records]


def _cleaned(record: dict, where: str) -> dict:
    if "tokens" in record:
        return _cleaned_tokens(record, where)
    if not any(CONTROL.search(text) for text in record_texts(record)):
        return record
    cleaned = {**record, "text": CONTROL.sub("", record["text"])}
    if "text_pair" in record:
        cleaned["text_pair"] = CONTROL.sub("", record["text_pair"])
    if "spans" in record:
        cleaned["spans"] = _moved_spans(record, where)
    return cleaned


def _moved_spans(record: dict, where: str) -> list[list]:
    """Each span's offsets in the text without control characters: an offset moves left by the control
    characters before it."""
    removed = [match.start() for match in CONTROL.finditer(record["text"])]
    spans = []
    for index, (start, end, label) in enumerate(record["spans"]):
        moved = [start - bisect_left(removed, start), end - bisect_left(removed, end), label]
        if moved[0] == moved[1]:
            raise DataError(where, record.get("line"), f"spans[{index}]",
                            f"the {label} span {start}-{end} holds only control characters, which data.control_characters: "
                            "remove takes out; fix the annotation or keep them (control_characters: keep)")
        spans.append(moved)
    return spans


def _cleaned_tokens(record: dict, where: str) -> dict:
    """CoNLL: each token without control characters; a token made only of them is dropped with its tag
    when the tag is O."""
    if not any(CONTROL.search(token) for token in record["tokens"]):
        return record
    tokens, tags = [], []
    for offset, (token, tag) in enumerate(zip(record["tokens"], record["tags"])):
        kept = CONTROL.sub("", token)
        if not kept and tag != "O":
            raise DataError(where, _line(record, offset), "token",
                            f"the {tag} token holds only control characters, which data.control_characters: remove "
                            "takes out; fix the token or keep them (control_characters: keep)")
        if kept:
            tokens.append(kept)
            tags.append(tag)
    if not tokens:
        raise DataError(where, record.get("line"), "token", "the sentence holds only control characters, which "
                        "data.control_characters: remove takes out; drop it from the file")
    return {**record, "tokens": tokens, "tags": tags}


def _line(record: dict, offset: int) -> int | None:
    line = record.get("line")
    return None if line is None else line + offset
