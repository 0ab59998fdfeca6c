"""Smaller models of one standard side by side: a student of half the layers fine-tuned on the labels
alone and distilled from the standard's own model, and the standard's model pruned, each scored and
timed at batch 1 on this CPU.

    NLPSTD_DATA=../shared/data python benchmarks/compression.py \\
        --standard standards/conll2003-ner-quick.yaml --out /tmp/compress-conll

What it runs: data-prep (and pretrain, when the standard pretrains) once, with the standard as given;
then, per variant, `nlpstd stage finetune` and `nlpstd stage evaluate` on those same folders, its
standard the given one with the variant's settings changed, so every variant starts from the same
prepared data and the same pretrained encoder, with the same seed and the same fine-tuning steps
(pruning adds its recovery steps). `teacher` is the standard unchanged; the distilled variants
learn from its `finetune/model`. Then `benchmarks/inference.py` times each variant's model (torch
fp32 and ONNX int8, batch 1 and 32) on the held-out sentences. Stages run one after the other, never
two at once, each in its own process.

It prints, and writes to `<out>/results.json` and `<out>/results.md`, per variant: validation and
test scores of the gate metric, parameters, training seconds, and batch-1 latency.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from stage_runs import command, finetune_and_evaluate, prepare

HERE = Path(__file__).parent
TEACHER = "{teacher}"  # stands for the teacher variant's fine-tuned model folder
# what each variant changes in the standard (dotted keys)
VARIANTS: dict[str, dict[str, Any]] = {
    "teacher": {},
    "student": {"model.keep_layers": "every-other"},
    "distilled": {"model.keep_layers": "every-other", "finetune.distill": {"teacher": TEACHER}},
    "distilled-t4": {"model.keep_layers": "every-other", "finetune.distill": {"teacher": TEACHER, "temperature": 4.0, "alpha": 0.9}},
    # DistilBERT's start: the student is every other layer of the fine-tuned teacher itself, head included
    "student-of-teacher": {"model.base": TEACHER, "model.keep_layers": "every-other", "pretrain.enabled": False},
    "distilled-of-teacher": {"model.base": TEACHER, "model.keep_layers": "every-other", "pretrain.enabled": False,
                             "finetune.distill": {"teacher": TEACHER}},
    "prune-ffn50": {"compress": {"prune": {"ffn": 0.5}, "recovery": {"steps": 100}}},
    "prune-ffn50-norecovery": {"compress": {"prune": {"ffn": 0.5}, "recovery": {"steps": 0}}},
    "prune-layers50": {"compress": {"prune": {"layers": 0.5}, "recovery": {"steps": 100}}},
    # served from ONNX: plain transformers cannot load two matrices where its config has one
    "factorize-ffn-r128": {"compress": {"factorize": {"rank": 128}, "recovery": {"steps": 100}}, "export.serving.format": "onnx"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--standard", required=True, help="the standard to compress")
    parser.add_argument("--variants", default="teacher,student,distilled,prune-ffn50", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--out", type=Path, required=True, help="work folder (data, pretrain, one folder per variant)")
    parser.add_argument("--sentences", type=int, default=256, help="held-out sentences to time per variant")
    parser.add_argument("--threads", type=int, default=2, help="threads for the timing")
    args = parser.parse_args()
    names = args.variants.split(",")
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if any(_needs_teacher(name) for name in names) and "teacher" not in names:
        names.insert(0, "teacher")

    args.out.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(Path(args.standard).read_text())
    prepared = prepare(Path(args.standard), base, args.out)
    teacher = args.out / "teacher" / "finetune" / "model"
    started = time.perf_counter()
    results = {name: _variant(name, base, args.standard, prepared, teacher, args) for name in names}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    table = _table(results, base, time.perf_counter() - started)
    (args.out / "results.md").write_text(table)
    print(table)


def _needs_teacher(name: str) -> bool:
    return TEACHER in json.dumps(VARIANTS[name])


def _variant(name: str, base: dict, standard: str, prepared: dict[str, Path], teacher: Path, args: argparse.Namespace) -> dict:
    """Fine-tune, evaluate and time one variant."""
    folder = args.out / name
    folder.mkdir(exist_ok=True)
    spec = json.loads(json.dumps(base).replace(json.dumps(TEACHER)[1:-1], str(teacher.resolve())))
    for key, value in json.loads(json.dumps(VARIANTS[name]).replace(json.dumps(TEACHER)[1:-1], str(teacher.resolve()))).items():
        _set(spec, key, value)
    splits = ["validation", "test"] if "test" in spec["data"] else ["validation"]
    finetune_wall = finetune_and_evaluate(spec, standard, "compress", prepared, folder)
    timing = _timing(folder, standard, args)
    trained = json.loads((folder / "finetune" / "metrics.json").read_text())
    evaluated = json.loads((folder / "evaluate" / "metrics.json").read_text())
    metric = spec["evaluate"].get("gate", {}).get("metric", "f1")
    extra = {key: trained[key] for key in trained if key.startswith(("teacher_", "dense_", "compressed_", "recovery_"))
             or key in ("ffn_width", "factorized_matrices")}
    return {
        "metric": metric,
        "scores": {split: evaluated["scores"][split][metric] for split in splits},
        "parameters": trained["parameters"],
        "layers": json.loads((folder / "finetune" / "model" / "config.json").read_text())["num_hidden_layers"],
        "train_seconds": trained["train_seconds"],
        "finetune_wall_seconds": round(finetune_wall, 1),
        "steps": trained["steps"],
        "latency": timing,
        **extra,
    }


def _set(spec: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        spec = spec.setdefault(key, {})
    spec[last] = value


def _timing(folder: Path, standard: str, args: argparse.Namespace) -> dict[str, Any]:
    """`benchmarks/inference.py` on the variant's model: batch-1 p50 latency per backend."""
    out = folder / "inference"
    if not (out / "inference.json").exists():
        command([sys.executable, str(HERE / "inference.py"), "--model", str(folder / "finetune" / "model"), "--standard", standard,
              "--sentences", str(args.sentences), "--threads", str(args.threads), "--out", str(out)])
    timed = json.loads((out / "inference.json").read_text())
    return {backend: {"batch1_p50_ms": row["1"]["p50_ms"], "batch1_per_s": row["1"]["sentences_per_s"],
                      "batch32_per_s": row["32"]["sentences_per_s"]}
            for backend, row in timed["results"].items() if backend in ("torch eager fp32", "onnxruntime int8")}


def _table(results: dict[str, dict], base: dict, seconds: float) -> str:
    """One row per variant: scores, size, training time and batch-1 latency."""
    first = next(iter(results.values()))
    metric, splits = first["metric"], list(first["scores"])
    backends = list(first["latency"])
    head = ["variant", "layers", "parameters", *(f"{split} {metric}" for split in splits), "train s", "steps",
            *(f"{backend} batch-1 ms" for backend in backends)]
    rows = [f"| {' | '.join(head)} |", f"| {' | '.join('---' for _ in head)} |"]
    for name, result in results.items():
        cells = [name, str(result["layers"]), f"{result['parameters'] / 1e6:.1f} M",
                 *(f"{result['scores'][split]:.4f}" for split in splits), f"{result['train_seconds']:.0f}", str(result["steps"]),
                 *(f"{result['latency'][backend]['batch1_p50_ms']:.2f}" for backend in backends)]
        rows.append(f"| {' | '.join(cells)} |")
    return f"{base['name']} ({seconds / 60:.1f} min)\n\n" + "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
