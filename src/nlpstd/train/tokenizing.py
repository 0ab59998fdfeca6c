"""Tokenizing a corpus on every core into blocks: documents go out in order, tokens come back in order.

The main process reads the documents (a stream, see `data.corpus`), packs them into chunks and
hands the chunks to worker processes, a bounded number at a time so memory stays flat; it takes
the results back in the order it sent them and cuts blocks from them (`blocks.BlockCutter`).
Workers only tokenize, so the blocks are the same for any number of workers.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
from tokenizers import Tokenizer
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast

from nlpstd.train.blocks import BlockCutter, Sink, id_dtype

_CHUNK_DOCUMENTS = 1000
_CHUNK_CHARS = 1 << 20
_IN_FLIGHT = 2  # chunks per worker sent ahead of the one the main process waits for

_tokenizer: Tokenizer | None = None  # each worker's own copy


@dataclass
class _Chunk:
    """Consecutive documents, with the runs of (part, file, how many documents) they form."""

    runs: list[list] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    chars: int = 0


def build_blocks(tokenizer: PreTrainedTokenizerFast, documents: Iterable[tuple[str, int, str]], sinks: dict[str, Sink],
                 max_length: int, cross_files: bool, workers: int = 1, total: int | None = None, desc: str = "tokenize") -> None:
    """Tokenize (part, file index, document) in order and cut each part's stream into blocks for
    `sinks[part]`; a part without a sink is skipped. `cross_files` lets training blocks span files
    (held-out blocks never do). `total` documents, when known, sizes the progress bar."""
    dtype = id_dtype(len(tokenizer))
    specials = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    cutters = {part: BlockCutter(sink, max_length, cross_files and part == "train", specials, dtype) for part, sink in sinks.items()}
    wanted = ((part, file, text) for part, file, text in documents if part in cutters)
    progress = tqdm(total=total, desc=desc, unit="doc", dynamic_ncols=True, mininterval=1.0)
    with sequential_tokenizers():
        serialized = tokenizer.backend_tokenizer.to_str()
        for runs, pieces in ordered_map(_tokenize, _chunks(wanted), workers, _load, (serialized,)):
            for (part, file, count), ids in zip(runs, pieces):
                cutters[part].feed(file, ids)
                progress.update(count)
    for cutter in cutters.values():
        cutter.end()
    progress.close()


def _chunks(documents: Iterable[tuple[str, int, str]]) -> Iterator[_Chunk]:
    chunk = _Chunk()
    for part, file, text in documents:
        if chunk.runs and chunk.runs[-1][:2] == [part, file]:
            chunk.runs[-1][2] += 1
        else:
            chunk.runs.append([part, file, 1])
        chunk.texts.append(text)
        chunk.chars += len(text)
        if len(chunk.texts) >= _CHUNK_DOCUMENTS or chunk.chars >= _CHUNK_CHARS:
            yield chunk
            chunk = _Chunk()
    if chunk.texts:
        yield chunk


def _load(serialized: str) -> None:
    """A worker's tokenizer: the main one's model, without the truncation or padding a saved
    tokenizer.json may carry (the HF call that pretraining used to make turns both off too)."""
    global _tokenizer
    _tokenizer = Tokenizer.from_str(serialized)
    _tokenizer.no_truncation()
    _tokenizer.no_padding()


def _tokenize(chunk: _Chunk) -> tuple[list[list], list[np.ndarray]]:
    """The chunk's runs, and per run the token ids of its documents end to end."""
    encodings = _tokenizer.encode_batch_fast(chunk.texts, add_special_tokens=False)
    pieces, start = [], 0
    for _, _, count in chunk.runs:
        run = encodings[start : start + count]
        pieces.append(np.fromiter(chain.from_iterable(e.ids for e in run), dtype=np.int32))
        start += count
    return chunk.runs, pieces


def ordered_map(function: Callable, items: Iterable, workers: int, initializer: Callable, initargs: tuple) -> Iterator:
    """`map(function, items)` over `workers` processes, results in the items' order, with at most
    `_IN_FLIGHT` items per worker sent ahead (`Pool.imap` would read every item at once). With one
    worker it runs here, without a pool."""
    if workers <= 1:
        initializer(*initargs)
        yield from map(function, items)
        return
    # fork: workers inherit the loaded modules instead of importing them again (seconds each)
    with multiprocessing.get_context("fork").Pool(workers, initializer, initargs) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(function, (item,)))
            if len(pending) > workers * _IN_FLIGHT:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


@contextlib.contextmanager
def sequential_tokenizers() -> Iterator[None]:
    """Hugging Face tokenizers on one thread per process: work is spread over processes instead, and
    a process forked after the tokenizers' thread pool ran would otherwise warn and may deadlock."""
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous
