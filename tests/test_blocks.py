"""Pretraining blocks: cut as one long token stream would be, the same on any number of processes,
stored as Arrow shards and read back memory-mapped, in memory that does not grow with the corpus."""

from __future__ import annotations

import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from conftest import corpus_text
from nlpstd.models.build import resolve_base
from nlpstd.train.blocks import MappedBlocks, MemorySink, ShardWriter, id_dtype
from nlpstd.train.tokenizing import build_blocks


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_base("minilm-l6"))


def documents(files: list[list[str]], held_every: int = 0) -> list[tuple[str, int, str]]:
    return [("held_out" if held_every and i % held_every == 0 else "train", f, text)
            for f, texts in enumerate(files) for i, text in enumerate(texts)]


def files_of(*seeds: int) -> list[list[str]]:
    return [corpus_text(60, seed=seed).split("\n\n") for seed in seeds]


def shards(tokenizer, docs, folder: Path, workers: int, cross_files: bool = False, shard_rows: int = 1 << 20) -> dict[str, MappedBlocks]:
    writers = {part: ShardWriter(folder / part, 32, id_dtype(len(tokenizer)), shard_rows) for part in ("train", "held_out")}
    build_blocks(tokenizer, docs, writers, max_length=32, cross_files=cross_files, workers=workers)
    for writer in writers.values():
        writer.close()
    return {part: MappedBlocks(folder / part) for part in writers}


def every_row(blocks: MappedBlocks) -> np.ndarray:
    return blocks.take(list(range(len(blocks))), blocks.max_length)


def test_blocks_are_the_file_streams_cut_every_max_length_minus_two_tokens(tokenizer):
    files = files_of(1, 2)
    sink = MemorySink(32, id_dtype(len(tokenizer)))
    build_blocks(tokenizer, documents(files), {"train": sink}, max_length=32, cross_files=False)
    blocks = sink.blocks()

    expected = []
    for texts in files:  # the specification: a file's tokens end to end, cut into rows of 30, a short tail of 8 or more kept
        stream = [token for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for token in ids]
        expected += [stream[i : i + 30] for i in range(0, len(stream), 30) if len(stream[i : i + 30]) >= 8]
    assert len(blocks) == len(expected)
    for row, length, tokens in zip(blocks.ids, blocks.lengths, expected):
        assert row[: length].tolist() == [tokenizer.cls_token_id, *tokens, tokenizer.sep_token_id]
        assert (row[length:] == tokenizer.pad_token_id).all()


def test_two_workers_make_the_very_blocks_one_makes(tokenizer, tmp_path: Path):
    docs = documents(files_of(1, 2, 3), held_every=5)
    one = shards(tokenizer, docs, tmp_path / "one", workers=1)
    two = shards(tokenizer, docs, tmp_path / "two", workers=2)
    for part in ("train", "held_out"):
        assert len(one[part]) > 0
        assert np.array_equal(every_row(one[part]), every_row(two[part]))
        assert np.array_equal(one[part].lengths, two[part].lengths)


def test_training_blocks_cross_files_only_when_asked_and_held_out_blocks_never(tokenizer, tmp_path: Path):
    docs = [("train", 0, "alpha " * 20), ("train", 1, "omega " * 20), ("held_out", 2, "alpha " * 20), ("held_out", 3, "omega " * 20)]
    alpha, omega = tokenizer.convert_tokens_to_ids(["alpha", "omega"])
    joined = shards(tokenizer, docs, tmp_path / "joined", workers=1, cross_files=True)
    assert any({alpha, omega} <= set(row.tolist()) for row in every_row(joined["train"]))
    assert all(len(set(row.tolist()) & {alpha, omega}) == 1 for row in every_row(joined["held_out"]))
    apart = shards(tokenizer, docs, tmp_path / "apart", workers=1, cross_files=False)
    assert all(len(set(row.tolist()) & {alpha, omega}) == 1 for row in every_row(apart["train"]))


def test_blocks_read_back_the_same_across_shard_files(tokenizer, tmp_path: Path):
    docs = documents(files_of(1, 2))
    sink = MemorySink(32, id_dtype(len(tokenizer)))
    build_blocks(tokenizer, docs, {"train": sink}, max_length=32, cross_files=False)
    mapped = shards(tokenizer, docs, tmp_path, workers=1, shard_rows=7)["train"]
    assert len(list((tmp_path / "train").glob("blocks-*.arrow"))) > 2
    order = np.random.default_rng(0).permutation(len(mapped))[:50].tolist()
    assert np.array_equal(mapped.take(order, 20), sink.blocks().take(order, 20))
    assert np.array_equal(mapped.lengths, sink.blocks().lengths)


def test_a_pickled_mapping_carries_its_path_not_its_blocks(tokenizer, tmp_path: Path):
    mapped = shards(tokenizer, documents(files_of(1, 2, 3)), tmp_path, workers=1)["train"]
    sent = pickle.dumps(mapped)
    assert len(sent) < 1000 < mapped.take(list(range(len(mapped))), 32).nbytes
    assert np.array_equal(every_row(pickle.loads(sent)), every_row(mapped))


def test_shards_are_arrow_files_that_hugging_face_datasets_opens(tokenizer, tmp_path: Path):
    import datasets

    mapped = shards(tokenizer, documents(files_of(1)), tmp_path, workers=1)["train"]
    opened = datasets.Dataset.from_file(str(tmp_path / "train" / "blocks-00000.arrow"))
    assert opened.column_names == ["ids", "length"] and len(opened) == len(mapped)
    assert opened[3]["ids"] == mapped.take([3], 32)[0].tolist()


def test_memory_while_building_does_not_grow_with_the_corpus(tokenizer, tmp_path: Path):
    text = corpus_text(40, seed=1).split("\n\n")

    def peak(repeats: int) -> int:
        docs = (("train", 0, document) for _ in range(repeats) for document in text)  # a stream, never a list
        writer = ShardWriter(tmp_path / str(repeats), 128, id_dtype(len(tokenizer)))
        tracemalloc.start()
        build_blocks(tokenizer, docs, {"train": writer}, max_length=128, cross_files=False)
        _, highest = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        writer.close()
        return highest

    small, large = peak(100), peak(800)
    assert MappedBlocks(tmp_path / "800").lengths.size > 4 * MappedBlocks(tmp_path / "100").lengths.size
    assert large < small * 1.5, f"building 8x the text took {large / small:.1f}x the memory"
