"""nlpstd against a plain Hugging Face `Trainer`: same base model, same data, same recipe, same
precision, run in alternating pairs so that background load on a shared machine hits both sides.

What it measures, side by side:

1. `Trainer`, written the way a user writes it: `AutoModelFor...Classification` on the
   standard's base, the stock collator, `TrainingArguments` filled from the standard's
   `finetune` section (length grouping when the standard groups), no saving, no evaluation
   while training. The data are nlpstd's own prepared records and sub-word features, so both
   sides train on identical examples, and the validation split is scored with nlpstd's metric
   functions (NER: first sub-word of each word, entity-level F1; classification: accuracy).
2. `nlpstd run <standard> --no-tracking`; its scores and training time come from
   `evaluate/metrics.json` and `finetune/metrics.json`.

Every run is a fresh process on `<out>/standard.yaml`: the standard as loaded, data paths made
absolute, `--max-steps` applied and `runtime.precision` pinned to what `resolve_precision` picks
here (`auto` is bf16 on a CPU with native bf16), so both sides train at the same precision.
Total seconds are the wall clock of each process, start-up included, on both sides.

`--repeats N` pairs run one at a time, the first runner alternating (Trainer nlpstd, nlpstd
Trainer, Trainer nlpstd, ...): a load that rises or falls through the invocation, or a cold first
run, then favours neither side, where a fixed order would always give it to the same runner.
Each pair gives Trainer/nlpstd ratios (training seconds, total seconds, and nlpstd/Trainer
training samples/s: above 1 means nlpstd is faster); the report is their median, min-max and,
from 4 pairs, interquartile range. PASS means nlpstd's median validation metric is at most 0.005
(0.5 points on a 0-100 scale) below `Trainer`'s median; the exit status is 0 either way unless a
run crashed. Markdown tables on stdout, the runs and the summary in `<out>/hf_baseline.json`.

    python benchmarks/hf_baseline.py                                             # the quick CoNLL standard, 3 pairs
    python benchmarks/hf_baseline.py --max-steps 20 --repeats 2 --out /tmp/bench  # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
RUNNERS = ("trainer", "nlpstd")
NAMES = {"trainer": "HF Trainer", "nlpstd": "nlpstd"}
# each ratio reads as nlpstd's speed-up: Trainer's seconds over nlpstd's, nlpstd's rate over Trainer's
RATIOS = {"train_seconds": "train s", "total_seconds": "total s", "train_samples_per_s": "train samples/s"}


# -- the statistics (pure) ---------------------------------------------------------------------


def first_runner(pair: int) -> str:
    """Trainer opens the odd pairs, nlpstd the even ones, so a drifting load evens out over every two pairs."""
    return RUNNERS[0] if pair % 2 else RUNNERS[1]


def schedule(repeats: int) -> list[tuple[int, str]]:
    """(pair, runner) in run order, pairs numbered from 1: T N, N T, T N, ..."""
    order = []
    for pair in range(1, repeats + 1):
        first = first_runner(pair)
        order += [(pair, first), (pair, RUNNERS[1] if first == RUNNERS[0] else RUNNERS[0])]
    return order


def pair_ratios(trainer: dict, nlpstd: dict) -> dict[str, float]:
    """One pair's speed-ups of nlpstd over Trainer (above 1: nlpstd is faster)."""
    return {"train_seconds": trainer["train_seconds"] / nlpstd["train_seconds"],
            "total_seconds": trainer["total_seconds"] / nlpstd["total_seconds"],
            "train_samples_per_s": nlpstd["train_samples_per_s"] / trainer["train_samples_per_s"]}


def spread(values: list[float]) -> dict[str, float]:
    """Median and min-max; from 4 values also the quartiles (inclusive method, numpy's default), which
    a single slow run cannot move the way it moves the min or max."""
    out = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    if len(values) >= 4:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        out |= {"q1": q1, "q3": q3, "iqr": q3 - q1}
    return out


def summarize(pairs: list[dict[str, dict]], metric: str, tolerance: float = TOLERANCE) -> dict:
    """`pairs`: [{"trainer": row, "nlpstd": row}, ...] with the keys of `row`. The per-pair ratios, their
    spread, each side's validation `metric`, and the PASS rule applied to the two medians."""
    if not pairs:
        raise ValueError("no pairs to summarize")
    ratios = [pair_ratios(p["trainer"], p["nlpstd"]) for p in pairs]
    metrics = {side: spread([p[side][metric] for p in pairs]) for side in RUNNERS}
    difference = metrics["nlpstd"]["median"] - metrics["trainer"]["median"]
    return {"pairs": len(pairs), "ratios": ratios,
            "speedup": {key: spread([r[key] for r in ratios]) for key in RATIOS},
            "metric": metrics, "difference": difference, "tolerance": tolerance,
            "passed": difference >= -tolerance}


