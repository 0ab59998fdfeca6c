"""The pretraining corpus: raw text files in, clean documents out, with a held-out part.

Each file is decoded on its own: `encoding: auto` reads UTF-8 and falls back to Latin-1 for
a file that is not valid UTF-8 (and says which files did). CRLF and CR line ends become LF.
A document is a paragraph: lines up to the next blank line. Files that cannot be corpus
text (missing, empty, binary, undecodable in the declared encoding) fail before anything
is written, each with a one-line error that names the file.
"""

from __future__ import annotations

import glob
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from nlpstd.data.readers import read_bytes
from nlpstd.errors import DataError
from nlpstd.spec import CorpusFile, CorpusSpec

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_BINARY_SAMPLE = 8192


@dataclass
class CorpusText:
    """One decoded file: where it came from, how it was decoded, its documents."""

    path: str
    encoding: str
    fell_back: bool  # `auto` found invalid UTF-8 and read Latin-1
    documents: list[str]
    sha256: str


@dataclass
class Corpus:
    """Documents per training file (blocks stay inside a file) and the held-out documents."""

    train: list[list[str]]
    held_out: list[list[str]]
    files: list[dict] = field(default_factory=list)  # per file: path, part, encoding, fell_back, documents, chars
    fingerprint: str = ""


def expand(entries: list[CorpusFile], default_encoding: str) -> list[tuple[str, str]]:
    """(path, encoding) for every file the entries name, globs sorted; an entry matching nothing is an error."""
    found: list[tuple[str, str]] = []
    for entry in entries:
        encoding = entry.encoding or default_encoding
        if glob.has_magic(entry.path) and entry.path.startswith("s3://"):
            raise DataError(entry.path, None, None, "patterns do not apply to s3:// objects: list each object")
        if glob.has_magic(entry.path):
            matches = sorted(p for p in glob.glob(entry.path, recursive=True) if Path(p).is_file())
            if not matches:
                raise DataError(entry.path, None, None, "the pattern matches no file")
            found += [(p, encoding) for p in matches]
        else:
            found.append((entry.path, encoding))
    return found


def read_corpus_file(path: str, encoding: str) -> CorpusText:
    """Decode one file; refuse what is not text."""
    raw = read_bytes(path)
    if not raw.strip():
        raise DataError(path, None, None, "the corpus file is empty")
    if b"\x00" in raw[:_BINARY_SAMPLE]:
        raise DataError(path, None, None, "this is a binary file (NUL bytes), not text; leave it out of the corpus")
    fell_back = False
    try:
        text = raw.decode("utf-8" if encoding == "auto" else encoding)
    except UnicodeDecodeError as exc:
        if encoding != "auto":
            line = raw.count(b"\n", 0, exc.start) + 1
            raise DataError(path, line, "encoding", f"byte 0x{raw[exc.start]:02x} is not valid {encoding}; "
                            "set encoding: auto (UTF-8, else Latin-1) or the file's codec") from None
        text, fell_back = raw.decode("latin-1"), True
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    documents = [" ".join(doc.split()) for doc in _PARAGRAPH_BREAK.split(text)]
    documents = [doc for doc in documents if doc]
    used = "latin-1" if fell_back else ("utf-8" if encoding == "auto" else encoding)
    return CorpusText(path, used, fell_back, documents, hashlib.sha256(raw).hexdigest())


def check(spec: CorpusSpec) -> list[str]:
    """Read and decode every corpus file (the checks `prepare` would fail on); returns the paths."""
    paths = []
    for path, encoding in expand(spec.files, spec.encoding) + expand(spec.held_out, spec.encoding):
        read_corpus_file(path, encoding)
        paths.append(path)
    return paths


def prepare(spec: CorpusSpec, seed: int) -> Corpus:
    """Decode every file and set the held-out documents aside (held-out files, or a seeded share)."""
    texts = [read_corpus_file(p, e) for p, e in expand(spec.files, spec.encoding)]
    held_texts = [read_corpus_file(p, e) for p, e in expand(spec.held_out, spec.encoding)]
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
            "documents": len(text.documents), "chars": sum(len(d) for d in text.documents)}


def fingerprint(spec: CorpusSpec, texts: list[CorpusText], held_texts: list[CorpusText], seed: int) -> str:
    """sha256 over the files' bytes (in order, no paths) and the options that shape the documents."""
    digest = hashlib.sha256()
    for part, group in (("train", texts), ("held_out", held_texts)):
        for text in group:
            digest.update(f"{part}:{text.sha256}:{text.encoding}\n".encode())
    options = {"held_out_fraction": spec.held_out_fraction, "seed": seed if spec.held_out_fraction else None}
    digest.update(json.dumps(options, sort_keys=True).encode())
    return digest.hexdigest()


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
    (out_dir / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


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
