"""Masked-LM training throughput: Hugging Face `Trainer` and nlpstd's loop, same model, data and batch, one run.

Both sides train a `BertForMaskedLM` of the same configuration from the same initial weights
on the same blocks of the shared corpus (MiniLM's 30,522-piece vocabulary, `--seq` tokens
per block, every block full), with 15% masking, AdamW, the same learning rate and batch size.

- `Trainer`: `DataCollatorForLanguageModeling`, `TrainingArguments` with bf16 on a GPU that
  has it, no saving, no evaluation; the model scores every position (its stock MLM head).
- nlpstd: `nlpstd.train.loop.train` with the `MaskedLM` objective (masks drawn per batch,
  LM head on the masked positions only), bf16 autocast on a GPU.

Steady-state samples/s are measured from the end of step `--warmup` to the last step. It
prints a markdown table with the ratio to `Trainer` and writes `mlm_throughput.json`.

    python benchmarks/mlm_throughput.py                          # BERT-base shape, seq 128 (a GPU)
    python benchmarks/mlm_throughput.py --size mini --steps 30   # a CPU-sized check
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from nlpstd.models.build import resolve_base
from nlpstd.spec import SIZES, LoopRecipe
from nlpstd.tracking import NullTracker
from nlpstd.train.loop import train
from nlpstd.train.mlm import Blocks, Masker, MaskedLM, make_blocks

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("NLPSTD_DATA", REPO.parent / "shared" / "data")) / "corpus"


class StepClock(TrainerCallback):
    """Wall time from the end of the warm-up steps to the end of training."""

    def __init__(self, warmup: int, device: torch.device):
        self.warmup, self.device, self.start, self.end = warmup, device, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            _sync(self.device)
            self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        _sync(self.device)
        self.end = time.perf_counter()


class WindowTracker(NullTracker):
    """Collects the loop's logged samples/s windows (the loop times each step itself)."""

    def __init__(self):
        self.points: list[dict] = []

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        if "samples_per_s" in metrics:
            self.points.append({"step": step, **metrics})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def corpus_blocks(tokenizer, seq: int, needed: int) -> Blocks:
    files = [CORPUS / "tinyshakespeare" / "input.txt", CORPUS / "wikitext-2" / "test.txt"]
    documents = [[p for p in f.read_text(encoding="utf-8").split("\n\n") if p.strip()] for f in files if f.is_file()]
    if not documents:
        raise SystemExit(f"no corpus under {CORPUS} (set NLPSTD_DATA)")
    blocks = make_blocks(tokenizer, documents, seq, cross_files=False, desc="tokenize")
    full = blocks.lengths == seq
    ids, lengths = blocks.ids[full], blocks.lengths[full]
    repeat = -(-needed // len(ids))
    return Blocks(np.tile(ids, (repeat, 1))[:needed], np.tile(lengths, repeat)[:needed])


def make_model(size: str, vocab: int, seq: int, seed: int) -> BertForMaskedLM:
    layers, hidden = SIZES[size]
    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                        intermediate_size=4 * hidden, max_position_embeddings=max(512, seq))
    torch.manual_seed(seed)
    return BertForMaskedLM(config)


def run_trainer(model, blocks: Blocks, tokenizer, args, device, precision: str, out: Path) -> float:
    dataset = [{"input_ids": row.tolist()} for row in blocks.ids]
    clock = StepClock(args.warmup, device)
    training = TrainingArguments(
        output_dir=str(out / "trainer"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, warmup_steps=0, weight_decay=0.01, bf16=precision == "bf16",
        save_strategy="no", eval_strategy="no", report_to=[], logging_steps=10_000, disable_tqdm=True,
        dataloader_num_workers=0, seed=args.seed, use_cpu=device.type == "cpu",
    )
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    Trainer(model=model, args=training, train_dataset=dataset, data_collator=collator, callbacks=[clock]).train()
    return (args.steps - args.warmup) * args.batch_size / (clock.end - clock.start)


def run_nlpstd(model, blocks: Blocks, tokenizer, args, device, precision: str, out: Path) -> float:
    recipe = LoopRecipe(max_steps=args.steps, lr=args.lr, warmup_ratio=0.0, batch_size=args.batch_size,
                        checkpoint_every=10_000_000, eval_every=10_000_000, log_every=1)
    objective = MaskedLM(blocks, Masker(tokenizer, 0.15, whole_words=False), args.batch_size, args.seed)
    tracker = WindowTracker()
    train(model, objective, lambda m: {"loss": 0.0}, recipe, select="loss", maximize=False, work_dir=out / "nlpstd",
          identity="bench", seed=args.seed, device=device, precision=precision, tracker=tracker, desc="nlpstd")
    steady = [p for p in tracker.points if p["step"] > args.warmup]
    seconds = sum(args.batch_size / p["samples_per_s"] for p in steady)
    return len(steady) * args.batch_size / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="base", choices=sorted(SIZES), help="BERT shape (base: 12 layers, hidden 768)")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="output folder (default: a new temporary folder)")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    out = Path(args.out or tempfile.mkdtemp(prefix="mlm-bench-"))
    tokenizer = AutoTokenizer.from_pretrained(resolve_base("minilm-l6"))
    blocks = corpus_blocks(tokenizer, args.seq, args.steps * args.batch_size)

    results = {}
    for name, runner in (("Trainer", run_trainer), ("nlpstd", run_nlpstd)):
        model = make_model(args.size, len(tokenizer), args.seq, args.seed)
        results[name] = runner(model, blocks, tokenizer, args, device, precision, out)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    device_name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\nMLM, BERT-{args.size}, seq {args.seq}, batch {args.batch_size}, {precision}, {device_name}, "
          f"steps {args.warmup + 1}-{args.steps} timed\n")
    print("| runner | samples/s | vs Trainer |\n| --- | ---: | ---: |")
    for name, rate in results.items():
        print(f"| {name} | {rate:,.1f} | {rate / results['Trainer']:.2f}x |")
    report = {"size": args.size, "seq": args.seq, "batch_size": args.batch_size, "precision": precision,
              "device": device_name, "samples_per_s": results}
    (out / "mlm_throughput.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
