"""The pretraining corpus: per-file decoding with fallback, documents, held-out part, and bad files refused."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from conftest import DATA, corpus_text, needs_real_data
from nlpstd.data import corpus
from nlpstd.errors import DataError
from nlpstd.spec import CorpusSpec

pytest_plugins = ["tests.servers"]


def spec(tmp_path: Path, **fields) -> CorpusSpec:
    return CorpusSpec.model_validate(fields, context={"base_dir": str(tmp_path)})


def documents_of(path: Path, encoding: str = "auto") -> list[str]:
    """The documents of one file as pretraining reads them, in the codec the check resolved."""
    return list(corpus.documents(str(path), corpus.read_corpus_file(str(path), encoding).encoding))


def parts(prepared: corpus.Corpus, training: corpus.TrainingText | None = None) -> dict[str, list[list[str]]]:
    """The streamed documents per part, per file (files without a document of that part left out)."""
    grouped: dict[str, dict[int, list[str]]] = {"train": {}, "held_out": {}}
    for part, file, document in prepared.stream(training):
        grouped[part].setdefault(file, []).append(document)
    return {part: list(files.values()) for part, files in grouped.items()}


def test_auto_encoding_falls_back_to_latin1_per_file_and_says_which(tmp_path: Path):
    (tmp_path / "utf8.txt").write_text("Cæsar in UTF-8.\n", encoding="utf-8")
    (tmp_path / "latin.txt").write_bytes("Cæsar in Latin-1.\n".encode("latin-1"))
    prepared = corpus.prepare(spec(tmp_path, files=["*.txt"], held_out_fraction=0.5), seed=0)
    assert corpus.fallbacks(prepared) == [str(tmp_path / "latin.txt")]
    assert sorted(document for _, _, document in prepared.stream()) == ["Cæsar in Latin-1.", "Cæsar in UTF-8."]


def test_crlf_is_normalised_and_paragraphs_are_documents(tmp_path: Path):
    (tmp_path / "a.txt").write_bytes(b"First line\r\nof one paragraph.\r\n\r\nSecond paragraph.\r\n")
    assert documents_of(tmp_path / "a.txt") == ["First line of one paragraph.", "Second paragraph."]


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


def test_a_glob_that_matches_nothing_is_an_error_naming_its_key(tmp_path: Path):
    with pytest.raises(DataError, match=r"pretrain\.corpus\.files\[0\]: the pattern matches no file"):
        corpus.prepare(spec(tmp_path, files=["books/*.txt"], held_out_fraction=0.1), seed=0)


@pytest.mark.parametrize("kind", ["pipe", "folder", "device"])
def test_a_file_that_is_not_regular_is_refused_unopened_naming_its_key(tmp_path: Path, kind: str):
    (tmp_path / "a.txt").write_text("text\n")
    if kind == "pipe":
        os.mkfifo(tmp_path / "b.txt")  # opening it would wait for a writer
    elif kind == "folder":
        (tmp_path / "b.txt").mkdir()
    else:
        (tmp_path / "b.txt").symlink_to("/dev/zero")  # reading it would never end
    signal.alarm(10)
    try:
        with pytest.raises(DataError) as caught:
            corpus.prepare(spec(tmp_path, files=["a.txt"], held_out=["b.txt"]), seed=0)
    finally:
        signal.alarm(0)
    assert str(caught.value).startswith(f"{tmp_path / 'b.txt'}: pretrain.corpus.held_out[0]: not a regular file but ")


def test_a_glob_leaves_out_what_is_not_a_regular_file(tmp_path: Path):
    (tmp_path / "a.txt").write_text("text\n")
    os.mkfifo(tmp_path / "b.txt")
    (tmp_path / "c.txt").mkdir()
    assert [f["path"] for f in corpus.prepare(spec(tmp_path, files=["*.txt"], held_out_fraction=0.1), seed=0).files] == [
        str(tmp_path / "a.txt")]


def test_documents_are_paragraphs_whatever_the_line_ends(tmp_path: Path):
    text = "\ufeffOne\r\n  para\tgraph\r\n \t\r\nTwo\rlines\r\r\x0c\nstill two\n\n\n\nThree"
    (tmp_path / "a.txt").write_bytes(text.encode())
    assert documents_of(tmp_path / "a.txt") == ["One para graph", "Two lines", "still two", "Three"]


def test_the_check_counts_the_documents_the_stream_reads(tmp_path: Path):
    (tmp_path / "a.txt").write_text("\n\n".join(f"paragraph {i}" for i in range(50)))
    counted = corpus.read_corpus_file(str(tmp_path / "a.txt"), "auto")
    streamed = documents_of(tmp_path / "a.txt")
    assert (counted.count, counted.chars) == (50, sum(map(len, streamed))) and len(streamed) == 50
    assert counted.size == (tmp_path / "a.txt").stat().st_size


def test_a_latin1_byte_past_the_first_block_still_falls_back(tmp_path: Path):
    (tmp_path / "a.txt").write_bytes(b"plain ascii line\n" * 100_000 + "C\xe6sar\n".encode("latin-1"))
    text = corpus.read_corpus_file(str(tmp_path / "a.txt"), "auto")
    assert text.fell_back and text.encoding == "latin-1" and documents_of(tmp_path / "a.txt")[-1].endswith("Cæsar")


def test_check_decodes_every_file_and_returns_their_paths(tmp_path: Path):
    (tmp_path / "a.txt").write_text("one\n")
    (tmp_path / "b.txt").write_bytes("C\xe6sar\n".encode("latin-1"))
    assert corpus.check(spec(tmp_path, files=["a.txt"], held_out=["b.txt"])) == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(DataError, match="empty"):
        corpus.check(spec(tmp_path, files=["a.txt"], held_out=["b.txt"]))


def test_held_out_fraction_is_seeded_and_disjoint(tmp_path: Path):
    (tmp_path / "a.txt").write_text("\n\n".join(f"paragraph {i}" for i in range(400)))
    first = parts(corpus.prepare(spec(tmp_path, files=["a.txt"], held_out_fraction=0.1), seed=7))
    again = parts(corpus.prepare(spec(tmp_path, files=["a.txt"], held_out_fraction=0.1), seed=7))
    other = parts(corpus.prepare(spec(tmp_path, files=["a.txt"], held_out_fraction=0.1), seed=8))
    assert first == again and first != other
    assert 20 <= len(first["held_out"][0]) <= 60
    assert not set(first["held_out"][0]) & set(first["train"][0])
    assert len(first["held_out"][0]) + len(first["train"][0]) == 400


def test_the_manifest_counts_the_documents_of_each_part_the_stream_yields(tmp_path: Path):
    (tmp_path / "a.txt").write_text("\n\n".join(f"paragraph {i}" for i in range(400)))
    (tmp_path / "b.txt").write_text("\n\n".join(f"more {i}" for i in range(100)))
    prepared = corpus.prepare(spec(tmp_path, files=["a.txt", "b.txt"], held_out_fraction=0.1), seed=7)
    streamed = {part: sum(map(len, files)) for part, files in parts(prepared).items()}
    assert prepared.documents == streamed and streamed["held_out"] > 0


def test_the_stream_refuses_a_file_changed_after_it_was_checked(tmp_path: Path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    prepared = corpus.prepare(spec(tmp_path, files=["a.txt"], held_out_fraction=0.1), seed=0)
    (tmp_path / "a.txt").write_text("one\n\ntwo, edited\n")
    with pytest.raises(DataError, match="changed after data-prep") as caught:
        list(prepared.stream())
    assert caught.value.file == str(tmp_path / "a.txt")


def test_fingerprint_follows_content_not_paths(tmp_path: Path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.txt").write_text("same text\n")
    x = corpus.prepare(spec(tmp_path, files=["x/a.txt"], held_out=["x/a.txt"]), seed=0)
    y = corpus.prepare(spec(tmp_path, files=["y/a.txt"], held_out=["y/a.txt"]), seed=0)
    assert x.fingerprint == y.fingerprint
    (tmp_path / "y" / "a.txt").write_text("other text\n")
    assert corpus.prepare(spec(tmp_path, files=["y/a.txt"], held_out=["y/a.txt"]), seed=0).fingerprint != x.fingerprint


def test_training_text_adds_the_training_examples_without_their_labels(tmp_path: Path):
    (tmp_path / "a.txt").write_text("Corpus text.\n", encoding="utf-8")
    records = [{"tokens": ["李", "明", "来", "了"], "tags": ["B-PER", "I-PER", "O", "O"], "line": 1},
               {"tokens": ["\ufe0f"], "tags": ["O"], "line": 6}]
    training = corpus.TrainingText("train.conll", records)
    prepared = corpus.prepare(spec(tmp_path, files=["a.txt"], training_text=True, held_out=["a.txt"]), 0, training=training)
    assert parts(prepared, training)["train"] == [["Corpus text."], ["李 明 来 了", "\ufe0f"]]
    assert [f["path"] for f in prepared.files if f["part"] == "train"] == [str(tmp_path / "a.txt"), "train.conll (training text)"]


def test_training_text_alone_is_a_corpus_and_its_fingerprint_follows_the_examples(tmp_path: Path):
    texts = [corpus.TrainingText("train.jsonl", [{"text": text, "label": "pos"}]) for text in ("one", "two")]
    first, second = (corpus.prepare(spec(tmp_path, training_text=True, held_out_fraction=0.5), 0, training=t) for t in texts)
    assert [document for _, _, document in first.stream(texts[0])] == ["one"]
    assert first.fingerprint != second.fingerprint


def test_a_corpus_of_neither_files_nor_training_text_is_refused(tmp_path: Path):
    from conftest import ner_yaml, write_conll_splits, write_standard
    from nlpstd.errors import StandardError
    from nlpstd.spec import load_standard

    write_conll_splits(tmp_path)
    body = ner_yaml("minilm-l6") + "pretrain: {enabled: true, corpus: {held_out_fraction: 0.1}}\n"
    with pytest.raises(StandardError, match="list corpus files, or set training_text: true"):
        load_standard(write_standard(tmp_path, body))


def test_the_manifest_round_trips_and_streams_the_same_documents(tmp_path: Path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    (tmp_path / "b.txt").write_text("three\n")
    prepared = corpus.prepare(spec(tmp_path, files=["a.txt", "b.txt"], held_out=["b.txt"]), seed=0)
    corpus.save(prepared, tmp_path / "out")
    loaded = corpus.load(tmp_path / "out")
    assert loaded == prepared
    assert list(loaded.stream()) == [("train", 0, "one"), ("train", 0, "two"), ("train", 1, "three"), ("held_out", 2, "three")]
    assert not any(path.name != corpus.MANIFEST for path in (tmp_path / "out").iterdir()), "no copy of the text"


def test_a_folder_without_a_manifest_is_not_a_prepared_corpus(tmp_path: Path):
    with pytest.raises(DataError, match="not a prepared corpus"):
        corpus.load(tmp_path)


@needs_real_data
def test_shared_corpus_traps_latin1_books_and_crlf_are_handled():
    shared = spec(DATA / "corpus", files=["gutenberg/*.txt"], held_out=["wikitext-2/valid.txt"])
    prepared = corpus.prepare(shared, seed=0)
    assert sorted(Path(p).name for p in corpus.fallbacks(prepared)) == ["chesterton-ball.txt", "shakespeare-caesar.txt"]
    assert len([f for f in prepared.files if f["part"] == "train"]) == 13, "the glob leaves the README out"
    assert not any("\r" in document for _, _, document in prepared.stream())


# ---------------------------------------------------------------------------------------
# Corpora on S3: a prefix or pattern of many objects, read an object at a time


def put_corpus(s3_server, bucket: str, count: int) -> list[str]:
    """`count` small corpus objects under `corpus/` (plus a folder marker and one other object)."""
    s3 = s3_server.client()
    s3.put_object(Bucket=bucket, Key="corpus/", Body=b"")
    texts = [corpus_text(6, seed=i) for i in range(count)]
    for i, text in enumerate(texts):
        s3.put_object(Bucket=bucket, Key=f"corpus/part-{i:03d}.txt", Body=text.encode())
    s3.put_object(Bucket=bucket, Key="other/readme.md", Body=b"not corpus\n")
    return texts


def test_an_s3_prefix_names_every_object_under_it_in_key_order(s3_server, bucket, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("NLPSTD_CACHE", str(tmp_path / "cache"))
    texts = put_corpus(s3_server, bucket, 21)
    prepared = corpus.prepare(spec(tmp_path, files=[f"s3://{bucket}/corpus/"], held_out_fraction=0.1), seed=0)
    assert [f["path"] for f in prepared.files] == [f"s3://{bucket}/corpus/part-{i:03d}.txt" for i in range(21)]
    streamed = [document for _, _, document in prepared.stream()]
    assert streamed == [" ".join(p.split()) for text in texts for p in text.split("\n\n") if p.strip()]


def test_an_s3_pattern_keeps_the_matching_keys_and_one_matching_nothing_is_an_error(s3_server, bucket, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("NLPSTD_CACHE", str(tmp_path / "cache"))
    put_corpus(s3_server, bucket, 12)
    prepared = corpus.prepare(spec(tmp_path, files=[f"s3://{bucket}/corpus/part-00*.txt"], held_out_fraction=0.1), seed=0)
    assert len(prepared.files) == 10
    with pytest.raises(DataError, match=r"pretrain\.corpus\.files\[0\]: the prefix or pattern matches no object"):
        corpus.prepare(spec(tmp_path, files=[f"s3://{bucket}/corpus/*.json"], held_out_fraction=0.1), seed=0)


def test_streaming_an_s3_corpus_keeps_the_download_cache_within_its_budget(s3_server, bucket, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("NLPSTD_CACHE", str(tmp_path / "cache"))
    texts = put_corpus(s3_server, bucket, 24)
    largest = max(len(text.encode()) for text in texts)
    budget = 3 * largest
    monkeypatch.setenv("NLPSTD_S3_CACHE_GB", str(budget / 1e9))
    prepared = corpus.prepare(spec(tmp_path, files=[f"s3://{bucket}/corpus/"], held_out_fraction=0.1), seed=0)

    def cached() -> int:
        return sum(path.stat().st_size for path in (tmp_path / "cache" / "s3").rglob("*") if path.is_file())

    seen = [cached() for _ in prepared.stream()]  # the next object downloads meanwhile, before the cache is trimmed
    assert len(seen) > 24 and max(seen) <= budget + largest and cached() <= budget
    assert sum(len(text.encode()) for text in texts) > 5 * budget, "the whole corpus was never on the local disk"
