"""Masked-language-model pretraining: corpus blocks, dynamic masking, and a loss on masked tokens only.

The LM head maps hidden states onto the whole vocabulary; on a 30k vocabulary that projection
is most of a step's cost, so the loss gathers the ~15% masked positions first and runs the
head on those alone. Masks are drawn from a generator seeded by (seed, epoch, batch), so every
epoch masks differently and a resumed run masks exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from nlpstd.cache import cache_dir
from nlpstd.data.encode import IGNORE
from nlpstd.fsutil import replace_dir
from nlpstd.hashing import sha256_json, sha256_text
from nlpstd.runtime import autocast
from nlpstd.train.batching import epoch_batches, without_full_mask
from nlpstd.train.blocks import META, Blocks, MappedBlocks, MemorySink, ShardWriter, id_dtype
from nlpstd.train.tokenizing import build_blocks

PARTS = ("train", "held_out")

_FORMAT = "arrow-1"  # in the cache key: blocks cut or stored another way are another entry


def make_blocks(tokenizer: PreTrainedTokenizerFast, files: list[list[str]], max_length: int, cross_files: bool,
                desc: str = "tokenize") -> Blocks:
    """Blocks in memory from documents per file (tests, benchmarks); pretraining caches them on disk."""
    sink = MemorySink(max_length, id_dtype(len(tokenizer)))
    documents = (("train", index, document) for index, texts in enumerate(files) for document in texts)
    build_blocks(tokenizer, documents, {"train": sink}, max_length, cross_files, total=sum(map(len, files)), desc=desc)
    return sink.blocks()


def cached_blocks(tokenizer: PreTrainedTokenizerFast, documents: Callable[[], Iterable[tuple[str, int, str]]], max_length: int,
                  cross_files: bool, corpus_fingerprint: str, workers: int = 1, total: int | None = None) -> dict[str, MappedBlocks]:
    """The training and held-out blocks of a corpus, memory-mapped from the cache; on a miss,
    `documents()` is streamed once through `workers` processes to make both.

    The cache lives in `$NLPSTD_CACHE` (default `~/.cache/nlpstd`), one folder per (corpus,
    tokenizer, max_length, cross_files, part). Each is written under a temporary name and renamed
    when complete, so a killed run never leaves half an entry."""
    tokenizer_hash = tokenizer_fingerprint(tokenizer)
    folders = {}
    for part in PARTS:
        crossing = cross_files and part == "train"
        key = sha256_text(f"{corpus_fingerprint}:{tokenizer_hash}:{max_length}:{crossing}:{part}:{_FORMAT}")[:24]
        folders[part] = cache_dir() / "blocks" / key
    if not all((folder / META).is_file() for folder in folders.values()):
        for folder in folders.values():
            _remove_abandoned(folder)
        dtype = id_dtype(len(tokenizer))
        writers = {part: ShardWriter(folder.with_name(f"{folder.name}.{os.getpid()}.tmp"), max_length, dtype)
                   for part, folder in folders.items()}
        try:
            build_blocks(tokenizer, documents(), writers, max_length, cross_files, workers, total, desc="tokenize corpus")
            for part, writer in writers.items():
                writer.close()
                replace_dir(writer.folder, folders[part])
        finally:
            for writer in writers.values():
                shutil.rmtree(writer.folder, ignore_errors=True)
    return {part: MappedBlocks(folder) for part, folder in folders.items()}


def _remove_abandoned(folder: Path) -> None:
    """Remove what a build of `folder` killed before it finished left (`<name>.<pid>.tmp`, its process
    gone): a killed build of a large corpus would otherwise leave gigabytes behind."""
    for partial in folder.parent.glob(f"{folder.name}.*.tmp"):
        pid = partial.name.removeprefix(f"{folder.name}.").removesuffix(".tmp")
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerFast) -> str:
    """sha256 of what decides token ids (normalizer, pre-tokenizer, vocabulary), not of per-call
    settings such as truncation, which every call with `truncation=` changes."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    state.pop("truncation", None)
    state.pop("padding", None)
    return sha256_json(state)


