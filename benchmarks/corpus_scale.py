"""Pretraining at real scale: nlpstd's streamed corpus path against the Hugging Face preprocessing of
`run_mlm.py`, on corpora of about 100 MB, 400 MB and 2 GB (`--sizes`, in MB of UTF-8 text).

What it measures, per corpus size:

1. The corpus, made once under `--work` and reused: every training source of the shared corpus
   (the Gutenberg books, tinyshakespeare, wikitext-2 test), decoded as `encoding: auto` reads it
   (UTF-8, else Latin-1), written again as UTF-8, whole sources over and over, into files of about
   50 MB (`part-0000.txt`, ...) until the size is reached. wikitext-2 valid is the held-out file
   (`held_out.txt`, a held-out file rather than `held_out_fraction`): both sides read it too.
2. nlpstd end to end: `nlpstd run <standard> --stages data-prep,pretrain --no-tracking`, the standard
   pretraining the MiniLM-L6 base on that corpus in blocks of 128 tokens for 2 steps (CoNLL-2003,
   cut to a few hundred sentences, is its task data), with an empty `NLPSTD_CACHE`, so the corpus
   is checked, hashed, tokenized and cut into blocks for real. It does more than the peer: data-prep
   reads and hashes every file once before pretrain tokenizes it, and pretrain loads the model,
   takes its 2 steps and measures held-out perplexity three times (on at most 64 blocks).
3. The Hugging Face peer, the preprocessing a user copies from transformers' `run_mlm.py`:
   `load_dataset("text")` on the same files (training parts and held-out file), then
   `map(tokenize, batched=True, num_proc=K)` with `return_special_tokens_mask=True` and
   `map(group_texts, batched=True, num_proc=K)` into blocks of 128 tokens, with an empty datasets
   cache. Tokenizers keeps its default threading, as a user's script does.
4. nlpstd's tokenization alone: `corpus.prepare`, then `cached_blocks` with 1 worker and with K, each
   in a fresh process and an empty cache: the seconds of each call as timed inside the process, the
   speed-up of `cached_blocks`, and whether every shard file of the two caches is byte-identical
   (sha256). `--peer-one-proc` also runs the peer with `num_proc=1` and compares a hash of all its
   block ids with the `num_proc=K` run's: `group_texts` cuts each batch of lines on its own, and
   each process's shard starts a new batch, so the blocks depend on K.
5. Once, on the smallest corpus: masked batches of 32 (`MaskedLM.collate` over `batches(0)`, or its
   first `--collate-batches`) from the memory-mapped shards (`MappedBlocks`) against the same blocks
   held in memory (`Blocks`), and `--train-steps` training steps of a tiny BERT (2 layers, hidden
   128) from each, taking turns A/B/A/B; the ratio is the median over the pairs. The shards are in the page cache by
   then, so this is the cost of reading through the map, not of cold disk reads.

Every measured run is a fresh process, measured alike on both sides: wall seconds, and every 0.5 s
the resident memory (RSS) of the process and of all its descendants, summed (the tree's peak), and
of the process itself (the main peak). K is `--workers` (default: the machine's cores) for both
sides. Pages that forked workers share, and pages of mapped files, count once per process that
touched them: the tree peak is an upper bound. One untimed process imports the libraries first, so
that the first measured run does not pay alone for reading them from disk.

Markdown tables on stdout; every run's figures in `<out>/corpus_scale.json` (rewritten after each
corpus size, so a long invocation leaves what it measured), seconds and peak memory against corpus
size in `<out>/corpus_scale.png`, each process's output in `<out>/logs/`. A run that fails prints
the end of its stderr and the benchmark goes on; the exit status is then 1.

    .venv/bin/python benchmarks/corpus_scale.py                              # 100, 400 and 2000 MB
    .venv/bin/python benchmarks/corpus_scale.py --sizes 5,10                 # smoke run: minutes on 2 cores
    .venv/bin/python benchmarks/corpus_scale.py --skip-peer --skip-pipeline  # tokenization and step rates only
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import psutil
import yaml

# The measured processes are this file run again (`--child`): each imports the heavy libraries its side
# needs inside its own function, so the peer's memory holds no nlpstd and nlpstd's no datasets.

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NLPSTD_DATA", REPO.parent / "shared" / "data"))
MB = 10**6
PART_BYTES = 50 * MB  # a part file is closed once it holds this much
BLOCK = 128  # tokens per block, [CLS] and [SEP] included, on both sides
BATCH = 32  # blocks per masked batch
SEED = 42
SAMPLE_S = 0.5  # memory sampling interval
BASE = "minilm-l6"
HELD_OUT = "held_out.txt"
DONE = "corpus.json"  # written last: a corpus folder without it is remade
GB = 2**30


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- the corpus -----------------------------------------------------------------------------------


def decoded(path: Path) -> str:
    """A source as `encoding: auto` reads it (UTF-8, else Latin-1), with a blank line after it, so its
    last paragraph ends where the next source starts."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.replace("\r\n", "\n").rstrip("\n") + "\n\n"


