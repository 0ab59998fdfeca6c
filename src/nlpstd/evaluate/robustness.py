"""Robustness: a held-out split scored again with its text perturbed the ways real input is noisy.

Each perturbation keeps the gold labels true, so a drop in score is the model's, not the data's:
typos change letters inside words and never a word's count; casing changes every letter; punctuation
drops the marks (for CoNLL words, the punctuation words, whose tag is always O); for NER on words, an
entity swap puts in names the training split never had, of the same type. Span data (character
offsets) gets only what keeps every offset in place: typos and casing. Everything is seeded, so a
rerun perturbs the same words the same way.
"""

from __future__ import annotations

import random
import string
import unicodedata
from collections.abc import Callable

from nlpstd.spans import entity_spans

PERTURBATIONS = ("typos", "lowercase", "uppercase", "punctuation", "entity_swap")
_KEEP_OFFSETS = ("typos", "lowercase", "uppercase")  # the ones span data can take


def applicable(names: list[str], records: list[dict], task: str) -> list[str]:
    """The perturbations of `names` that keep these records' labels true: entity swaps only for NER
    on words, and only offset-preserving ones for span data."""
    spans = any("spans" in record for record in records)
    return [name for name in names
            if (name != "entity_swap" or (task == "token-classification" and not spans))
            and (not spans or name in _KEEP_OFFSETS)]


def perturb(records: list[dict], name: str, rate: float, seed: int, train: list[dict]) -> list[dict]:
    """The records with perturbation `name` applied: `typos` to a `rate` share of the words, the
    others to every word it concerns. `train` holds the names an entity swap must avoid."""
    rng = random.Random(f"{seed}:{name}")
    if name == "entity_swap":
        return _swap_entities(records, train, rng)
    change = _TEXT[name]
    return [_apply(record, lambda text: change(text, rate, rng), name) for record in records]


def _apply(record: dict, change: Callable[[str], str], name: str) -> dict:
    if "tokens" in record:
        if name == "punctuation":
            kept = [(token, tag) for token, tag in zip(record["tokens"], record["tags"]) if not _punctuation(token)]
            kept = kept or [(record["tokens"][0], record["tags"][0])]  # a sentence of marks alone keeps one
            return {**record, "tokens": [t for t, _ in kept], "tags": [tag for _, tag in kept]}
        return {**record, "tokens": [change(token) for token in record["tokens"]]}
    changed = {**record, "text": change(record["text"])}
    if record.get("text_pair"):
        changed["text_pair"] = change(record["text_pair"])
    return changed


def _typos(text: str, rate: float, rng: random.Random) -> str:
    """A `rate` share of the words that can take a typo get one. The length stays, so character
    offsets stay true."""
    words = text.split(" ")
    for i, word in enumerate(words):
        if typeable(word) and rng.random() < rate:
            words[i] = typo(word, rng)
    return " ".join(words)


def typeable(word: str) -> bool:
    """Words of 4 letters or more: a shorter word has too few inner letters for a typo to leave it readable."""
    return len(word) >= 4 and word.isalpha()


def typo(word: str, rng: random.Random) -> str:
    """A `typeable` word with one typo: two inner letters swapped or one replaced, the length kept
    (training's augmentation makes the typos this report measures)."""
    chars, at = list(word), rng.randrange(1, len(word) - 2)
    if rng.random() < 0.5:
        chars[at], chars[at + 1] = chars[at + 1], chars[at]
    else:
        letter = rng.choice(string.ascii_lowercase)
        chars[at] = letter.upper() if chars[at].isupper() else letter
    return "".join(chars)


def _cased(text: str, method: str) -> str:
    """Every letter in one case, except a letter whose other case is longer ("ß" -> "SS"): offsets stay true."""
    return "".join(changed if len(changed := getattr(char, method)()) == 1 else char for char in text)


def _punctuation(text: str) -> bool:
    return bool(text) and all(unicodedata.category(char).startswith("P") for char in text)


def _without_punctuation(text: str, rate: float, rng: random.Random) -> str:
    return " ".join("".join(char for char in text if not _punctuation(char)).split())


_TEXT: dict[str, Callable[[str, float, random.Random], str]] = {
    "typos": _typos,
    "lowercase": lambda text, rate, rng: _cased(text, "lower"),
    "uppercase": lambda text, rate, rng: _cased(text, "upper"),
    "punctuation": _without_punctuation,
}


def _swap_entities(records: list[dict], train: list[dict], rng: random.Random) -> list[dict]:
    """Every entity mention replaced by a mention of the same type from the split itself that the
    training split never holds; a type without such a mention keeps its mentions, letters shuffled."""
    seen = {tuple(record["tokens"][start:end]) for record in train if "tokens" in record
            for _, start, end in entity_spans(record["tags"])}
    pool: dict[str, list[tuple[str, ...]]] = {}
    for record in records:
        for label, start, end in entity_spans(record["tags"]):
            mention = tuple(record["tokens"][start:end])
            if mention not in seen:
                pool.setdefault(label, []).append(mention)
    swapped = []
    for record in records:
        tokens, tags, at = [], [], 0
        for label, start, end in entity_spans(record["tags"]):
            tokens += record["tokens"][at:start]
            tags += record["tags"][at:start]
            mention = rng.choice(pool[label]) if pool.get(label) else tuple(_shuffled(t, rng) for t in record["tokens"][start:end])
            tokens += mention
            tags += [f"B-{label}"] + [f"I-{label}"] * (len(mention) - 1)
            at = end
        swapped.append({**record, "tokens": tokens + record["tokens"][at:], "tags": tags + record["tags"][at:]})
    return swapped


def _shuffled(word: str, rng: random.Random) -> str:
    inner = list(word[1:])
    rng.shuffle(inner)
    return word[:1] + "".join(inner)
