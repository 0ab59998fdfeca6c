"""Tokenize prepared records into model features, aligning word labels to sub-words.

Token classification works on words: CoNLL records carry them, and records with character
spans (JSONL) are split into words by the tokenizer's own pre-tokenizer, each word taking
the BIO tag of the span it falls in. Truncation is counted, never silent.

With `data.stride`, a token-classification example longer than `max_length` becomes several
overlapping windows (`stride` sub-words shared by neighbours) instead of being cut: every word
is seen, and each word's prediction is taken from the window in which it sits most centrally
(`nlpstd.inference.word_predictions`). Training, evaluation and predict all window the
same way, since they all encode here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from transformers import PreTrainedTokenizerFast

if TYPE_CHECKING:
    from nlpstd.spec import DataSpec

IGNORE = -100  # label id the loss skips (specials, padding, non-first sub-words)


@dataclass
class Encoded:
    """Model-ready features of one split, plus what truncation cost."""

    features: list[dict] = field(default_factory=list)  # input_ids, token_type_ids, labels[, word_ids]
    words: list[list[str]] = field(default_factory=list)  # token tasks: the words of each example
    tags: list[list[str]] = field(default_factory=list)  # token tasks: gold tag per word
    record_of: list[int] = field(default_factory=list)  # the example each feature comes from (windows share one)
    truncated: int = 0  # examples longer than max_length
    dropped: int = 0  # words (token tasks) or sub-word tokens (sequence tasks) cut away
    windowed: int = 0  # examples split into overlapping windows (data.stride) rather than cut
    kept: int = 0  # words the windows kept that truncation would have cut away

    def stats(self) -> dict[str, int]:
        examples = len(self.words) if self.words else len(self.features)
        return {"examples": examples, "truncated": self.truncated, "dropped": self.dropped,
                "windowed": self.windowed, "kept_by_windows": self.kept}


def words_and_offsets(tokenizer: PreTrainedTokenizerFast, text: str) -> list[tuple[str, tuple[int, int]]]:
    """Split raw text into words the way the tokenizer would (whitespace and punctuation)."""
    return tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)


def spans_to_tags(offsets: list[tuple[int, int]], spans: list[list]) -> list[str]:
    """BIO tag per word: a word inside a span is B- if it is the span's first word, else I-."""
    tags = ["O"] * len(offsets)
    for start, end, label in spans:
        inside = [i for i, (ws, we) in enumerate(offsets) if ws < end and we > start]
        for n, i in enumerate(inside):
            tags[i] = ("B-" if n == 0 else "I-") + label
    return tags


def record_words(tokenizer: PreTrainedTokenizerFast, record: dict) -> tuple[list[str], list[str]]:
    """(words, tags) of a token-classification record, CoNLL or span form."""
    if "tokens" in record:
        return record["tokens"], record["tags"]
    pieces = words_and_offsets(tokenizer, record["text"])
    return [w for w, _ in pieces], spans_to_tags([o for _, o in pieces], record["spans"])


def encode_tokens(
    tokenizer: PreTrainedTokenizerFast,
    records: list[dict],
    labels: list[str],
    max_length: int,
    label_subwords: str = "first",
    stride: int | None = None,
) -> Encoded:
    """Word-level records -> sub-word features; each word's label goes to its first sub-word (or all).
    With `stride`, a long record yields overlapping windows of `max_length` rather than one cut feature."""
    label2id = {label: i for i, label in enumerate(labels)}
    out = Encoded()
    for record in records:
        words, tags = record_words(tokenizer, record)
        out.words.append(words)
        out.tags.append(tags)
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
        if covers[record] < len(words):
            out.truncated += 1
            out.dropped += len(words) - covers[record]
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
           label_subwords: str = "first", stride: int | None = None, truncation_side: str = "right") -> Encoded:
    if task == "token-classification":
        return encode_tokens(tokenizer, records, labels, max_length, label_subwords, stride)
    tokenizer.truncation_side = truncation_side
    return encode_sequences(tokenizer, records, labels, max_length)


def encode_data(tokenizer: PreTrainedTokenizerFast, data: DataSpec, task: str, records: list[dict], labels: list[str]) -> Encoded:
    """`encode` with the standard's data settings: the one call every stage makes, so all window alike."""
    return encode(tokenizer, task, records, labels, data.max_length, data.label_subwords, data.stride, data.truncation_side)