def sources(data: Path) -> tuple[list[Path], Path]:
    """The shared corpus's training sources, in order, and its held-out file."""
    corpus = data / "corpus"
    train = sorted((corpus / "gutenberg").glob("*.txt")) + [corpus / "tinyshakespeare" / "input.txt", corpus / "wikitext-2" / "test.txt"]
    return train, corpus / "wikitext-2" / "valid.txt"


def write_parts(folder: Path, texts: list[bytes], target: int) -> int:
    """Whole sources, in order and over again, into ~50 MB part files until `target` bytes are written."""
    written, part, handle = 0, 0, None
    for text in itertools.cycle(texts):
        if written >= target:
            break
        if handle is None or handle.tell() >= PART_BYTES:
            if handle is not None:
                handle.close()
            handle = open(folder / f"part-{part:04d}.txt", "wb")
            part += 1
        handle.write(text)
        written += len(text)
    handle.close()
    return written


def make_corpus(folder: Path, size_mb: float, data: Path) -> Path:
    """The corpus of `size_mb` in `folder`: made once, into a temporary folder renamed when complete."""
    if (folder / DONE).is_file():
        return folder
    say(f"corpus {size_mb:g} MB: writing {folder}")
    train, held_out = sources(data)
    tmp = folder.with_name(folder.name + ".tmp")
    fresh(tmp)
    written = write_parts(tmp, [decoded(path).encode("utf-8") for path in train], int(size_mb * MB))
    (tmp / HELD_OUT).write_text(decoded(held_out), encoding="utf-8")
    (tmp / DONE).write_text(json.dumps({"size_mb": size_mb, "training_bytes": written}) + "\n")
    shutil.rmtree(folder, ignore_errors=True)  # what an interrupted run left
    tmp.rename(folder)
    return folder


def corpus_files(corpus: Path) -> tuple[list[Path], Path]:
    """The training parts and the held-out file of a made corpus."""
    return sorted(corpus.glob("part-*.txt")), corpus / HELD_OUT


def corpus_bytes(corpus: Path) -> int:
    """What each side reads: every part and the held-out file."""
    parts, held_out = corpus_files(corpus)
    return sum(path.stat().st_size for path in [*parts, held_out])


def fresh(folder: Path) -> Path:
    """An empty folder, whatever was there."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


# -- measuring a process --------------------------------------------------------------------------


def tree_rss(root: psutil.Process) -> tuple[int, int]:
    """(RSS of `root`, RSS of `root` and every descendant summed); zeros once it is gone."""
    try:
        main, children = root.memory_info().rss, root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    total = main
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += child.memory_info().rss
    return main, total


def watch(process: subprocess.Popen) -> tuple[int, int]:
    """Sample the process tree until it exits; (peak main RSS, peak tree RSS). Waiting with a timeout
    rather than sleeping, the exit is seen at once and the wall clock stays exact."""
    root, main_peak, tree_peak = psutil.Process(process.pid), 0, 0
    while True:
        main, tree = tree_rss(root)
        main_peak, tree_peak = max(main_peak, main), max(tree_peak, tree)
        try:
            process.wait(timeout=SAMPLE_S)
            return main_peak, tree_peak
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, each progress bar line reduced to its last state."""
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join("    " + line.rsplit("\r", 1)[-1] for line in text[-lines:])


def measure(name: str, command: list[str], logs: Path, **env: str) -> dict:
    """Run `command` as a fresh process with `env` added, its output in `<logs>/<name>.out|.err`:
    exit status, wall seconds and peak memory. A failure prints the end of its stderr."""
    say(f"{name}: running")
    logs.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **env}
    with open(logs / f"{name}.out", "wb") as stdout, open(logs / f"{name}.err", "wb") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=environment, cwd=REPO)
        main_peak, tree_peak = watch(process)
        seconds = time.perf_counter() - started
    run = {"ok": process.returncode == 0, "returncode": process.returncode, "seconds": round(seconds, 2),
           "peak_tree_bytes": tree_peak, "peak_main_bytes": main_peak}
    if run["ok"]:
        say(f"{name}: {seconds:.1f} s, peak {tree_peak / GB:.2f} GB (main process {main_peak / GB:.2f} GB)")
    else:
        say(f"{name}: FAILED with exit status {process.returncode} after {seconds:.1f} s; the end of {logs / f'{name}.err'}:")
        print(tail(logs / f"{name}.err"), flush=True)
    return run


