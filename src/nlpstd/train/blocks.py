"""Token blocks for masked-LM pretraining: cut from a stream of tokenized documents, kept as Arrow
IPC files on disk and read back memory-mapped.

A block is up to `max_length` tokens, `[CLS] ... [SEP]`, cut from the concatenated tokens of a
file's documents (or of all files, with `cross_files`). The cut depends only on the order of the
documents, never on how the tokenizing was split between processes, so one process and eight
make the same blocks.

On disk, a folder holds `blocks.json` and shards `blocks-00000.arrow`, ...: Arrow IPC streams with
columns `ids` (fixed-size lists of `max_length` token ids, padded) and `length`, the format
Hugging Face `datasets` writes (`datasets.Dataset.from_file` opens them). Training maps them into
memory instead of loading them, so its memory does not grow with the corpus, every DataLoader
worker and DDP process shares the same pages, and pickling a `MappedBlocks` sends its path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from nlpstd.jsonio import read_json, write_json

MIN_BLOCK = 8  # a file's last, short block is kept only if it has this many tokens
META = "blocks.json"
_BATCH_ROWS = 8192  # blocks per Arrow record batch
SHARD_ROWS = 1 << 20  # blocks per shard file (256 MiB of uint16 ids at 128 tokens)


def id_dtype(vocab_size: int) -> np.dtype:
    """The narrowest integer that holds every token id: BERT vocabularies fit 16 bits."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


class Sink(Protocol):
    def write(self, ids: np.ndarray, lengths: np.ndarray) -> None: ...


class BlockCutter:
    """Cuts one part's token stream into blocks as the tokens arrive: full blocks at once, the rest
    kept until more tokens of the same stream come or the stream ends."""

    def __init__(self, sink: Sink, max_length: int, cross_files: bool, specials: tuple[int, int, int], dtype: np.dtype):
        """`specials` = ([CLS], [SEP], [PAD]) ids."""
        self.sink, self.max_length, self.cross_files, self.dtype = sink, max_length, cross_files, dtype
        self.cls, self.sep, self.pad = specials
        self.body = max_length - 2
        self.file: int | None = None
        self.rest = np.empty(0, dtype=dtype)

    def feed(self, file: int, ids: np.ndarray) -> None:
        """The next tokens of `file`; a new file ends the previous file's stream unless `cross_files`."""
        if file != self.file and not self.cross_files:
            self.end()
        self.file = file
        stream = np.concatenate([self.rest, ids.astype(self.dtype, copy=False)])
        full = len(stream) // self.body * self.body
        if full:
            rows = stream[:full].reshape(-1, self.body)
            framed = np.empty((len(rows), self.max_length), dtype=self.dtype)
            framed[:, 0], framed[:, 1:-1], framed[:, -1] = self.cls, rows, self.sep
            self.sink.write(framed, np.full(len(rows), self.max_length, dtype=np.int32))
        self.rest = stream[full:]

    def end(self) -> None:
        """Close the current stream: its last tokens make one short block if there are enough."""
        if len(self.rest) >= MIN_BLOCK:
            framed = np.full((1, self.max_length), self.pad, dtype=self.dtype)
            framed[0, 0], framed[0, 1 : len(self.rest) + 1], framed[0, len(self.rest) + 1] = self.cls, self.rest, self.sep
            self.sink.write(framed, np.array([len(self.rest) + 2], dtype=np.int32))
        self.rest = self.rest[:0]


@dataclass
class Blocks:
    """Blocks held in memory (right-padded into one array): for tests and small corpora."""

    ids: np.ndarray  # (N, max_length)
    lengths: np.ndarray  # (N,) int32

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, indices: list[int], width: int) -> np.ndarray:
        """The blocks at `indices`, their first `width` tokens."""
        return self.ids[indices, :width]


