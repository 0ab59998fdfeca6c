"""Word tags -> entities: the one decoder behind evaluation, `nlpstd predict`, the MLflow pyfunc model and ONNX.

IOB2 says an entity starts at `B-X` and runs on over `I-X`. A model also predicts *stray* `I-X`
tags: ones that follow `O` or another type. What a stray tag means is a setting of the standard,
`evaluate.iob_repair`, applied here and nowhere else:

- `start`: it begins a new X entity. seqeval's default mode and CoNLL's conlleval read it so.
- `drop`: it is read as `O`, so that every entity begins with a `B-` tag.

Evaluation scores the repaired tags (with seqeval for CoNLL words, against the gold character spans
for span data, through `char_spans`), so its F1 counts exactly the entities this module returns to
`predict`, the pyfunc model and the ONNX runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

IobRepair = Literal["start", "drop"]
REPAIRS: tuple[str, ...] = ("start", "drop")
# The units span text is cut into (`data.word_unit`): words as BERT splits them, or every visible character.
WordUnit = Literal["word", "character"]
WORD_UNITS: tuple[str, ...] = ("word", "character")


def _kind(tag: str) -> str:
    """The entity type of a tag; "" for `O`."""
    return tag[2:] if tag[:2] in ("B-", "I-") else ""


def repair_tags(tags: Sequence[str], repair: IobRepair = "start") -> list[str]:
    """The tags every consumer reads. `drop` turns each stray `I-X` into `O`, a run of them too (by
    the second, the first is already `O`). `start` leaves them: seqeval and `entity_spans` both begin
    an entity there, and rewriting them to `B-X` would change token accuracy for nothing."""
    if repair not in REPAIRS:
        raise ValueError(f"iob_repair must be one of {', '.join(REPAIRS)}, got {repair!r}")
    if repair == "start":
        return list(tags)
    repaired: list[str] = []
    previous = ""
    for tag in tags:
        if tag.startswith("I-") and _kind(tag) != previous:
            tag = "O"
        repaired.append(tag)
        previous = _kind(tag)
    return repaired


def begin_strays(tags: Sequence[str]) -> list[str]:
    """Gold tags as training reads them: a stray `I-X` (after `O` or another type) becomes `B-X`, the
    entity seqeval and conlleval score as beginning there, so a model learns the tag it is scored on."""
    begun: list[str] = []
    previous = ""
    for tag in tags:
        kind = _kind(tag)
        begun.append("B-" + kind if tag.startswith("I-") and kind != previous else tag)
        previous = kind
    return begun


def stray_positions(tags: Sequence[str]) -> list[int]:
    """Positions of the stray `I-X` tags: those `begin_strays` reads as `B-X`."""
    return [i for i, (tag, begun) in enumerate(zip(tags, begin_strays(tags))) if tag != begun]


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(label, first word, end word exclusive) per entity, chunked by seqeval itself (default mode, IOB2),
    so what is counted, decoded and scored are the same entities: one begins at `B-X` or at an `I-X`
    that does not continue an X entity."""
    # Imported here: seqeval's package pulls in scikit-learn, which training and serving otherwise never load.
    from seqeval.metrics.sequence_labeling import get_entities

    return [(label, first, last + 1) for label, first, last in get_entities(list(tags))]


def char_spans(offsets: Sequence[tuple[int, int]], tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start, end exclusive, label) in characters per entity of already-repaired word tags: the
    entities `decode_entities` returns, in the form gold spans are given."""
    return [(offsets[first][0], offsets[end - 1][1], label) for label, first, end in entity_spans(tags)]


def joined_words(words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Pre-split words (CoNLL) as a text: joined by single spaces, with each word's character offsets.
    Entities of such examples are located in this text."""
    offsets, position = [], 0
    for word in words:
        offsets.append((position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), offsets


def decode_entities(text: str, offsets: Sequence[tuple[int, int]], tags: Sequence[str], scores: Sequence[float],
                    repair: IobRepair = "start") -> list[dict]:
    """Entities of one text from its per-word (offsets, tag, probability): the text it covers, label,
    character offsets (end exclusive), score (mean probability of its words) and `words`, the
    half-open range of word indices."""
    entities = []
    for label, first, end in entity_spans(repair_tags(tags, repair)):
        start, stop = offsets[first][0], offsets[end - 1][1]
        probs = scores[first:end]
        entities.append({"text": text[start:stop], "label": label, "start": start, "end": stop,
                         "score": round(sum(probs) / len(probs), 4), "words": [first, end]})
    return entities