def child(kind: str, result: Path, logs: Path, name: str, cache: Path, *options: str) -> dict:
    """This file run again as `--child kind`, measured; its own figures (`result`) under "result"."""
    result.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--child", kind, "--result", str(result), *options]
    run = measure(name, command, logs, NLPSTD_CACHE=str(cache), HF_DATASETS_CACHE=str(cache))
    if run["ok"]:
        run["result"] = json.loads(result.read_text())
    return run


# -- nlpstd end to end ----------------------------------------------------------------------------


def pipeline_standard(corpus: Path, size_mb: float, data: Path) -> dict:
    """A standard that pretrains MiniLM-L6 on `corpus` for 2 steps; every path absolute. The task data
    is there because a standard needs it: a few hundred CoNLL sentences, so data-prep's own share is small."""
    conll = data / "conll2003"
    return {
        "name": f"corpus-scale-{size_mb:g}mb".replace(".", "-"),
        "description": "Pretraining at scale: data-prep and 2 MLM steps on a generated corpus.",
        "seed": SEED,
        "task": "token-classification",
        "data": {"format": "conll", "train": str(conll / "train.txt"), "validation": str(conll / "dev.txt"),
                 "test": str(conll / "test.txt"), "max_length": BLOCK, "max_train_examples": 256, "max_eval_examples": 64},
        "model": {"base": BASE},
        "pretrain": {"enabled": True, "corpus": {"files": [str(corpus / "part-*.txt")], "held_out": [str(corpus / HELD_OUT)]},
                     "max_length": BLOCK, "max_steps": 2, "batch_size": BATCH, "max_eval_blocks": 64, "checkpoint_every": 1000},
    }


def run_pipeline(corpus: Path, size_mb: float, work: Path, logs: Path, data: Path) -> dict:
    """`nlpstd run --stages data-prep,pretrain` in a fresh process, a fresh cache and a fresh output folder."""
    folder = fresh(work / "runs" / f"{size_mb:g}mb")
    standard = folder / "standard.yaml"
    standard.write_text(yaml.safe_dump(pipeline_standard(corpus, size_mb, data), sort_keys=False), encoding="utf-8")
    cache = fresh(work / "cache" / "pipeline")
    command = [sys.executable, "-m", "nlpstd.cli", "run", str(standard), "--stages", "data-prep,pretrain", "--no-tracking",
               "--out", str(folder / "out")]
    run = measure(f"{size_mb:g}mb-nlpstd-run", command, logs, NLPSTD_CACHE=str(cache))
    fresh(cache)
    if run["ok"]:
        prep = json.loads((folder / "out" / "data-prep" / "metrics.json").read_text())
        pretrain = json.loads((folder / "out" / "pretrain" / "metrics.json").read_text())
        run["result"] = {"data_prep_seconds": prep["stage_seconds"], "corpus_bytes": prep["corpus_bytes"],
                         "documents": prep["corpus_train_documents"] + prep["corpus_heldout_documents"],
                         "pretrain_seconds": pretrain["stage_seconds"], "train_seconds": pretrain["train_seconds"],
                         "steps": pretrain["steps"], "train_blocks": pretrain["train_blocks"]}
    return run


# -- the Hugging Face peer (a child process) ------------------------------------------------------


def peer_blocks(corpus: Path, tokenizer_path: str, workers: int, cache: Path, digest: bool) -> dict:
    """`run_mlm.py`'s preprocessing, as a user writes it: text lines in, blocks of 128 token ids out."""
    from datasets import load_dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    parts, held_out = corpus_files(corpus)
    times = {"started": time.perf_counter()}

    raw = load_dataset("text", data_files={"train": [str(p) for p in parts], "validation": [str(held_out)]}, cache_dir=str(cache))
    times["loaded"] = time.perf_counter()

    def tokenize_function(examples: dict) -> dict:
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    tokenized = raw.map(tokenize_function, batched=True, num_proc=workers, remove_columns=["text"])
    times["tokenized"] = time.perf_counter()

    def group_texts(examples: dict) -> dict:
        """The batch's lines end to end, cut into full blocks; the remainder is dropped."""
        joined = {key: list(itertools.chain.from_iterable(values)) for key, values in examples.items()}
        usable = len(joined["input_ids"]) // BLOCK * BLOCK
        return {key: [values[i : i + BLOCK] for i in range(0, usable, BLOCK)] for key, values in joined.items()}

    grouped = tokenized.map(group_texts, batched=True, num_proc=workers)
    times["grouped"] = time.perf_counter()
    result = {"load_seconds": times["loaded"] - times["started"], "tokenize_seconds": times["tokenized"] - times["loaded"],
              "group_seconds": times["grouped"] - times["tokenized"], "train_blocks": len(grouped["train"]),
              "held_out_blocks": len(grouped["validation"])}
    if digest:
        result["blocks_sha256"] = ids_digest(grouped)
    return result


