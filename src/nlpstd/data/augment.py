"""Training examples augmented afresh each epoch, their labels kept true.

Each epoch a `probability` share of the training examples is picked, and each picked example gets one
operation drawn from the standard's list; the rest stay as they are, so the split keeps its size. An
operation touches a `rate` share of an example's units (words; for NER, mentions or segments), at
least one. Picks and changes are seeded by (seed, epoch): a resumed run sees the epochs an
uninterrupted one saw.

Sequence classification changes the words of `text` (and `text_pair`): `delete` (never every word),
`swap`, `insert` (a copy of a word of the same text: no synonym lexicon is at hand offline), `typos`.
Token classification changes words and keeps every word's label: `mention_replace` (another mention
of the same type from the training split, tagged B-/I- for its length), `shuffle_segments` (words
shuffled within a run of one label: an entity, or a run of O), `typos` (outside entities only).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nlpstd.data.encode import record_words
from nlpstd.evaluate.robustness import typeable, typo
from nlpstd.spans import WordUnit, entity_spans

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

Mentions = dict[str, list[tuple[str, ...]]]  # entity type -> the distinct mentions of that type


def _units(n: int, rate: float) -> int:
    """How many of `n` units an operation touches: a `rate` share, at least one."""
    return max(1, round(rate * n))


# -- sequence classification: a text's words (split at whitespace) -> changed words


def _delete(words: list[str], rate: float, rng: random.Random) -> list[str]:
    if len(words) < 2:
        return words
    gone = set(rng.sample(range(len(words)), min(_units(len(words), rate), len(words) - 1)))  # one word stays
    return [word for i, word in enumerate(words) if i not in gone]


def _swap(words: list[str], rate: float, rng: random.Random) -> list[str]:
    words = list(words)
    for _ in range(_units(len(words), rate) if len(words) > 1 else 0):
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    return words


def _insert(words: list[str], rate: float, rng: random.Random) -> list[str]:
    grown = list(words)
    for _ in range(_units(len(words), rate) if words else 0):
        grown.insert(rng.randrange(len(grown) + 1), rng.choice(words))
    return grown


def _text_typos(words: list[str], rate: float, rng: random.Random) -> list[str]:
    return _typos_at(words, [i for i, word in enumerate(words) if typeable(word)], _units(len(words), rate), rng)


def _typos_at(words: list[str], candidates: list[int], count: int, rng: random.Random) -> list[str]:
    """`words` with a typo in `count` of the words at `candidates` (all of them when fewer)."""
    words = list(words)
    for i in sorted(rng.sample(candidates, min(count, len(candidates)))):
        words[i] = typo(words[i], rng)
    return words


_ON_TEXT: dict[str, Callable[[list[str], float, random.Random], list[str]]] = {
    "delete": _delete, "swap": _swap, "insert": _insert, "typos": _text_typos,
}


# -- token classification: {"tokens", "tags"} -> the same, every word's label true


def _mention_replace(record: dict, rate: float, rng: random.Random, mentions: Mentions) -> dict:
    entities = entity_spans(record["tags"])
    chosen = set(rng.sample(range(len(entities)), min(_units(len(entities), rate), len(entities))))
    tokens, tags, at = [], [], 0
    for n, (label, start, end) in enumerate(entities):
        tokens += record["tokens"][at:start]
        tags += record["tags"][at:start]
        mention = tuple(record["tokens"][start:end])
        others = [other for other in mentions.get(label, ()) if other != mention] if n in chosen else []
        if others:
            mention = rng.choice(others)
            tags += [f"B-{label}"] + [f"I-{label}"] * (len(mention) - 1)
        else:  # not chosen, or the only mention of its type: kept as it was
            tags += record["tags"][start:end]
        tokens += mention
        at = end
    return {**record, "tokens": tokens + record["tokens"][at:], "tags": tags + record["tags"][at:]}


def segments(tags: list[str]) -> list[tuple[int, int]]:
    """(first word, end exclusive) of each run of one label: every entity mention and every run of O between."""
    runs, at = [], 0
    for _, start, end in entity_spans(tags):
        runs += [(at, start)] if at < start else []
        runs.append((start, end))
        at = end
    return runs + ([(at, len(tags))] if at < len(tags) else [])


def _shuffle_segments(record: dict, rate: float, rng: random.Random, mentions: Mentions) -> dict:
    tokens = list(record["tokens"])
    movable = [(start, end) for start, end in segments(record["tags"]) if len(set(tokens[start:end])) > 1]
    for start, end in sorted(rng.sample(movable, min(_units(len(movable), rate), len(movable)))):
        run = tokens[start:end]
        rng.shuffle(run)
        # a shuffle that left the order as it was becomes a rotation (different, as the words are not all one)
        tokens[start:end] = run if run != tokens[start:end] else run[1:] + run[:1]
    return {**record, "tokens": tokens}


def _word_typos(record: dict, rate: float, rng: random.Random, mentions: Mentions) -> dict:
    tokens, tags = record["tokens"], record["tags"]
    outside = [i for i, (word, tag) in enumerate(zip(tokens, tags)) if tag == "O" and typeable(word)]
    return {**record, "tokens": _typos_at(tokens, outside, _units(len(tokens), rate), rng)}


_ON_WORDS: dict[str, Callable[[dict, float, random.Random, Mentions], dict]] = {
    "mention_replace": _mention_replace, "shuffle_segments": _shuffle_segments, "typos": _word_typos,
}


def apply(operation: str, record: dict, rate: float, rng: random.Random, mentions: Mentions | None = None) -> dict:
    """`record` changed by `operation` (a new record; the given one is left as it was). A token
    record needs `tokens` and `tags` (`in_words`); `mentions` (`mentions_of` the training split)
    feeds mention_replace."""
    if "tokens" in record:
        return _ON_WORDS[operation](record, rate, rng, mentions or {})
    change = _ON_TEXT[operation]
    changed = {**record, "text": " ".join(change(record["text"].split(), rate, rng))}
    if record.get("text_pair"):
        changed["text_pair"] = " ".join(change(record["text_pair"].split(), rate, rng))
    return changed


def in_words(tokenizer: PreTrainedTokenizerFast, records: list[dict], unit: WordUnit = "word") -> list[dict]:
    """Token-classification records as words and tags, what the operations change: a span record
    becomes the words encoding splits it into (so it encodes to the same features) with their tags."""
    worded = []
    for record in records:
        if "tokens" not in record:
            words, tags = record_words(tokenizer, record, unit)
            record = {"tokens": words, "tags": tags, **({"line": record["line"]} if "line" in record else {})}
        worded.append(record)
    return worded


def mentions_of(records: list[dict]) -> Mentions:
    """The distinct entity mentions of word records by type, in the order they first occur."""
    pool: dict[str, dict[tuple[str, ...], None]] = {}
    for record in records:
        for label, start, end in entity_spans(record["tags"]):
            pool.setdefault(label, {})[tuple(record["tokens"][start:end])] = None
    return {label: list(mentions) for label, mentions in pool.items()}


@dataclass
class Augmenter:
    """The training split as each epoch sees it: `augmenter(epoch)` gives the records, `counts` what was done."""

    records: list[dict]  # prepared records; token-classification ones `in_words`
    operations: tuple[str, ...]
    probability: float
    rate: float
    seed: int
    mentions: Mentions = field(init=False)

    def __post_init__(self) -> None:
        self.mentions = mentions_of(self.records) if self.records and "tokens" in self.records[0] else {}

    def plan(self, epoch: int) -> dict[int, str]:
        """Example index -> the operation it gets in `epoch`. Drawn apart from the changes themselves,
        so the counts of any epoch cost no augmenting."""
        rng = random.Random(f"{self.seed}:{epoch}:augment-plan")
        picked = rng.sample(range(len(self.records)), round(self.probability * len(self.records)))
        return {index: rng.choice(self.operations) for index in sorted(picked)}

    def __call__(self, epoch: int) -> list[dict]:
        rng, plan = random.Random(f"{self.seed}:{epoch}:augment"), self.plan(epoch)
        return [apply(plan[i], record, self.rate, rng, self.mentions) if i in plan else record
                for i, record in enumerate(self.records)]

    def counts(self, epochs: Iterable[int]) -> dict[str, int]:
        """Examples augmented over `epochs` (`augmented_examples`), and by each operation (`augmented_<operation>`)."""
        done = Counter(operation for epoch in epochs for operation in self.plan(epoch).values())
        return {"augmented_examples": sum(done.values()),
                **{f"augmented_{operation}": done[operation] for operation in self.operations}}
