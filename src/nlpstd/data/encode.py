"""Tokenize prepared records into model features, aligning word labels to sub-words.

Token classification works on words: CoNLL records carry them, and records with character
spans (JSONL) are split into words by `words_and_offsets`, each word taking the BIO tag of the
span it falls in. Every word has its character offsets in the record's text, so entities found
in words can be scored against the gold spans as given (`unrepresentable_spans` names the gold
spans no run of words can match). Truncation is counted, never silent.

With `data.stride`, a token-classification example longer than `max_length` becomes several
overlapping windows (`stride` sub-words shared by neighbours) instead of being cut: every word
is seen, and each word's prediction is taken from the window in which it sits most centrally
(`nlpstd.inference.word_predictions`). Training, evaluation and predict all window the
same way, since they all encode here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from transformers import PreTrainedTokenizerFast

from nlpstd.spans import WordUnit, begin_strays, joined_words

if TYPE_CHECKING:
    from nlpstd.spec import DataSpec

IGNORE = -100  # label id the loss skips (specials, padding, non-first sub-words)

# The code points BERT's basic tokenizer reads as CJK ideographs, one word each: CJK Unified Ideographs
# and extensions A-E, and the compatibility ideographs (`_is_chinese_char` in transformers).
_CJK = ("\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002b73f\U0002b740-\U0002b81f"
        "\U0002b820-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f")
_CJK_OR_RUN = re.compile(f"[{_CJK}]|[^{_CJK}]+")
# One character with the combining marks that follow it (an accent written as a second code point).
_CHARACTER = re.compile("[^\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"
                        "[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]*", re.DOTALL)
# Characters that are not seen: format controls (zero-width space and joiners, direction marks, soft
# hyphen, byte-order mark), variation selectors, Mongolian and tag selectors, C0/C1 controls.
_INVISIBLE = ("\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u034f\u061c\u180b-\u180f\u200b-\u200f\u202a-\u202e"
              "\u2060-\u206f\ufe00-\ufe0f\ufeff\U000e0000-\U000e0fff")
_EDGES = re.compile(f"^[{_INVISIBLE}]*(.*?)[{_INVISIBLE}]*$", re.DOTALL)


@dataclass
class Encoded:
    """Model-ready features of one split, plus what truncation cost."""

    features: list[dict] = field(default_factory=list)  # input_ids, token_type_ids, labels[, word_ids]
    words: list[list[str]] = field(default_factory=list)  # token tasks: the words of each example
    tags: list[list[str]] = field(default_factory=list)  # token tasks: gold tag per word
    offsets: list[list[tuple[int, int]]] = field(default_factory=list)  # token tasks: each word's characters
    spans: list[list | None] = field(default_factory=list)  # token tasks: gold spans as given; None for CoNLL words
    record_of: list[int] = field(default_factory=list)  # the example each feature comes from (windows share one)
    truncated: int = 0  # examples longer than max_length
    dropped: int = 0  # words (token tasks) or sub-word tokens (sequence tasks) cut away
    windowed: int = 0  # examples split into overlapping windows (data.stride) rather than cut
    kept: int = 0  # words the windows kept that truncation would have cut away

    def stats(self) -> dict[str, int]:
        examples = len(self.words) if self.words else len(self.features)
        return {"examples": examples, "truncated": self.truncated, "dropped": self.dropped,
                "windowed": self.windowed, "kept_by_windows": self.kept}


def words_and_offsets(tokenizer: PreTrainedTokenizerFast, text: str, unit: WordUnit = "word") -> list[tuple[str, tuple[int, int]]]:
    """(word, (start, end)) per word of raw text, `text[start:end] == word`: the one word split of span
    records, for training, evaluation and predict alike.

    The pre-tokenizer splits at whitespace and punctuation only; BERT splits CJK ideographs apart in
    its normalizer, which the pre-tokenizer never sees, so a Chinese clause would be one word. Each
    ideograph is made a word here, as the model sees it; Latin words and numbers stay whole. Invisible
    characters (a variation selector, a zero-width joiner) are trimmed from word edges, and a word
    that would give no sub-word (nothing but such characters) is no word: it would hold no label,
    and at the end of a text it read as a word that truncation cut away.

    With `unit` "character" every visible character is a word of its own, Latin letters and digits
    too: how character-annotated sets (Weibo, MSRA) are tagged, so their text and their
    one-character-per-line files give the same words."""
    words = []
    pieces = _CHARACTER if unit == "character" else _CJK_OR_RUN
    for _, (start, end) in tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text):
        for piece in pieces.finditer(text, start, end):
            edges = _EDGES.match(piece.group())
            first, last = piece.start() + edges.start(1), piece.start() + edges.end(1)
            if first < last and not _silent(tokenizer, text[first:last]):
                words.append((text[first:last], (first, last)))
    return words


def _silent(tokenizer: PreTrainedTokenizerFast, word: str) -> bool:
    """Whether the tokenizer gives a word no sub-word at all: its normalizer removes every character
    (e.g. a lone accent mark when accents are stripped)."""
    if word.isalnum():  # the common case, decided without a call into the tokenizer
        return False
    normalizer = tokenizer.backend_tokenizer.normalizer
    return normalizer is not None and not normalizer.normalize_str(word).strip()


def unrepresentable_spans(tokenizer: PreTrainedTokenizerFast, record: dict, unit: WordUnit = "word") -> list[list]:
    """The gold spans of a span record, as given ([start, end, label]), whose start is not where a word
    starts or whose end is not where a word ends: no tagging of words can predict them exactly, so
    they count as misses in every score. A CoNLL record (words already) has none."""
    if "tokens" in record:
        return []
    offsets = [offsets for _, offsets in words_and_offsets(tokenizer, record["text"], unit)]
    starts, ends = {start for start, _ in offsets}, {end for _, end in offsets}
    return [list(span) for span in record["spans"] if span[0] not in starts or span[1] not in ends]


def spans_to_tags(offsets: list[tuple[int, int]], spans: list[list]) -> list[str]:
    """BIO tag per word: a word inside a span is B- if it is the span's first word, else I-."""
    tags = ["O"] * len(offsets)
    for start, end, label in spans:
        inside = [i for i, (ws, we) in enumerate(offsets) if ws < end and we > start]
        for n, i in enumerate(inside):
            tags[i] = ("B-" if n == 0 else "I-") + label
    return tags