class MemorySink:
    """Collects blocks into a `Blocks`."""

    def __init__(self, max_length: int, dtype: np.dtype):
        self.parts: list[tuple[np.ndarray, np.ndarray]] = [(np.empty((0, max_length), dtype=dtype), np.empty(0, dtype=np.int32))]

    def write(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        self.parts.append((ids, lengths))

    def blocks(self) -> Blocks:
        return Blocks(np.concatenate([ids for ids, _ in self.parts]), np.concatenate([lengths for _, lengths in self.parts]))


class ShardWriter:
    """Writes blocks into Arrow IPC shards in `folder`, a record batch per `_BATCH_ROWS` blocks and
    a new shard every `shard_rows`; `close` writes `blocks.json`, which marks the folder complete."""

    def __init__(self, folder: Path, max_length: int, dtype: np.dtype, shard_rows: int = SHARD_ROWS):
        self.folder, self.max_length, self.dtype, self.shard_rows = Path(folder), max_length, dtype, shard_rows
        self.folder.mkdir(parents=True, exist_ok=True)
        self.schema = pa.schema([("ids", pa.list_(pa.from_numpy_dtype(dtype), max_length)), ("length", pa.int32())])
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending_rows = self.rows = self.shard_used = 0
        self.shards: list[str] = []
        self.writer: pa.ipc.RecordBatchStreamWriter | None = None
        self.sink: pa.NativeFile | None = None

    def write(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        self.pending.append((ids, lengths))
        self.pending_rows += len(lengths)
        if self.pending_rows >= _BATCH_ROWS:
            self._flush()

    def close(self) -> None:
        self._flush()
        self._close_shard()
        write_json(self.folder / META, {"rows": self.rows, "max_length": self.max_length, "dtype": self.dtype.name,
                                        "shards": self.shards})

    def _flush(self) -> None:
        if not self.pending_rows:
            return
        ids = np.concatenate([ids for ids, _ in self.pending])
        lengths = np.concatenate([lengths for _, lengths in self.pending])
        self.pending, self.pending_rows = [], 0
        start = 0
        while start < len(lengths):  # a batch that crosses the shard limit is split there
            if self.writer is None or self.shard_used == self.shard_rows:
                self._open_shard()
            stop = min(len(lengths), start + self.shard_rows - self.shard_used)
            batch = pa.record_batch([pa.FixedSizeListArray.from_arrays(pa.array(ids[start:stop].reshape(-1)), self.max_length),
                                     pa.array(lengths[start:stop])], schema=self.schema)
            self.writer.write_batch(batch)
            self.shard_used += stop - start
            self.rows += stop - start
            start = stop

    def _open_shard(self) -> None:
        self._close_shard()
        name = f"blocks-{len(self.shards):05d}.arrow"
        self.sink = pa.OSFile(str(self.folder / name), "wb")
        self.writer = pa.ipc.new_stream(self.sink, self.schema)
        self.shards.append(name)
        self.shard_used = 0

    def _close_shard(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.sink.close()
            self.writer = self.sink = None


class MappedBlocks:
    """Blocks read from a folder `ShardWriter` completed, memory-mapped: only the lengths are in memory."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._open()

    def _open(self) -> None:
        meta = read_json(self.folder / META)
        self.max_length = meta["max_length"]
        self.views: list[np.ndarray] = []
        lengths = [np.empty(0, dtype=np.int32)]
        for name in meta["shards"]:
            table = pa.ipc.open_stream(pa.memory_map(str(self.folder / name))).read_all()
            for batch in table.to_batches():
                flat = batch.column(0).flatten().to_numpy(zero_copy_only=True)
                self.views.append(flat.reshape(-1, self.max_length))
                lengths.append(batch.column(1).to_numpy(zero_copy_only=True))
        self.lengths = np.concatenate(lengths)
        self.starts = np.cumsum([0] + [len(view) for view in self.views])

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, indices: list[int], width: int) -> np.ndarray:
        """The blocks at `indices`, their first `width` tokens (copied out of the map)."""
        indices = np.asarray(indices)
        batches = np.searchsorted(self.starts, indices, side="right") - 1
        out = np.empty((len(indices), width), dtype=self.views[0].dtype if self.views else np.int32)
        for row, (batch, index) in enumerate(zip(batches, indices - self.starts[batches])):
            out[row] = self.views[batch][index, :width]
        return out

    def __getstate__(self) -> dict:
        return {"folder": str(self.folder)}  # a worker maps the files again: the pages are shared, not copied

    def __setstate__(self, state: dict) -> None:
        self.folder = Path(state["folder"])
        self._open()