# -- one run each -------------------------------------------------------------------------------


def run_trainer(std: Standard, out: Path) -> dict:
    """Fine-tune and score with Hugging Face `Trainer` in this process; returns its row."""
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
    #    on the resolved device: with device auto on a CPU, bf16 needs use_cpu or TrainingArguments refuses it
    device = resolve_device(std.runtime)
    precision = resolve_precision(std.runtime, device)
    args = trainer_arguments(recipe, out / "hf-trainer", seed=std.seed, precision=precision, use_cpu=device.type == "cpu")
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
    return row("trainer", metrics, train_seconds, time.perf_counter() - started, steps * recipe.batch_size / train_seconds,
               steps=steps, precision=precision)


def timed(command: list[str]) -> tuple[int, float]:
    """Exit status and wall seconds of a fresh process."""
    started = time.perf_counter()
    code = subprocess.run(command, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    return code, time.perf_counter() - started


def trainer_process(standard_file: Path, run_dir: Path) -> dict:
    """`run_trainer` in a fresh process (this script with `--trainer-run`), so no run inherits another's state."""
    command = [sys.executable, __file__, "--standard", str(standard_file), "--trainer-run", str(run_dir)]
    code, total = timed(command)
    if code != 0:
        raise SystemExit(f"the Trainer run failed with exit status {code}: {' '.join(command)}")
    result = json.loads((run_dir / "row.json").read_text())
    return {**result, "total_seconds": round(total, 3)}


def nlpstd_process(standard_file: Path, run_dir: Path) -> dict:
    """`nlpstd run` in a fresh process."""
    command = [sys.executable, "-m", "nlpstd.cli", "run", str(standard_file), "--out", str(run_dir), "--no-tracking"]
    code, total = timed(command)
    if code not in (0, 3):  # 3: the gate failed, export skipped; still a complete, scored run
        raise SystemExit(f"nlpstd run failed with exit status {code}: {' '.join(command)}")
    finetune = json.loads((run_dir / "finetune" / "metrics.json").read_text())
    evaluate = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    result = row("nlpstd", evaluate["scores"]["validation"], finetune["train_seconds"], total, finetune["train_samples_per_s"],
                 steps=finetune["steps"], precision=finetune["precision"])
    return {**result, "gate_passed": evaluate["gate"]["passed"]}


def row(runner: str, metrics: dict, train_seconds: float, total_seconds: float, samples_per_s: float, *,
        steps: int, precision: str) -> dict:
    """One run's line; steps and precision are kept to show both sides trained alike."""
    return {"runner": runner, "f1": metrics["f1"], "accuracy": metrics["accuracy"],
            "train_seconds": round(train_seconds, 3), "total_seconds": round(total_seconds, 3),
            "train_samples_per_s": round(samples_per_s, 2), "steps": steps, "precision": precision}


def resolved_copy(std: Standard, max_steps: int | None, out: Path) -> tuple[Path, str]:
    """The standard both sides read, with `--max-steps` applied and the precision pinned; and that precision."""
    spec = std.to_dict()
    if max_steps:
        spec["finetune"]["max_steps"] = max_steps
    precision = resolve_precision(std.runtime, resolve_device(std.runtime))
    spec["runtime"]["precision"] = precision
    standard_file = out / "standard.yaml"
    standard_file.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return standard_file, precision


# -- the report -----------------------------------------------------------------------------------


def range_text(s: dict, digits: int, suffix: str = "") -> str:
    """`median (min-max[, IQR q1-q3])`."""
    text = f"{s['median']:.{digits}f}{suffix} ({s['min']:.{digits}f}-{s['max']:.{digits}f}"
    return text + (f", IQR {s['q1']:.{digits}f}-{s['q3']:.{digits}f})" if "q1" in s else ")")


def report_text(runs: list[dict], summary: dict, metric: str) -> str:
    """The runs table, the per-pair ratio table with its median and spread, and the PASS line."""
    lines = [f"| pair | runner | precision | steps | validation {metric} | train s | total s | train samples/s |",
             "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['pair']} | {NAMES[r['runner']]} | {r['precision']} | {r['steps']} | {r[metric]:.4f} | {r['train_seconds']:.2f} "
              f"| {r['total_seconds']:.1f} | {r['train_samples_per_s']:.1f} |" for r in runs]
    lines += ["", "nlpstd's speed-up per pair (Trainer s / nlpstd s; nlpstd samples/s / Trainer samples/s):", "",
              "| pair | first | " + " | ".join(RATIOS.values()) + " |", "| ---: | --- |" + " ---: |" * len(RATIOS)]
    lines += [f"| {pair} | {NAMES[first_runner(pair)]} | " + " | ".join(f"{ratio[k]:.2f}x" for k in RATIOS) + " |"
              for pair, ratio in enumerate(summary["ratios"], start=1)]
    lines += ["| median (min-max) | | " + " | ".join(range_text(summary["speedup"][k], 2, "x") for k in RATIOS) + " |"]
    m = summary["metric"]
    lines += ["", f"validation {metric}, median (min-max): HF Trainer {range_text(m['trainer'], 4)}, nlpstd {range_text(m['nlpstd'], 4)}",
              f"nlpstd - Trainer, medians: {summary['difference'] * 100:+.2f} points -> {'PASS' if summary['passed'] else 'FAIL'} "
              f"(nlpstd may trail by at most {summary['tolerance'] * 100:.1f})"]
    return "\n".join(lines)


def alternate(standard_file: Path, repeats: int, out: Path, metric: str) -> tuple[list[dict], list[dict]]:
    """Run the schedule; returns every run in order and the pairs {"trainer": row, "nlpstd": row}."""
    runs, pairs = [], [{} for _ in range(repeats)]
    for order, (pair, runner) in enumerate(schedule(repeats), start=1):
        run_dir = out / "runs" / f"{pair:02d}-{runner}"
        run_dir.mkdir(parents=True, exist_ok=True)
        result = trainer_process(standard_file, run_dir) if runner == "trainer" else nlpstd_process(standard_file, run_dir)
        result |= {"pair": pair, "order": order}
        runs.append(result)
        pairs[pair - 1][runner] = result
        print(f"[{order}/{2 * repeats}] {NAMES[runner]}, pair {pair}: validation {metric} {result[metric]:.4f}, "
              f"trained in {result['train_seconds']:.1f} s, {result['total_seconds']:.1f} s in all", flush=True)
    return runs, pairs


def trainer_run(standard: Path, run_dir: Path) -> int:
    """The child side of `trainer_process`: one Trainer run, its row written to `<run_dir>/row.json`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    result = run_trainer(load_standard(standard), run_dir)
    (run_dir / "row.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--standard", default="standards/conll2003-ner-quick.yaml", help="standard YAML (relative paths: from the repository root)")
    parser.add_argument("--out", help="output folder (default: a new temporary folder)")
    parser.add_argument("--max-steps", type=int, help="stop both runners after N optimizer steps (smoke runs)")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs, the first runner alternating (default 3)")
    parser.add_argument("--trainer-run", type=Path, metavar="DIR", help="one Trainer run of --standard as it is, its row to DIR/row.json "
                        "(what each Trainer run of a comparison starts)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    standard = Path(args.standard)
    standard = standard if standard.is_absolute() or standard.exists() else ROOT / standard
    if args.trainer_run:
        return trainer_run(standard, args.trainer_run.resolve())
    out = Path(args.out or tempfile.mkdtemp(prefix="hf_baseline-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    std = load_standard(standard)
    metric = "f1" if std.task == "token-classification" else "accuracy"
    standard_file, precision = resolved_copy(std, args.max_steps, out)

    runs, pairs = alternate(standard_file, args.repeats, out, metric)
    summary = summarize(pairs, metric)
    steps = f"max_steps {args.max_steps}" if args.max_steps else "full recipe"
    print(f"\n{std.name} ({std.task}), {steps}, {precision}, {args.repeats} pairs\n")
    print(report_text(runs, summary, metric))

    report = {"standard": str(standard), "name": std.name, "task": std.task, "metric": f"validation_{metric}",
              "max_steps": args.max_steps, "precision": precision, "repeats": args.repeats, "runs": runs,
              "summary": summary, "difference": summary["difference"], "tolerance": TOLERANCE, "passed": summary["passed"]}
    (out / "hf_baseline.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {out / 'hf_baseline.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
