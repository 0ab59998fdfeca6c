"""The pretraining corpus: raw text files in, a manifest out, documents streamed back on demand.

Each file is decoded on its own, line by line as it is read: `encoding: auto` reads UTF-8 and
falls back to Latin-1 for a file that is not valid UTF-8 (and says which files did). CRLF and CR
line ends are line ends like LF. A document is a paragraph: lines up to the next blank line.
Files that cannot be corpus text (missing, not a regular file, empty, binary, undecodable in the
declared encoding) fail before anything is written, each with a one-line error that names the
file and the standard's key that lists it (`pretrain.corpus.files[0]`).

Nothing of the text is kept: data-prep checks and counts every file and writes a manifest (each
file's codec, size, sha256, document count, and the held-out rule); pretraining streams the
documents from the files again, in the same order, checking that every file is the one data-prep
read. Memory stays that of one line, whatever the size of the corpus.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO, TYPE_CHECKING

from nlpstd.data.textfile import Undecodable, decode_lines, regular_file
from nlpstd.errors import DataError
from nlpstd.hashing import sha256_text
from nlpstd.jsonio import write_json

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import CorpusFile, CorpusSpec

_BINARY_SAMPLE = 8192
MANIFEST = "manifest.json"
TRAINING_TEXT = "training_text"  # the `source` of the file made of the training examples


@dataclass
class CorpusText:
    """One checked file: where it came from, how it decodes, what it holds."""

    path: str
    encoding: str
    fell_back: bool  # `auto` found invalid UTF-8 and read Latin-1
    sha256: str
    count: int = 0  # documents
    chars: int = 0  # characters of the documents
    size: int = 0  # bytes
    source: str = "file"  # or TRAINING_TEXT


@dataclass
class Corpus:
    """The manifest of a checked corpus: its files in order (blocks stay inside a file), the
    held-out rule, the document counts per part, and the fingerprint. `stream` reads the
    documents back."""

    files: list[dict]  # per file: path, part, source, encoding, fell_back, bytes, sha256, documents, chars
    fingerprint: str
    held_out_fraction: float | None = None  # a seeded share of the training files' documents is held out
    seed: int | None = None
    documents: dict[str, int] = field(default_factory=dict)  # part -> documents, after the held-out draw

    def stream(self, training: TrainingText | None = None) -> Iterator[tuple[str, int, str]]:
        """(part, file index, document) for every document, file by file in the manifest's order.

        With `held_out_fraction`, each training file's document is held out when the seeded draw
        says so; the draws run in the same order as when data-prep counted, so the parts are the
        ones it reported. A file whose bytes changed since data-prep is an error once it is read."""
        draw = random.Random(self.seed).random if self.held_out_fraction else None
        with ThreadPoolExecutor(max_workers=1) as downloads:  # the next S3 object downloads while this one is read
            ahead = downloads.submit(_local, self.files[0]) if self.files else None
            for index, described in enumerate(self.files):
                local = ahead.result()
                ahead = downloads.submit(_local, self.files[index + 1]) if index + 1 < len(self.files) else None
                for document in _verified_documents(described, local, training):
                    part = described["part"]
                    if draw is not None and part == "train" and draw() < self.held_out_fraction:
                        part = "held_out"
                    yield part, index, document


def expand(entries: list[CorpusFile], default_encoding: str, key: str = "pretrain.corpus.files") -> list[tuple[str, str, str]]:
    """(path, encoding, key of the entry) for every file the entries name, globs sorted; an entry
    matching nothing is an error. A glob keeps regular files only: a folder or a pipe among the
    matches is not text. On S3, a prefix ending in `/` names every object under it, and a pattern
    (`s3://bucket/corpus/*.txt`) the objects whose keys match it, in key order."""
    found: list[tuple[str, str, str]] = []
    for index, entry in enumerate(entries):
        encoding, where = entry.encoding or default_encoding, f"{key}[{index}]"
        if entry.path.startswith("s3://") and (glob.has_magic(entry.path) or entry.path.endswith("/")):
            matches = _objects(entry.path)
            if not matches:
                raise DataError(entry.path, None, where, "the prefix or pattern matches no object")
            found += [(uri, encoding, where) for uri in matches]
        elif glob.has_magic(entry.path):
            matches = sorted(p for p in glob.glob(entry.path, recursive=True) if Path(p).is_file())
            if not matches:
                raise DataError(entry.path, None, where, "the pattern matches no file")
            found += [(p, encoding, where) for p in matches]
        else:
            found.append((entry.path, encoding, where))
    return found


def _objects(pattern: str) -> list[str]:
    """The S3 objects under a prefix, or matching a pattern (`*` matches across `/` too), in key order."""
    from nlpstd import storage  # boto3 only when a corpus is on S3

    magic = next((i for i, char in enumerate(pattern) if char in "*?["), len(pattern))
    prefix = pattern[: pattern.rfind("/", 0, magic) + 1]
    return [uri for uri in storage.list_objects(prefix) if magic == len(pattern) or fnmatch.fnmatchcase(uri, pattern)]


def read_corpus_file(path: str, encoding: str, key: str | None = None) -> CorpusText:
    """Decode one file, a line at a time, counting its documents; refuse what is not text. `key`
    is the standard's key that lists the file, for the error."""
    local = regular_file(path, key)  # before opening: a named pipe would block, /dev/zero never end
    with open(local, "rb") as handle:
        if b"\x00" in handle.read(_BINARY_SAMPLE):
            raise DataError(path, None, key, "this is a binary file (NUL bytes), not text; leave it out of the corpus")
        codec = "utf-8" if encoding == "auto" else encoding
        try:
            count, chars, reader = _count(handle, codec)
        except Undecodable as bad:
            if encoding != "auto":
                raise DataError(path, bad.line, "encoding", f"byte 0x{bad.byte:02x} is not valid {encoding}; "
                                "set encoding: auto (UTF-8, else Latin-1) or the file's codec") from None
            codec = "latin-1"  # decodes any byte: the file is read again from its start
            count, chars, reader = _count(handle, codec)
        sha256, size = reader.digest.hexdigest(), handle.tell()
    if not count:
        raise DataError(path, None, key, "the corpus file is empty (no text, only whitespace)")
    return CorpusText(path, codec, codec == "latin-1" and encoding == "auto", sha256, count, chars, size)


