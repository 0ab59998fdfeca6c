"""The pretraining corpus: per-file decoding with fallback, documents, held-out part, and bad files refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DATA, needs_real_data
from nlpstd.data import corpus
from nlpstd.errors import DataError
from nlpstd.spec import CorpusSpec


def spec(tmp_path: Path, **fields) -> CorpusSpec:
    return CorpusSpec.model_validate(fields, context={"base_dir": str(tmp_path)})


def test_auto_encoding_falls_back_to_latin1_per_file_and_says_which(tmp_path: Path):
    (tmp_path / "utf8.txt").write_text("Cæsar in UTF-8.\n", encoding="utf-8")
    (tmp_path / "latin.txt").write_bytes("Cæsar in Latin-1.\n".encode("latin-1"))
    prepared = corpus.prepare(spec(tmp_path, files=["*.txt"], held_out_fraction=0.5), seed=0)
    assert corpus.fallbacks(prepared) == [str(tmp_path / "latin.txt")]
    texts = [doc for docs in prepared.train + prepared.held_out for doc in docs]
    assert sorted(texts) == ["Cæsar in Latin-1.", "Cæsar in UTF-8."]


def test_crlf_is_normalised_and_paragraphs_are_documents(tmp_path: Path):
    (tmp_path / "a.txt").write_bytes(b"First line\r\nof one paragraph.\r\n\r\nSecond paragraph.\r\n")
    text = corpus.read_corpus_file(str(tmp_path / "a.txt"), "auto")
    assert text.documents == ["First line of one paragraph.", "Second paragraph."]


def test_declared_utf8_rejects_a_latin1_file_at_the_bad_line(tmp_path: Path):
    (tmp_path / "a.txt").write_bytes("fine\nalso fine\nCæsar\n".encode("latin-1"))
    with pytest.raises(DataError) as caught:
        corpus.read_corpus_file(str(tmp_path / "a.txt"), "utf-8")
    assert caught.value.file == str(tmp_path / "a.txt") and caught.value.line == 3
    assert "0xe6" in str(caught.value)


@pytest.mark.parametrize(("content", "message"), [(b"", "empty"), (b" \n\n \n", "empty"), (b"PK\x03\x04\x00\x00binary", "binary")])
def test_empty_and_binary_files_are_refused(tmp_path: Path, content: bytes, message: str):
    (tmp_path / "a.txt").write_bytes(content)
    with pytest.raises(DataError, match=message):
        corpus.read_corpus_file(str(tmp_path / "a.txt"), "auto")


def test_a_glob_that_matches_nothing_is_an_error(tmp_path: Path):
    with pytest.raises(DataError, match="matches no file"):
        corpus.check(spec(tmp_path, files=["books/*.txt"], held_out_fraction=0.1))


def test_held_out_fraction_is_seeded_and_disjoint(tmp_path: Path):
    (tmp_path / "a.txt").write_text("\n\n".join(f"paragraph {i}" for i in range(400)))
    first = corpus.prepare(spec(tmp_path, files=["a.txt"], held_out_fraction=0.1), seed=7)
    again = corpus.prepare(spec(tmp_path, files=["a.txt"], held_out_fraction=0.1), seed=7)
    assert first.held_out == again.held_out and first.fingerprint == again.fingerprint
    assert 20 <= len(first.held_out[0]) <= 60
    assert not set(first.held_out[0]) & set(first.train[0])
    assert len(first.held_out[0]) + len(first.train[0]) == 400


def test_fingerprint_follows_content_not_paths(tmp_path: Path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.txt").write_text("same text\n")
    x = corpus.prepare(spec(tmp_path, files=["x/a.txt"], held_out=["x/a.txt"]), seed=0)
    y = corpus.prepare(spec(tmp_path, files=["y/a.txt"], held_out=["y/a.txt"]), seed=0)
    assert x.fingerprint == y.fingerprint
    (tmp_path / "y" / "a.txt").write_text("other text\n")
    assert corpus.prepare(spec(tmp_path, files=["y/a.txt"], held_out=["y/a.txt"]), seed=0).fingerprint != x.fingerprint


def test_save_and_load_round_trip(tmp_path: Path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    (tmp_path / "b.txt").write_text("three\n")
    prepared = corpus.prepare(spec(tmp_path, files=["a.txt", "b.txt"], held_out=["b.txt"]), seed=0)
    corpus.save(prepared, tmp_path / "out")
    loaded = corpus.load(tmp_path / "out")
    assert (loaded.train, loaded.held_out, loaded.fingerprint) == (prepared.train, prepared.held_out, prepared.fingerprint)


@needs_real_data
def test_shared_corpus_traps_latin1_books_and_crlf_are_handled():
    shared = spec(DATA / "corpus", files=["gutenberg/*.txt"], held_out=["wikitext-2/valid.txt"])
    prepared = corpus.prepare(shared, seed=0)
    assert sorted(Path(p).name for p in corpus.fallbacks(prepared)) == ["chesterton-ball.txt", "shakespeare-caesar.txt"]
    assert len(prepared.train) == 13, "the glob leaves the README out"
    assert not any("\r" in doc for docs in prepared.train for doc in docs)