def ids_digest(grouped) -> str:
    """sha256 of every block's token ids, split by split; every block holds 128, so equal digests mean equal blocks."""
    digest = hashlib.sha256()
    for split in ("train", "validation"):
        for chunk in grouped[split].data.table.column("input_ids").chunks:
            digest.update(chunk.flatten().to_numpy().tobytes())
    return digest.hexdigest()


def run_peer(corpus: Path, size_mb: float, work: Path, logs: Path, tokenizer_path: str, workers: int, digest: bool) -> dict:
    cache = fresh(work / "cache" / "peer")
    options = ["--corpus", str(corpus), "--tokenizer", tokenizer_path, "--workers", str(workers), "--cache", str(cache)]
    run = child("peer", work / "result.json", logs, f"{size_mb:g}mb-peer-{workers}proc", cache, *options, *(["--digest"] if digest else []))
    fresh(cache)
    return run


# -- nlpstd's tokenization alone (a child process) ------------------------------------------------


def corpus_spec(corpus: Path):
    """The standard's `pretrain.corpus` section for a made corpus."""
    from nlpstd.spec import CorpusSpec

    return CorpusSpec.model_validate({"files": [str(corpus / "part-*.txt")], "held_out": [str(corpus / HELD_OUT)]},
                                     context={"base_dir": "/"})


def nlpstd_blocks(corpus: Path, workers: int) -> dict:
    """The manifest (`corpus.prepare`: every file read, decoded and hashed), then the blocks of both
    parts through `workers` processes into `$NLPSTD_CACHE`."""
    from transformers import AutoTokenizer

    from nlpstd.data.corpus import prepare
    from nlpstd.models.build import resolve_base
    from nlpstd.train.mlm import cached_blocks

    tokenizer = AutoTokenizer.from_pretrained(resolve_base(BASE))
    started = time.perf_counter()
    manifest = prepare(corpus_spec(corpus), seed=SEED)
    prepared = time.perf_counter()
    blocks = cached_blocks(tokenizer, lambda: manifest.stream(), BLOCK, False, manifest.fingerprint, workers=workers,
                           total=sum(manifest.documents.values()))
    return {"prepare_seconds": prepared - started, "tokenize_seconds": time.perf_counter() - prepared,
            "documents": sum(manifest.documents.values()), "train_blocks": len(blocks["train"]),
            "held_out_blocks": len(blocks["held_out"])}


def shard_hashes(cache: Path) -> dict[str, str]:
    """sha256 of every shard file in a cache, by its path inside the cache (the same keys for the same corpus)."""
    hashes = {}
    for path in sorted(cache.glob("blocks/*/blocks-*.arrow")):
        with open(path, "rb") as handle:
            hashes[str(path.relative_to(cache))] = hashlib.file_digest(handle, "sha256").hexdigest()
    return hashes


def run_tokenize(corpus: Path, size_mb: float, work: Path, logs: Path, workers: int) -> dict:
    """`nlpstd_blocks` with 1 worker, then with `workers`, each in a fresh cache; are the shards the same bytes?"""
    runs, hashes = {}, {}
    for count in dict.fromkeys((1, workers)):
        cache = fresh(work / "cache" / f"tokenize-{count}")
        options = ["--corpus", str(corpus), "--workers", str(count)]
        runs[count] = child("tokenize", work / "result.json", logs, f"{size_mb:g}mb-nlpstd-tokenize-{count}w", cache, *options)
        hashes[count] = shard_hashes(cache)
        fresh(cache)
    same = bool(hashes[1]) and hashes[1] == hashes[workers] if all(r["ok"] for r in runs.values()) else None
    return {"one": runs[1], "many": runs[workers], "workers": workers, "shards": len(hashes[1]), "shards_identical": same}


# -- training from shards against memory (a child process) ----------------------------------------


def collate_rate(objective, order: list[list[int]]) -> float:
    """Masked batches per second over `order`, after a few untimed ones (first-touch costs)."""
    for position, indices in enumerate(order[:10]):
        objective.collate(indices, 0, position)
    started = time.perf_counter()
    for position, indices in enumerate(order):
        objective.collate(indices, 0, position)
    return len(order) / (time.perf_counter() - started)