def _count(handle: IO[bytes], codec: str) -> tuple[int, int, _Hashing]:
    """(documents, their characters, the reader holding the bytes' sha256) of an open file, read
    once from its start."""
    handle.seek(0)
    reader, count, chars = _Hashing(handle), 0, 0
    for document in paragraphs(reader, codec):
        count, chars = count + 1, chars + len(document)
    return count, chars, reader


def paragraphs(handle: IO[bytes], codec: str) -> Iterator[str]:
    """The documents of an open binary file, from where it stands: each paragraph with every run
    of whitespace made one space; a line of nothing but spaces and tabs ends it."""
    words: list[str] = []
    for line in chain(decode_lines(handle, codec), ["\n"]):  # a blank line after the last ends the last paragraph
        if line.strip(" \t\r\n"):
            words += line.split()
        elif words:
            yield " ".join(words)
            words = []


def documents(path: str, codec: str) -> Iterator[str]:
    """The documents of one corpus file (local or s3://) in a codec data-prep resolved."""
    with open(regular_file(path), "rb") as handle:
        yield from paragraphs(handle, codec)


def check(spec: CorpusSpec, training: TrainingText | None = None) -> list[str]:
    """Read and decode every corpus file (the checks `prepare` would fail on); returns the paths."""
    return [described["path"] for described in prepare(spec, seed=0, training=training).files]


@dataclass
class TrainingText:
    """The task's training examples, for `training_text: true`: the file they were read from and the records."""

    path: str
    records: list[dict]


def training_document(record: dict) -> str:
    """The text of a training example, without its labels: CoNLL words joined by spaces (as fine-tuning
    reads them, one word at a time), or the text and its pair."""
    if "tokens" in record:
        return " ".join(record["tokens"])
    return " ".join(part for part in (record["text"], record.get("text_pair", "")) if part.strip())


def training_documents(training: TrainingText) -> Iterator[str]:
    """The training examples as corpus documents, one per example with any text."""
    return (document for document in map(training_document, training.records) if document.strip())


def read_training_text(training: TrainingText) -> CorpusText:
    """The training examples as one more corpus file, named `<train file> (training text)`."""
    digest, count, chars = hashlib.sha256(), 0, 0
    for document in _hashed(training_documents(training), digest):
        count, chars = count + 1, chars + len(document)
    return CorpusText(f"{training.path} (training text)", "utf-8", False, digest.hexdigest(), count, chars,
                      source=TRAINING_TEXT)


