"""The pretraining corpus: raw text files in, clean documents out, with a held-out part.

Each file is decoded on its own, line by line as it is read: `encoding: auto` reads UTF-8 and
falls back to Latin-1 for a file that is not valid UTF-8 (and says which files did). CRLF and CR
line ends are line ends like LF. A document is a paragraph: lines up to the next blank line.
Files that cannot be corpus text (missing, not a regular file, empty, binary, undecodable in the
declared encoding) fail before anything is written, each with a one-line error that names the
file and the standard's key that lists it (`pretrain.corpus.files[0]`).
"""

from __future__ import annotations

import glob
import json
import random
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO, TYPE_CHECKING

from nlpstd.data.textfile import Undecodable, decode_lines, regular_file
from nlpstd.errors import DataError
from nlpstd.hashing import sha256_handle, sha256_text
from nlpstd.jsonio import write_json

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import CorpusFile, CorpusSpec

_BINARY_SAMPLE = 8192


@dataclass
class CorpusText:
    """One decoded file: where it came from, how it was decoded, its documents."""

    path: str
    encoding: str
    fell_back: bool  # `auto` found invalid UTF-8 and read Latin-1
    documents: list[str]  # empty when read only to be checked
    sha256: str
    count: int = 0  # documents, kept or not
    chars: int = 0  # characters of the documents


@dataclass
class Corpus:
    """Documents per training file (blocks stay inside a file) and the held-out documents."""

    train: list[list[str]]
    held_out: list[list[str]]
    files: list[dict] = field(default_factory=list)  # per file: path, part, encoding, fell_back, documents, chars
    fingerprint: str = ""


def expand(entries: list[CorpusFile], default_encoding: str, key: str = "pretrain.corpus.files") -> list[tuple[str, str, str]]:
    """(path, encoding, key of the entry) for every file the entries name, globs sorted; an entry
    matching nothing is an error. A glob keeps regular files only: a folder or a pipe among the
    matches is not text."""
    found: list[tuple[str, str, str]] = []
    for index, entry in enumerate(entries):
        encoding, where = entry.encoding or default_encoding, f"{key}[{index}]"
        if glob.has_magic(entry.path) and entry.path.startswith("s3://"):
            raise DataError(entry.path, None, where, "patterns do not apply to s3:// objects: list each object")
        if glob.has_magic(entry.path):
            matches = sorted(p for p in glob.glob(entry.path, recursive=True) if Path(p).is_file())
            if not matches:
                raise DataError(entry.path, None, where, "the pattern matches no file")
            found += [(p, encoding, where) for p in matches]
        else:
            found.append((entry.path, encoding, where))
    return found


def read_corpus_file(path: str, encoding: str, key: str | None = None, keep: bool = True) -> CorpusText:
    """Decode one file, a line at a time; refuse what is not text. `key` is the standard's key that
    lists the file, for the error; with `keep` false the documents are counted, not kept."""
    local = regular_file(path, key)  # before opening: a named pipe would block, /dev/zero never end
    with open(local, "rb") as handle:
        if b"\x00" in handle.read(_BINARY_SAMPLE):
            raise DataError(path, None, key, "this is a binary file (NUL bytes), not text; leave it out of the corpus")
        codec = "utf-8" if encoding == "auto" else encoding
        try:
            documents, count, chars = _paragraphs(handle, codec, keep)
        except Undecodable as bad:
            if encoding != "auto":
                raise DataError(path, bad.line, "encoding", f"byte 0x{bad.byte:02x} is not valid {encoding}; "
                                "set encoding: auto (UTF-8, else Latin-1) or the file's codec") from None
            codec = "latin-1"  # decodes any byte: the file is read again from its start
            documents, count, chars = _paragraphs(handle, codec, keep)
        handle.seek(0)
        sha256 = sha256_handle(handle)
    if not count:
        raise DataError(path, None, key, "the corpus file is empty (no text, only whitespace)")
    return CorpusText(path, codec, codec == "latin-1" and encoding == "auto", documents, sha256, count, chars)


def _paragraphs(handle: IO[bytes], codec: str, keep: bool) -> tuple[list[str], int, int]:
    """(documents if `keep`, how many, their characters) of an open file, read from its start. A
    document is a paragraph with each run of whitespace made one space; a line of nothing but
    spaces and tabs ends it."""
    handle.seek(0)
    documents, count, chars = [], 0, 0
    words: list[str] = []
    for line in chain(decode_lines(handle, codec), ["\n"]):  # a blank line after the last ends the last paragraph
        if line.strip(" \t\r\n"):
            words += line.split()
        elif words:
            document, words = " ".join(words), []
            count, chars = count + 1, chars + len(document)
            if keep:
                documents.append(document)
    return documents, count, chars