def step_rate(model, optimizer, objective, order: list[list[int]]) -> float:
    """Training steps per second over `order`, each collating its batch; the first step, which allocates, is not timed."""
    from nlpstd.train.mlm import masked_lm_loss

    def step(position: int, indices: list[int]) -> None:
        masked_lm_loss(model, objective.collate(indices, 0, position)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(0, order[0])
    started = time.perf_counter()
    for position, indices in enumerate(order[1:], start=1):
        step(position, indices)
    return (len(order) - 1) / (time.perf_counter() - started)


def alternate(measure_one: Callable[[object], float], sources: dict[str, object], repeats: int) -> dict[str, list[float]]:
    """`measure_one(source)` for each source in turn, `repeats` times: A B A B ..., so drifting load hits both."""
    rates: dict[str, list[float]] = {name: [] for name in sources}
    for _ in range(repeats):
        for name, source in sources.items():
            rates[name].append(measure_one(source))
    return rates


def step_rates(corpus: Path, workers: int, batches: int, repeats: int, train_steps: int) -> dict:
    """Collate and training-step rates from the memory-mapped training blocks and from a copy of them in memory."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from nlpstd.data.corpus import prepare
    from nlpstd.models.build import resolve_base
    from nlpstd.train.blocks import Blocks
    from nlpstd.train.mlm import MaskedLM, Masker, cached_blocks

    tokenizer = AutoTokenizer.from_pretrained(resolve_base(BASE))
    manifest = prepare(corpus_spec(corpus), seed=SEED)
    mapped = cached_blocks(tokenizer, lambda: manifest.stream(), BLOCK, False, manifest.fingerprint, workers=workers)["train"]
    memory = Blocks(mapped.take(list(range(len(mapped))), BLOCK), mapped.lengths.copy())
    masker = Masker(tokenizer, 0.15, False)
    objectives = {"mapped": MaskedLM(mapped, masker, BATCH, SEED), "memory": MaskedLM(memory, masker, BATCH, SEED)}
    order = objectives["memory"].batches(0)[: batches or None]
    same = all(torch.equal(objectives["mapped"].collate(order[0], 0, 0)[k], objectives["memory"].collate(order[0], 0, 0)[k])
               for k in ("input_ids", "mlm_labels"))

    collate = alternate(lambda objective: collate_rate(objective, order), objectives, repeats)
    torch.manual_seed(SEED)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=512, max_position_embeddings=BLOCK)
    model = BertForMaskedLM(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    steps = alternate(lambda objective: step_rate(model, optimizer, objective, order[: train_steps + 1]), objectives, repeats)
    return {"blocks": len(mapped), "memory_bytes": int(np.asarray(memory.ids).nbytes), "batches": len(order),
            "train_steps": train_steps, "same_batches": same, "collate_per_s": collate, "steps_per_s": steps,
            "collate_ratio": ratio_spread(collate), "steps_ratio": ratio_spread(steps)}


def ratio_spread(rates: dict[str, list[float]]) -> dict[str, float]:
    """Mapped over memory, turn by turn: the median and the range."""
    ratios = [m / r for m, r in zip(rates["mapped"], rates["memory"])]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def run_steps(corpus: Path, work: Path, logs: Path, workers: int, args: argparse.Namespace) -> dict:
    cache = fresh(work / "cache" / "steps")
    options = ["--corpus", str(corpus), "--workers", str(workers), "--collate-batches", str(args.collate_batches),
               "--repeats", str(args.repeats), "--train-steps", str(args.train_steps)]
    run = child("steps", work / "result.json", logs, "steps", cache, *options)
    fresh(cache)
    return run


# -- the report -----------------------------------------------------------------------------------


def num(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "–" if value is None else f"{value:,.{digits}f}{suffix}"


def ok(run: dict | None) -> dict | None:
    """A run that completed, else None."""
    return run if run and run["ok"] else None


def gb(run: dict | None, key: str = "peak_tree_bytes") -> float | None:
    return run[key] / GB if ok(run) else None


def seconds(run: dict | None) -> float | None:
    return run["seconds"] if ok(run) else None


def divide(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def end_to_end_table(rows: list[dict], workers: int) -> str:
    lines = [f"End to end, K = {workers}: `nlpstd run --stages data-prep,pretrain` (2 steps) against the Hugging Face peer "
             "(load_dataset, tokenize, group_texts). Peak: the process tree's summed RSS (the main process's own).", "",
             "| corpus MB | nlpstd s | nlpstd MB/s | nlpstd peak GB | peer s | peer MB/s | peer peak GB | peer s ÷ nlpstd s "
             "| peer peak ÷ nlpstd peak |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        mine, peer, mb = row["runs"].get("pipeline"), row["runs"].get("peer"), row["bytes"] / MB
        lines.append(f"| {mb:,.0f} | {num(seconds(mine))} | {num(divide(mb, seconds(mine)), 2)} "
                     f"| {num(gb(mine), 2)} ({num(gb(mine, 'peak_main_bytes'), 2)}) | {num(seconds(peer))} "
                     f"| {num(divide(mb, seconds(peer)), 2)} | {num(gb(peer), 2)} ({num(gb(peer, 'peak_main_bytes'), 2)}) "
                     f"| {num(divide(seconds(peer), seconds(mine)), 2, 'x')} | {num(divide(gb(peer), gb(mine)), 2, 'x')} |")
    return "\n".join(lines)


def breakdown_table(rows: list[dict]) -> str:
    lines = ["Where the seconds go. nlpstd: data-prep (reads and hashes the corpus), pretrain (tokenizes, cuts blocks, loads "
             "the model, 3 held-out passes), of which the 2 training steps. Peer: load_dataset, tokenize map, group_texts map.", "",
             "| corpus MB | documents | data-prep s | pretrain s | training s | nlpstd blocks | peer load s | peer tokenize s "
             "| peer group s | peer blocks |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        mine = (ok(row["runs"].get("pipeline")) or {}).get("result", {})
        peer = (ok(row["runs"].get("peer")) or {}).get("result", {})
        peer_blocks = peer["train_blocks"] + peer["held_out_blocks"] if peer else None
        lines.append(f"| {row['bytes'] / MB:,.0f} | {num(mine.get('documents'), 0)} | {num(mine.get('data_prep_seconds'))} "
                     f"| {num(mine.get('pretrain_seconds'))} | {num(mine.get('train_seconds'), 2)} | {num(mine.get('train_blocks'), 0)} "
                     f"| {num(peer.get('load_seconds'))} | {num(peer.get('tokenize_seconds'))} | {num(peer.get('group_seconds'))} "
                     f"| {num(peer_blocks, 0)} |")
    return "\n".join(lines)


def peer_identity(row: dict) -> str:
    """Whether the peer's blocks are the same with num_proc=1 and K, when both ran; if not, the block counts."""
    one, many = ok(row["runs"].get("peer_one_proc")), ok(row["runs"].get("peer"))
    if not (one and many and "blocks_sha256" in many["result"]):
        return "–"
    if one["result"]["blocks_sha256"] == many["result"]["blocks_sha256"]:
        return "yes"
    return f"no ({one['result']['train_blocks']:,} / {many['result']['train_blocks']:,} training blocks)"


def inner(run: dict | None, key: str) -> float | None:
    """A figure the child process measured itself, if it completed."""
    return ok(run)["result"][key] if ok(run) else None


def tokenize_table(rows: list[dict], workers: int) -> str:
    lines = [f"nlpstd's tokenization alone, 1 worker against {workers}, each in an empty cache: `corpus.prepare` (every file read "
             f"and hashed) and `cached_blocks` (tokenize and write the shards) as timed inside the process; the speed-up and MB/s "
             f"are on `cached_blocks`. The whole process's seconds and peak memory beside them.", "",
             f"| corpus MB | training blocks | prepare s | tokenize s, 1 worker | tokenize s, {workers} | speed-up | MB/s at {workers} "
             f"| process s (1 / {workers}) | peak GB (1 / {workers}) | shards identical | peer blocks, num_proc 1 = {workers} |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for row in rows:
        found = row["runs"].get("tokenize")
        if not found:
            continue
        one, many, mb = found["one"], found["many"], row["bytes"] / MB
        alone, shared = inner(one, "tokenize_seconds"), inner(many, "tokenize_seconds")
        same = {True: f"yes ({found['shards']} files)", False: "**no**", None: "–"}[found["shards_identical"]]
        lines.append(f"| {mb:,.0f} | {num(inner(many, 'train_blocks'), 0)} | {num(inner(many, 'prepare_seconds'), 2)} "
                     f"| {num(alone, 2)} | {num(shared, 2)} | {num(divide(alone, shared), 2, 'x')} | {num(divide(mb, shared), 2)} "
                     f"| {num(seconds(one))} / {num(seconds(many))} | {num(gb(one), 2)} / {num(gb(many), 2)} | {same} "
                     f"| {peer_identity(row)} |")
    return "\n".join(lines)


def steps_table(run: dict | None) -> str:
    if not ok(run):
        return "Training from shards against memory: did not complete."
    r = run["result"]
    lines = [f"Training from shards against memory: {r['blocks']:,} training blocks of the smallest corpus, batches of {BATCH}; "
             f"collate over {r['batches']} batches, a tiny BERT (2 layers, hidden 128) for {r['train_steps']} steps; "
             f"median of {len(r['collate_per_s']['mapped'])} turns each. Same batches from both: {'yes' if r['same_batches'] else '**no**'}.",
             "", "| blocks from | collate batches/s | training steps/s |", "| --- | ---: | ---: |"]
    for name, label in (("mapped", "memory-mapped shards (`MappedBlocks`)"), ("memory", "in memory (`Blocks`)")):
        lines.append(f"| {label} | {statistics.median(r['collate_per_s'][name]):,.1f} | {statistics.median(r['steps_per_s'][name]):,.2f} |")
    c, s = r["collate_ratio"], r["steps_ratio"]
    lines += ["", f"mapped ÷ memory, median (min-max) of the turns: collate {c['median']:.2f}x ({c['min']:.2f}-{c['max']:.2f}), "
              f"training steps {s['median']:.2f}x ({s['min']:.2f}-{s['max']:.2f})"]
    return "\n".join(lines)


def plotted(rows: list[dict], workers: int) -> list[tuple[str, str, list[tuple[float, dict]]]]:
    """(label, style, [(corpus MB, run)]) for each line of the plot: the completed runs of each side."""
    def runs(pick: Callable[[dict], dict | None]) -> list[tuple[float, dict]]:
        return [(row["bytes"] / MB, ok(pick(row["runs"]))) for row in rows if ok(pick(row["runs"]))]

    return [("nlpstd run (data-prep + pretrain)", "o-", runs(lambda r: r.get("pipeline"))),
            (f"HF peer (num_proc={workers})", "s-", runs(lambda r: r.get("peer"))),
            (f"nlpstd tokenization alone ({workers} workers)", "^--", runs(lambda r: r.get("tokenize", {}).get("many")))]


def plot(rows: list[dict], path: Path, workers: int) -> None:
    """Seconds (log-log) and peak tree memory against corpus size, both sides."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, style, points in plotted(rows, workers):
        if points:
            sizes = [mb for mb, _ in points]
            left.plot(sizes, [run["seconds"] for _, run in points], style, label=label)
            right.plot(sizes, [run["peak_tree_bytes"] / GB for _, run in points], style, label=label)
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    left.set(yscale="log", ylabel="wall seconds")
    left.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    left.yaxis.set_major_formatter(plain)
    left.yaxis.set_minor_formatter(NullFormatter())
    right.set(ylim=(0, None), ylabel="peak memory of the process tree, GB")
    for axes in (left, right):
        axes.set(xscale="log", xlabel="corpus, MB (log scale)")
        axes.set_xticks([row["bytes"] / MB for row in rows])
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle("Pretraining corpus at scale: nlpstd against the run_mlm.py preprocessing")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def failures(report: dict) -> list[str]:
    """The name of every run that did not complete."""
    failed = []
    for row in report["sizes"]:
        runs = dict(row["runs"])
        if "tokenize" in runs:
            runs |= {"tokenize, 1 worker": runs["tokenize"]["one"], "tokenize, K workers": runs.pop("tokenize")["many"]}
        failed += [f"{row['size_mb']:g} MB {name}" for name, run in runs.items() if not run["ok"]]
    if report["steps"] is not None and not report["steps"]["ok"]:
        failed.append("steps")
    return failed


def machine() -> dict:
    """What ran it: cores, CPU, memory, library versions."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown") if Path("/proc/cpuinfo").is_file() else "unknown"
    return {"cores": len(os.sched_getaffinity(0)), "cpu": cpu, "memory_bytes": psutil.virtual_memory().total,
            **{name: version(name) for name in ("torch", "transformers", "tokenizers", "datasets", "pyarrow")}}


# -- the invocation ---------------------------------------------------------------------------------


def warm_up(logs: Path) -> None:
    """One untimed process imports what the measured ones import, so that the first of them does not
    pay alone for reading the libraries from disk."""
    measure("warm-up", [sys.executable, "-c", "import datasets, torch, transformers, nlpstd.cli, nlpstd.train.mlm"], logs)


def measure_size(size_mb: float, args: argparse.Namespace, tokenizer_path: str) -> dict:
    """Every measurement of one corpus size, in turn."""
    corpus = make_corpus(args.work / f"corpus-{size_mb:g}mb", size_mb, DATA)
    row = {"size_mb": size_mb, "bytes": corpus_bytes(corpus), "files": len(corpus_files(corpus)[0]) + 1, "runs": {}}
    say(f"corpus {size_mb:g} MB: {row['bytes'] / MB:,.1f} MB in {row['files']} files, {corpus}")
    logs = args.out / "logs"
    if not args.skip_pipeline:
        row["runs"]["pipeline"] = run_pipeline(corpus, size_mb, args.work, logs, DATA)
    if not args.skip_peer:
        row["runs"]["peer"] = run_peer(corpus, size_mb, args.work, logs, tokenizer_path, args.workers, args.peer_one_proc)
        if args.peer_one_proc:
            row["runs"]["peer_one_proc"] = run_peer(corpus, size_mb, args.work, logs, tokenizer_path, 1, True)
    if not args.skip_tokenize:
        row["runs"]["tokenize"] = run_tokenize(corpus, size_mb, args.work, logs, args.workers)
    return row


def run_child(args: argparse.Namespace) -> int:
    """One measured process: its figures to `--result`."""
    if args.child == "peer":
        result = peer_blocks(args.corpus, args.tokenizer, args.workers, args.cache, args.digest)
    elif args.child == "tokenize":
        result = nlpstd_blocks(args.corpus, args.workers)
    else:
        result = step_rates(args.corpus, args.workers, args.collate_batches, args.repeats, args.train_steps)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,400,2000", help="corpus sizes in MB, comma-separated (default 100,400,2000)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="K: tokenizing processes on both sides (default: this machine's cores)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nlpstd-corpus-scale"), help="corpora, runs and caches")
    parser.add_argument("--out", type=Path, help="results: tables as JSON, the plot, logs (default: WORK/results)")
    parser.add_argument("--skip-pipeline", action="store_true", help="leave out nlpstd run (data-prep + pretrain)")
    parser.add_argument("--skip-peer", action="store_true", help="leave out the Hugging Face peer")
    parser.add_argument("--skip-tokenize", action="store_true", help="leave out nlpstd's tokenization, 1 worker against K")
    parser.add_argument("--skip-steps", action="store_true", help="leave out collate and training-step rates from shards and memory")
    parser.add_argument("--peer-one-proc", action="store_true", help="also run the peer with num_proc=1 and compare its blocks (slow)")
    parser.add_argument("--collate-batches", type=int, default=0, help="batches per collate turn (default 0: all of batches(0))")
    parser.add_argument("--train-steps", type=int, default=10, help="tiny-BERT training steps per turn (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="turns of each source, A/B/A/B (default 3)")
    parser.add_argument("--child", choices=("peer", "tokenize", "steps"), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--digest", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.work = args.work.resolve()
    args.out = (args.out or args.work / "results").resolve()
    args.sizes = [float(size) for size in args.sizes.split(",")]
    if min(args.sizes) <= 0 or args.workers < 1 or args.repeats < 1 or args.train_steps < 1 or args.collate_batches < 0:
        parser.error("sizes, --workers, --repeats and --train-steps must be positive, --collate-batches not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be fetched
    args = parse(argv)
    if args.child:
        return run_child(args)
    from nlpstd.models.build import resolve_base  # the peer's tokenizer is the same folder, passed by path

    args.out.mkdir(parents=True, exist_ok=True)
    report = {"sizes_mb": args.sizes, "workers": args.workers, "machine": machine(), "data": str(DATA), "sizes": [], "steps": None}
    tokenizer_path = resolve_base(BASE)
    warm_up(args.out / "logs")
    for size_mb in args.sizes:
        report["sizes"].append(measure_size(size_mb, args, tokenizer_path))
        (args.out / "corpus_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    if not args.skip_steps:
        smallest = min(args.sizes)
        report["steps"] = run_steps(args.work / f"corpus-{smallest:g}mb", args.work, args.out / "logs", args.workers, args)

    rows = report["sizes"]
    cores = report["machine"]["cores"]
    print(f"\n{report['machine']['cpu']}, {cores} cores, {report['machine']['memory_bytes'] / GB:.0f} GB; K = {args.workers}\n")
    tables = ([end_to_end_table(rows, args.workers), breakdown_table(rows)] if not (args.skip_pipeline and args.skip_peer) else [])
    tables += [] if args.skip_tokenize else [tokenize_table(rows, args.workers)]
    tables += [] if args.skip_steps else [steps_table(report["steps"])]
    print("\n\n".join(tables))
    report["failures"] = failures(report)
    (args.out / "corpus_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    written = [args.out / "corpus_scale.json"]
    if any(points for _, _, points in plotted(rows, args.workers)):
        plot(rows, args.out / "corpus_scale.png", args.workers)
        written.append(args.out / "corpus_scale.png")
    print(f"\nwritten: {', '.join(map(str, written))}")
    if report["failures"]:
        print(f"failed: {', '.join(report['failures'])} (logs in {args.out / 'logs'})")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
