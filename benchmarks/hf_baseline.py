"""nlpstd against a plain Hugging Face `Trainer`: same base model, same data, same recipe, one run.

What it measures, side by side:

1. `Trainer`, written the way a user writes it: `AutoModelFor...Classification` on the
   standard's base, the stock collator, `TrainingArguments` filled from the standard's
   `finetune` section, no saving, no evaluation while training. The data are nlpstd's own
   prepared records and sub-word features, so both sides train on identical examples, and
   the validation split is scored with nlpstd's metric functions (NER: first sub-word of
   each word, entity-level F1; classification: accuracy).
2. `nlpstd run <standard> --no-tracking` in a subprocess, timed end to end; its scores and
   training time come from `evaluate/metrics.json` and `finetune/metrics.json`.

It prints a markdown table (validation metric, training seconds, total seconds, training
samples/s, total time relative to `Trainer`) and writes it to `<out>/hf_baseline.json`.
PASS means nlpstd's validation metric is at most 0.005 (0.5 points on a 0-100 scale) below
`Trainer`'s; the exit status is 0 either way unless a run crashed.

    python benchmarks/hf_baseline.py                                  # the quick CoNLL standard
    python benchmarks/hf_baseline.py --max-steps 20 --out /tmp/bench  # smoke run, both sides
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be fetched; set before transformers loads

import torch
import yaml
from hf_trainer import trainer_arguments, trainer_features
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    set_seed,
)

from nlpstd.data.encode import encode_data
from nlpstd.data.prepare import prepare
from nlpstd.evaluate.metrics import classification_metrics, ner_metrics
from nlpstd.inference import word_tags
from nlpstd.models.build import resolve_base
from nlpstd.runtime import resolve_device, resolve_precision
from nlpstd.spec import Standard, load_standard

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.005  # nlpstd may trail Trainer by at most this much on the validation metric


def run_trainer(std: Standard, max_steps: int | None, out: Path) -> dict:
    """Fine-tune and score with Hugging Face `Trainer`; returns the row of the table."""
    started = time.perf_counter()
    token_task = std.task == "token-classification"
    recipe = std.finetune
    if recipe.method != "full":
        raise SystemExit(f"finetune.method {recipe.method!r}: this benchmark compares full fine-tuning only")
    if std.runtime.threads:
        torch.set_num_threads(std.runtime.threads)

    # -- data: nlpstd's records and features, so both runners see the same examples
    data = prepare(std)
    source = resolve_base(std.model.base)
    tokenizer = AutoTokenizer.from_pretrained(source)
    train = encode_data(tokenizer, std.data, std.task, data.splits["train"], data.labels)
    val = encode_data(tokenizer, std.data, std.task, data.splits["validation"], data.labels)

    # -- model: seeded first, so the new head starts from the same weights as nlpstd's
    set_seed(std.seed)
    auto = AutoModelForTokenClassification if token_task else AutoModelForSequenceClassification
    extra = {} if recipe.classifier_dropout is None else {"classifier_dropout": recipe.classifier_dropout}
    model = auto.from_pretrained(
        source, num_labels=len(data.labels), id2label=dict(enumerate(data.labels)),
        label2id={label: i for i, label in enumerate(data.labels)}, **extra,
    )

    # -- train: the standard's recipe, spelled as TrainingArguments (transformers 5: warmup_steps < 1 is a ratio)
    precision = resolve_precision(std.runtime, resolve_device(std.runtime))
    args = trainer_arguments(recipe, out / "hf-trainer", seed=std.seed, precision=precision,
                             use_cpu=std.runtime.device == "cpu", max_steps=max_steps)
    collator = DataCollatorForTokenClassification(tokenizer) if token_task else DataCollatorWithPadding(tokenizer)
    trainer = Trainer(model=model, args=args, train_dataset=trainer_features(train.features),
                      data_collator=collator, processing_class=tokenizer)
    train_started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_started

    # -- score validation; group_by_length would also reorder prediction batches, so predict in order
    trainer.args.train_sampling_strategy = "sequential"
    logits = trainer.predict(trainer_features(val.features)).predictions  # (N, T_max, L) padded with -100, or (N, L)
    if token_task:
        pred = word_tags(list(logits), val, dict(enumerate(data.labels)))  # the first sub-word's argmax, as nlpstd scores
        metrics = ner_metrics(val.tags, pred)
    else:
        gold = [data.labels[f["labels"]] for f in val.features]
        metrics = classification_metrics(gold, [data.labels[i] for i in logits.argmax(-1)], data.labels)

    steps = trainer.state.global_step
    return row("HF Trainer", metrics, train_seconds, time.perf_counter() - started, steps * recipe.batch_size / train_seconds)


def run_nlpstd(std: Standard, max_steps: int | None, out: Path) -> dict:
    """`nlpstd run` in a fresh process on a resolved copy of the standard (absolute data paths)."""
    spec = std.to_dict()
    if max_steps:
        spec["finetune"]["max_steps"] = max_steps
    standard_file = out / "standard.yaml"
    standard_file.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    run_dir = out / "nlpstd"
    started = time.perf_counter()
    command = [sys.executable, "-m", "nlpstd.cli", "run", str(standard_file), "--out", str(run_dir), "--no-tracking"]
    code = subprocess.run(command, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    total = time.perf_counter() - started
    if code not in (0, 3):  # 3: the gate failed, export skipped; still a complete, scored run
        raise SystemExit(f"nlpstd run failed with exit status {code}: {' '.join(command)}")
    finetune = json.loads((run_dir / "finetune" / "metrics.json").read_text())
    evaluate = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    validation = evaluate["scores"]["validation"]
    result = row("nlpstd", validation, finetune["train_seconds"], total, finetune["train_samples_per_s"])
    return {**result, "gate_passed": evaluate["gate"]["passed"]}


def row(runner: str, metrics: dict, train_seconds: float, total_seconds: float, samples_per_s: float) -> dict:
    return {"runner": runner, "f1": metrics["f1"], "accuracy": metrics["accuracy"],
            "train_seconds": round(train_seconds, 2), "total_seconds": round(total_seconds, 2),
            "train_samples_per_s": round(samples_per_s, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--standard", default="standards/conll2003-ner-quick.yaml", help="standard YAML (relative paths: from the repository root)")
    parser.add_argument("--out", help="output folder (default: a new temporary folder)")
    parser.add_argument("--max-steps", type=int, help="stop both runners after N optimizer steps (smoke runs)")
    args = parser.parse_args()

    standard = Path(args.standard)
    standard = standard if standard.is_absolute() or standard.exists() else ROOT / standard
    out = Path(args.out or tempfile.mkdtemp(prefix="hf_baseline-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    std = load_standard(standard)
    metric = "f1" if std.task == "token-classification" else "accuracy"

    # Trainer first, then nlpstd: never both at once, so neither competes for the cores
    rows = [run_trainer(std, args.max_steps, out)]
    print(f"HF Trainer: validation {metric} {rows[0][metric]:.4f}, trained in {rows[0]['train_seconds']:.1f} s", flush=True)
    rows.append(run_nlpstd(std, args.max_steps, out))
    base = rows[0]
    for r in rows:
        r["total_vs_trainer"] = round(r["total_seconds"] / base["total_seconds"], 2)
    difference = rows[1][metric] - base[metric]
    passed = difference >= -TOLERANCE

    print(f"\n{std.name} ({std.task}), {'max_steps ' + str(args.max_steps) if args.max_steps else 'full recipe'}\n")
    print(f"| runner | validation {metric} | train s | total s | train samples/s | total vs Trainer |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['runner']} | {r[metric]:.4f} | {r['train_seconds']:.1f} | {r['total_seconds']:.1f} "
              f"| {r['train_samples_per_s']:.1f} | {r['total_vs_trainer']:.2f}x |")
    print(f"\nnlpstd - Trainer, validation {metric}: {difference * 100:+.2f} points "
          f"-> {'PASS' if passed else 'FAIL'} (nlpstd may trail by at most {TOLERANCE * 100:.1f})")

    report = {"standard": str(standard), "name": std.name, "task": std.task, "metric": f"validation_{metric}",
              "max_steps": args.max_steps, "rows": rows, "difference": difference, "tolerance": TOLERANCE,
              "passed": passed}
    (out / "hf_baseline.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {out / 'hf_baseline.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