def check(spec: CorpusSpec, training: TrainingText | None = None) -> list[str]:
    """Read and decode every corpus file (the checks `prepare` would fail on), keeping no document;
    returns the paths."""
    return [described["path"] for described in prepare(spec, seed=0, keep_documents=False, training=training).files]


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


def read_training_text(training: TrainingText, keep: bool = True) -> CorpusText:
    """The training examples as corpus documents, one per example; named `<train file> (training text)`."""
    documents = [document for document in map(training_document, training.records) if document.strip()]
    digest = sha256_text("\n".join(documents))
    return CorpusText(f"{training.path} (training text)", "utf-8", False, documents if keep else [], digest,
                      len(documents), sum(map(len, documents)))


def prepare(spec: CorpusSpec, seed: int, keep_documents: bool = True, training: TrainingText | None = None) -> Corpus:
    """Decode every file and set the held-out documents aside (held-out files, or a seeded share).
    Without `keep_documents` every file is decoded and counted but no document is kept (validate).
    With `training_text`, the training examples (`training`) are one more file of the corpus."""
    texts = [read_corpus_file(p, e, k, keep_documents) for p, e, k in expand(spec.files, spec.encoding)]
    if spec.training_text:
        if training is None:
            raise ValueError("pretrain.corpus.training_text needs the training examples")
        texts.append(read_training_text(training, keep_documents))
    held_texts = [read_corpus_file(p, e, k, keep_documents)
                  for p, e, k in expand(spec.held_out, spec.encoding, "pretrain.corpus.held_out")]
    if spec.held_out_fraction:
        rng = random.Random(seed)
        train, held = [], []
        for text in texts:
            picks = [rng.random() < spec.held_out_fraction for _ in text.documents]
            train.append([d for d, p in zip(text.documents, picks) if not p])
            held.append([d for d, p in zip(text.documents, picks) if p])
    else:
        train, held = [t.documents for t in texts], [t.documents for t in held_texts]
    files = [_describe(t, "train") for t in texts] + [_describe(t, "held_out") for t in held_texts]
    return Corpus(train=train, held_out=held, files=files, fingerprint=fingerprint(spec, texts, held_texts, seed))


def _describe(text: CorpusText, part: str) -> dict:
    return {"path": text.path, "part": part, "encoding": text.encoding, "fell_back": text.fell_back,
            "documents": text.count, "chars": text.chars}


def fingerprint(spec: CorpusSpec, texts: list[CorpusText], held_texts: list[CorpusText], seed: int) -> str:
    """sha256 over the files' bytes (in order, no paths) and the options that shape the documents."""
    lines = [f"{part}:{text.sha256}:{text.encoding}\n" for part, group in (("train", texts), ("held_out", held_texts)) for text in group]
    options = {"held_out_fraction": spec.held_out_fraction, "seed": seed if spec.held_out_fraction else None}
    return sha256_text("".join(lines) + json.dumps(options, sort_keys=True))


def fallbacks(corpus: Corpus) -> list[str]:
    """Files that `encoding: auto` read as Latin-1."""
    return [f["path"] for f in corpus.files if f["fell_back"]]


# ---------------------------------------------------------------------------------------
# Save / load: one JSON line per document, `{"file": i, "text": ...}`


def save(corpus: Corpus, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for part in ("train", "held_out"):
        with open(out_dir / f"{part}.jsonl", "w", encoding="utf-8") as handle:
            for index, documents in enumerate(getattr(corpus, part)):
                for document in documents:
                    handle.write(json.dumps({"file": index, "text": document}, ensure_ascii=False) + "\n")
    summary = {"fingerprint": corpus.fingerprint, "files": corpus.files,
               "parts": {"train": len(corpus.train), "held_out": len(corpus.held_out)}}
    write_json(out_dir / "corpus.json", summary)


def load(corpus_dir: Path) -> Corpus:
    corpus_dir = Path(corpus_dir)
    try:
        summary = json.loads((corpus_dir / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(corpus_dir, None, None, f"not a prepared corpus ({exc}); run data-prep with pretraining enabled") from None
    parts: dict[str, list[list[str]]] = {}
    for part, count in summary["parts"].items():
        documents: list[list[str]] = [[] for _ in range(count)]
        with open(corpus_dir / f"{part}.jsonl", encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                documents[row["file"]].append(row["text"])
        parts[part] = documents
    return Corpus(train=parts["train"], held_out=parts["held_out"], files=summary["files"], fingerprint=summary["fingerprint"])