class Masker:
    """BERT's masking: pick `probability` of the tokens (or of the words), replace 80% of the picks
    with [MASK], 10% with a random token, keep 10%; specials and padding are never picked."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, probability: float, whole_words: bool):
        self.probability, self.whole_words = probability, whole_words
        self.mask_id = tokenizer.mask_token_id
        vocab = len(tokenizer)
        special = torch.zeros(vocab, dtype=torch.bool)
        special[tokenizer.all_special_ids] = True
        self.special = special
        self.replacements = torch.nonzero(~special).flatten()
        pieces = tokenizer.convert_ids_to_tokens(list(range(vocab)))
        self.continuation = torch.tensor([p.startswith("##") for p in pieces])

    def __call__(self, ids: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(masked input ids, flat positions of the picks, original ids there)."""
        maskable = ~self.special[ids]
        draw = torch.rand(ids.shape, generator=generator)
        if self.whole_words:
            picked = self._whole_words(ids, maskable, draw)
        else:
            picked = maskable & (draw < self.probability)
        if not picked.any():  # a block too short to be picked still teaches something
            first = torch.nonzero(maskable.flatten())[0]
            picked.view(-1)[first] = True
        positions = torch.nonzero(picked.flatten()).flatten()
        labels = ids.flatten()[positions]
        action = torch.rand(len(positions), generator=generator)
        random_ids = self.replacements[torch.randint(len(self.replacements), (len(positions),), generator=generator)]
        masked = ids.clone().flatten()
        masked[positions] = torch.where(action < 0.8, self.mask_id, torch.where(action < 0.9, random_ids, labels))
        return masked.view_as(ids), positions, labels

    def _whole_words(self, ids: torch.Tensor, maskable: torch.Tensor, draw: torch.Tensor) -> torch.Tensor:
        """A word is picked at its first piece and every `##` piece after it follows."""
        starts = maskable & ~self.continuation[ids]
        word = torch.cumsum(starts.long(), dim=1)  # word number of every position (0: before the first word)
        chosen = torch.zeros(ids.shape[0], ids.shape[1] + 1, dtype=torch.bool)
        chosen.scatter_(1, word * starts, starts & (draw < self.probability))
        chosen[:, 0] = False
        return maskable & chosen.gather(1, word)


class MaskedLM:
    """The training objective the shared loop runs: batches of blocks, masked afresh every epoch."""

    def __init__(self, blocks: Blocks | MappedBlocks, masker: Masker, micro_batch: int, seed: int):
        self.blocks, self.masker, self.micro_batch, self.seed = blocks, masker, micro_batch, seed

    def batches(self, epoch: int) -> list[Sequence[int]]:
        return epoch_batches(self.blocks.lengths, self.micro_batch, self.seed, epoch, group_by_length=False)

    def collate(self, indices: list[int], epoch: int, position: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 10_007 + position)
        return mask_batch(self.blocks, indices, self.masker, generator)

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return masked_lm_loss(model, batch)


def mask_batch(blocks: Blocks | MappedBlocks, indices: list[int], masker: Masker, generator: torch.Generator) -> dict[str, torch.Tensor]:
    width = int(blocks.lengths[indices].max())
    ids = torch.from_numpy(blocks.take(indices, width).astype(np.int64))
    attention = (torch.arange(width)[None, :] < torch.from_numpy(blocks.lengths[indices])[:, None]).long()
    masked, positions, labels = masker(ids, generator)
    return {"input_ids": masked, "attention_mask": attention, "mlm_positions": positions, "mlm_labels": labels}


def masked_lm_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on the masked positions, with the LM head run on those positions only."""
    head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
    if head is None:  # an architecture whose head we do not know: let it score every position
        labels = torch.full_like(batch["input_ids"], IGNORE).flatten()
        labels[batch["mlm_positions"]] = batch["mlm_labels"]
        logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
        logits = logits.flatten(0, 1)[batch["mlm_positions"]]
    else:
        hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).last_hidden_state
        logits = head(hidden.flatten(0, 1).index_select(0, batch["mlm_positions"]))
    return F.cross_entropy(logits.float(), batch["mlm_labels"], reduction=reduction)


class HeldOut:
    """Held-out MLM loss and perplexity on fixed masks, so every evaluation is comparable. The masks
    are drawn again at each evaluation from the same seed, in the same order, so they are the same
    without being kept: a large held-out part costs no memory."""

    def __init__(self, blocks: Blocks | MappedBlocks, masker: Masker, batch_size: int, seed: int, device: torch.device,
                 precision: str, max_blocks: int | None = None):
        chosen = np.arange(len(blocks))
        if max_blocks and len(blocks) > max_blocks:  # spread over the whole held-out text, not its first pages
            chosen = np.linspace(0, len(blocks) - 1, max_blocks).round().astype(int)
        self.chosen, self.source, self.masker, self.batch_size, self.seed = chosen, blocks, masker, batch_size, seed
        self.blocks, self.device, self.precision = len(chosen), device, precision

    def batches(self) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed + 1)
        for start in range(0, len(self.chosen), self.batch_size):
            indices = self.chosen[start : start + self.batch_size].tolist()
            yield without_full_mask(mask_batch(self.source, indices, self.masker, generator))

    @torch.no_grad()
    def __call__(self, model: PreTrainedModel) -> dict[str, float]:
        model.eval()
        total, count = 0.0, 0
        batches = -(-len(self.chosen) // self.batch_size)
        for batch in tqdm(self.batches(), total=batches, desc="held-out", leave=False, dynamic_ncols=True):
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with autocast(self.device, self.precision):
                total += float(masked_lm_loss(model, batch, reduction="sum"))
            count += len(batch["mlm_labels"])
        loss = total / count
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}
