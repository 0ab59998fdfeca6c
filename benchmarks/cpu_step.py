"""Where a fine-tuning step on a CPU goes: variants of nlpstd's step, each on its own copy of the
model, measured step by step in one process.

Step k of every variant trains on the same batch (CoNLL-2003 training sentences, batches of 32
grouped by length, as the quick CoNLL standard trains), and the variants take turns within each
step in a rotating order (A B C, B C A, C A B, ...). A load that comes and goes on a shared machine
then falls on all of them alike, so the ratios hold where whole runs minutes apart would not: each
variant's ratio to `nlpstd` is the median, over blocks of 10 steps, of the nlpstd block's seconds
divided by the variant's (above 1: the variant is faster), with the spread of those blocks.

The step is the loop's (`nlpstd.train.loop`: fused AdamW, clipping at 1.0, linear schedule with
warm-up, the allocator that keeps freed memory, bit-mask dropout and attention) on one micro-batch.
The variants change one thing each, so a difference is what that one thing costs or buys:

- `torch-dropout`: torch's `nn.Dropout` and SDPA attention, as a `Trainer` step runs them;
- `no-dropout`: all dropout off, nlpstd's attention arithmetic;
- `no-dropout-sdpa`: all dropout off, torch's fused SDPA kernel while training;
- `frozen-word-embeddings`: the word embeddings not trained (no gradient, no update), the most
  that any change to the embedding update could buy;
- `foreach-adamw`: torch's multi-tensor AdamW instead of the fused kernel;
- `fp32`: no autocast.

    python benchmarks/cpu_step.py                                 # all variants, 120 steps
    python benchmarks/cpu_step.py --variants torch-dropout --steps 200
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be fetched; set before transformers loads

import torch
from transformers import get_scheduler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import MAX_LENGTH, RECIPE, conll  # noqa: E402 (the path above first)

from nlpstd import runtime  # noqa: E402
from nlpstd.data.encode import encode  # noqa: E402
from nlpstd.data.prepare import label_set  # noqa: E402
from nlpstd.models.build import build_model, load_tokenizer, resolve_base  # noqa: E402
from nlpstd.train.batching import Supervised, without_full_mask  # noqa: E402
from nlpstd.train.dropout import using_bit_dropout  # noqa: E402
from nlpstd.train.loop import adamw, param_groups  # noqa: E402

VARIANTS = ("nlpstd", "torch-dropout", "no-dropout", "no-dropout-sdpa", "frozen-word-embeddings", "foreach-adamw", "fp32")
BLOCK = 10  # steps per block: the unit of the median ratio
WARMUP = 5  # steps of each variant left out of the timing (first shapes, allocator growth)
LR, WARMUP_RATIO, TOTAL_STEPS, GRAD_CLIP = 3e-4, 0.1, 439, 1.0  # the quick CoNLL recipe's schedule


@dataclass
class Variant:
    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    precision: str
    bit_masks: bool  # nlpstd's dropout and attention (the loop's CPU default)
    seconds: list[float] = field(default_factory=list)


def make_variant(name: str, build: Callable[[], torch.nn.Module], precision: str) -> Variant:
    model = build()
    if name.startswith("no-dropout"):
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0  # attention reads its layer's dropout module's p as well
    if name == "frozen-word-embeddings":
        model.get_input_embeddings().weight.requires_grad_(False)
    groups = param_groups(model, RECIPE.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=LR, foreach=True) if name == "foreach-adamw" else adamw(groups, LR)
    scheduler = get_scheduler("linear", optimizer, round(WARMUP_RATIO * TOTAL_STEPS), TOTAL_STEPS)
    return Variant(name, model.train(), optimizer, scheduler, "fp32" if name == "fp32" else precision,
                   bit_masks=name not in ("torch-dropout", "no-dropout-sdpa"))


def train_step(variant: Variant, batch: dict[str, torch.Tensor]) -> None:
    """One optimizer step as `nlpstd.train.loop` takes it on a CPU, timed from the forward pass to the zeroed gradients."""
    started = time.perf_counter()
    with runtime.autocast(torch.device("cpu"), variant.precision):
        loss = variant.model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(variant.model.parameters(), GRAD_CLIP)
    variant.optimizer.step()
    variant.scheduler.step()
    variant.optimizer.zero_grad(set_to_none=True)
    variant.seconds.append(time.perf_counter() - started)


def block_ratios(reference: list[float], other: list[float]) -> list[float]:
    """reference ÷ other per block of BLOCK steps after the warm-up: above 1, `other` is faster."""
    blocks = range(WARMUP, min(len(reference), len(other)) - BLOCK + 1, BLOCK)
    return [sum(reference[s : s + BLOCK]) / sum(other[s : s + BLOCK]) for s in blocks]


def report(variants: list[Variant]) -> str:
    reference = variants[0]
    lines = ["| variant | ms per step | vs nlpstd (median of 10-step blocks) | min-max |", "| --- | ---: | ---: | ---: |"]
    for variant in variants:
        ms = 1000 * statistics.median(variant.seconds[WARMUP:])
        ratios = block_ratios(reference.seconds, variant.seconds)
        lines.append(f"| {variant.name} | {ms:.1f} | {statistics.median(ratios):.3f}x | "
                     f"{min(ratios):.3f}-{max(ratios):.3f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS[1:]),
                        help=f"comma-separated, measured against nlpstd's own step: {', '.join(VARIANTS[1:])}")
    parser.add_argument("--steps", type=int, default=120, help="steps of each variant (the first 5 untimed)")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("NLPSTD_DATA", "../shared/data")))
    parser.add_argument("--base", default="minilm-l6")
    parser.add_argument("--precision", default=None, help="bf16 or fp32; default: what `precision: auto` picks here")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    args.variants = ["nlpstd", *(v for v in args.variants.split(",") if v and v != "nlpstd")]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS[1:])}")
    if args.steps < WARMUP + BLOCK:
        parser.error(f"--steps must be at least {WARMUP + BLOCK}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    precision = args.precision or ("bf16" if runtime.cpu_has_native_bf16() else "fp32")
    base = resolve_base(args.base)
    tokenizer = load_tokenizer(base)
    records = conll(args.data, "train")
    labels = label_set("token-classification", records)
    features = encode(tokenizer, "token-classification", records, labels, MAX_LENGTH).features
    objective = Supervised(features, RECIPE.batch_size, args.seed, True, tokenizer.pad_token_id)
    batches = objective.batches(0)[: args.steps]
    if len(batches) < WARMUP + BLOCK:
        raise SystemExit(f"{len(features)} training sentences make {len(batches)} batches of {RECIPE.batch_size}; "
                         f"at least {WARMUP + BLOCK} are needed")

    def build() -> torch.nn.Module:
        torch.manual_seed(args.seed)  # every variant starts from the same weights
        return build_model("token-classification", base, labels, RECIPE)

    runtime.keep_freed_memory()
    variants = [make_variant(name, build, precision) for name in args.variants]
    print(f"{len(variants)} variants, {len(batches)} steps each, {precision}, {torch.get_num_threads()} threads", flush=True)
    with contextlib.ExitStack() as stack:
        for variant in variants:
            if variant.bit_masks:
                stack.enter_context(using_bit_dropout(variant.model))
        for k, indices in enumerate(batches):
            batch = without_full_mask(objective.collate(indices, 0, k))
            for offset in range(len(variants)):  # a rotating order: no variant always goes first
                train_step(variants[(k + offset) % len(variants)], batch)
    print(report(variants))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