def prepare(spec: CorpusSpec, seed: int, training: TrainingText | None = None) -> Corpus:
    """Check every file and count its documents, and the documents the held-out rule sets aside
    (held-out files, or a seeded share). With `training_text`, the training examples
    (`training`) are one more file of the corpus. Keeps no document."""
    texts = [read_corpus_file(p, e, k) for p, e, k in expand(spec.files, spec.encoding)]
    if spec.training_text:
        if training is None:
            raise ValueError("pretrain.corpus.training_text needs the training examples")
        texts.append(read_training_text(training))
    held_texts = [read_corpus_file(p, e, k) for p, e, k in expand(spec.held_out, spec.encoding, "pretrain.corpus.held_out")]
    train_count = sum(text.count for text in texts)
    held_count = sum(text.count for text in held_texts)
    if spec.held_out_fraction:  # the draws `Corpus.stream` makes, in its order
        draw = random.Random(seed).random
        held_count = sum(draw() < spec.held_out_fraction for _ in range(train_count))
        train_count -= held_count
    return Corpus(files=[_describe(t, "train") for t in texts] + [_describe(t, "held_out") for t in held_texts],
                  fingerprint=fingerprint(spec, texts, held_texts, seed),
                  held_out_fraction=spec.held_out_fraction or None, seed=seed if spec.held_out_fraction else None,
                  documents={"train": train_count, "held_out": held_count})


def _describe(text: CorpusText, part: str) -> dict:
    return {"path": text.path, "part": part, "source": text.source, "encoding": text.encoding, "fell_back": text.fell_back,
            "bytes": text.size, "sha256": text.sha256, "documents": text.count, "chars": text.chars}


def fingerprint(spec: CorpusSpec, texts: list[CorpusText], held_texts: list[CorpusText], seed: int) -> str:
    """sha256 over the files' bytes (in order, no paths) and the options that shape the documents."""
    lines = [f"{part}:{text.sha256}:{text.encoding}\n" for part, group in (("train", texts), ("held_out", held_texts)) for text in group]
    options = {"held_out_fraction": spec.held_out_fraction, "seed": seed if spec.held_out_fraction else None}
    return sha256_text("".join(lines) + json.dumps(options, sort_keys=True))


def fallbacks(corpus: Corpus) -> list[str]:
    """Files that `encoding: auto` read as Latin-1."""
    return [f["path"] for f in corpus.files if f["fell_back"]]


def _local(described: dict) -> Path | None:
    """The local file behind a manifest entry (an S3 object fetched into the cache); None for the training text."""
    return None if described["source"] == TRAINING_TEXT else regular_file(described["path"])


def _verified_documents(described: dict, local: Path | None, training: TrainingText | None) -> Iterator[str]:
    """A manifest file's documents, read again; once read to its end, a file whose sha256 is not the
    one data-prep recorded is an error (its blocks are then never cached)."""
    if described["source"] == TRAINING_TEXT:
        if training is None:
            raise ValueError("this corpus includes the training examples: pass them to `stream`")
        digest = hashlib.sha256()
        yield from _hashed(training_documents(training), digest)
    else:
        with open(local, "rb") as handle:
            reader = _Hashing(handle)
            yield from paragraphs(reader, described["encoding"])
        digest = reader.digest
    if digest.hexdigest() != described["sha256"]:
        raise DataError(described["path"], None, None, "the file changed after data-prep read it (its sha256 differs); "
                        "run data-prep again")


def _hashed(documents: Iterator[str], digest: hashlib._Hash) -> Iterator[str]:
    """The documents, each added to `digest` as it passes: the digest of the documents joined by newlines."""
    for count, document in enumerate(documents):
        digest.update(b"\n" if count else b"")
        digest.update(document.encode())
        yield document


class _Hashing:
    """A binary file that hashes what is read from it, for `decode_lines`."""

    def __init__(self, handle: IO[bytes]):
        self.handle, self.digest = handle, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self.handle.readline(size)
        self.digest.update(data)
        return data


# ---------------------------------------------------------------------------------------
# The manifest data-prep writes and pretrain reads: `corpus/manifest.json`


def save(corpus: Corpus, out_dir: Path) -> None:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(out_dir) / MANIFEST, {"fingerprint": corpus.fingerprint, "held_out_fraction": corpus.held_out_fraction,
                                          "seed": corpus.seed, "documents": corpus.documents, "files": corpus.files})


def load(corpus_dir: Path) -> Corpus:
    path = Path(corpus_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(path, None, None, f"not a prepared corpus ({exc}); run data-prep with pretraining enabled") from None
    return Corpus(files=manifest["files"], fingerprint=manifest["fingerprint"], held_out_fraction=manifest["held_out_fraction"],
                  seed=manifest["seed"], documents=manifest["documents"])