def record_words(tokenizer: PreTrainedTokenizerFast, record: dict, unit: WordUnit = "word") -> tuple[list[str], list[str]]:
    """(words, tags) of a token-classification record, CoNLL or span form."""
    words, _, tags = record_pieces(tokenizer, record, unit)
    return words, tags


def record_pieces(tokenizer: PreTrainedTokenizerFast, record: dict,
                  unit: WordUnit = "word") -> tuple[list[str], list[tuple[int, int]], list[str]]:
    """(words, character offsets, tags) of a token-classification record. CoNLL words are located in
    their text joined by single spaces (`nlpstd.spans.joined_words`), span words in the record's text.
    A stray gold `I-X` is read as the `B-X` it is scored as (`begin_strays`), as a span would give it."""
    if "tokens" in record:
        return record["tokens"], joined_words(record["tokens"])[1], begin_strays(record["tags"])
    pieces = words_and_offsets(tokenizer, record["text"], unit)
    offsets = [o for _, o in pieces]
    return [w for w, _ in pieces], offsets, spans_to_tags(offsets, record["spans"])


def encode_tokens(
    tokenizer: PreTrainedTokenizerFast,
    records: list[dict],
    labels: list[str],
    max_length: int,
    label_subwords: str = "first",
    stride: int | None = None,
    unit: WordUnit = "word",
) -> Encoded:
    """Word-level records -> sub-word features; each word's label goes to its first sub-word (or all).
    With `stride`, a long record yields overlapping windows of `max_length` rather than one cut feature.
    Span records are cut into words of `unit` (`words_and_offsets`)."""
    label2id = {label: i for i, label in enumerate(labels)}
    out = Encoded()
    for record in records:
        words, offsets, tags = record_pieces(tokenizer, record, unit)
        out.words.append(words)
        out.tags.append(tags)
        out.offsets.append(offsets)
        out.spans.append(None if "tokens" in record else [tuple(span) for span in record["spans"]])
    windows = {"stride": stride, "return_overflowing_tokens": True, "return_offsets_mapping": True} if stride else {}
    batch = tokenizer(out.words, is_split_into_words=True, truncation=True, max_length=max_length, **windows)
    record_of = batch["overflow_to_sample_mapping"] if stride else range(len(out.words))
    first_covers: dict[int, int] = {}  # record -> words its first window covers (all truncation would keep)
    covers: dict[int, int] = {}  # record -> words all its windows cover
    for i, record in enumerate(record_of):
        words, tags = out.words[record], out.tags[record]
        word_ids = batch.word_ids(i)
        if record in covers:  # a continuation window
            word_ids = _without_leading_piece(word_ids, batch["offset_mapping"][i])
        ids, previous = [], None
        for word in word_ids:
            if word is None:
                ids.append(IGNORE)
            elif word != previous:
                ids.append(label2id[tags[word]])
            elif label_subwords == "all":
                tag = tags[word]
                ids.append(label2id.get("I-" + tag[2:], label2id[tag]) if tag.startswith("B-") else label2id[tag])
            else:
                ids.append(IGNORE)
            previous = word
        last = max((w for w in word_ids if w is not None), default=-1)
        first_covers.setdefault(record, last + 1)
        covers[record] = max(covers.get(record, 0), last + 1)
        out.record_of.append(record)
        out.features.append(_feature(batch, i, ids, word_ids))
    for record, words in enumerate(out.words):
        reach = len(words)
        while reach > covers[record] and _silent(tokenizer, words[reach - 1]):
            reach -= 1  # a last word with no sub-word was never cut away (a CoNLL word of a lone mark)
        if covers[record] < reach:
            out.truncated += 1
            out.dropped += reach - covers[record]
        if covers[record] > first_covers[record]:
            out.windowed += 1
            out.kept += covers[record] - first_covers[record]
    return out


def _without_leading_piece(word_ids: list[int | None], offsets: list[tuple[int, int]]) -> list[int | None]:
    """A window may open inside a word (the rest of a word the previous window began): those pieces
    are not the word's first sub-word, so they carry no label and no prediction (marked None)."""
    out = list(word_ids)
    leading = next((word for word in word_ids if word is not None), None)
    for position, (word, (start, _)) in enumerate(zip(word_ids, offsets)):
        if word is None:
            continue
        if word != leading or start == 0:
            break
        out[position] = None
    return out


def encode_sequences(
    tokenizer: PreTrainedTokenizerFast, records: list[dict], labels: list[str], max_length: int
) -> Encoded:
    """Text (or text pair) records -> features with one label id each."""
    label2id = {label: i for i, label in enumerate(labels)}
    texts = [r["text"] for r in records]
    pairs = [r["text_pair"] for r in records] if records and "text_pair" in records[0] else None
    full = tokenizer(texts, pairs)["input_ids"]
    batch = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    out = Encoded()
    for i, record in enumerate(records):
        cut = len(full[i]) - len(batch["input_ids"][i])
        if cut > 0:
            out.truncated += 1
            out.dropped += cut
        out.features.append(_feature(batch, i, label2id[record["label"]]))
    out.record_of = list(range(len(records)))
    return out


def _feature(batch, i: int, labels, word_ids: list | None = None) -> dict:
    feature = {"input_ids": batch["input_ids"][i], "labels": labels}
    if "token_type_ids" in batch:
        feature["token_type_ids"] = batch["token_type_ids"][i]
    if word_ids is not None:
        feature["word_ids"] = [-1 if w is None else w for w in word_ids]
    return feature


def encode(tokenizer: PreTrainedTokenizerFast, task: str, records: list[dict], labels: list[str], max_length: int,
           label_subwords: str = "first", stride: int | None = None, truncation_side: str = "right",
           unit: WordUnit = "word") -> Encoded:
    if task == "token-classification":
        return encode_tokens(tokenizer, records, labels, max_length, label_subwords, stride, unit)
    tokenizer.truncation_side = truncation_side
    return encode_sequences(tokenizer, records, labels, max_length)


def encode_data(tokenizer: PreTrainedTokenizerFast, data: DataSpec, task: str, records: list[dict], labels: list[str]) -> Encoded:
    """`encode` with the standard's data settings: the one call every stage makes, so all window alike."""
    return encode(tokenizer, task, records, labels, data.max_length, data.label_subwords, data.stride, data.truncation_side,
                  data.word_unit)
