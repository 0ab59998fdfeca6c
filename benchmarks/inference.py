"""Inference speed on this machine: torch eager fp32, ONNX Runtime fp32 and ONNX Runtime int8, one run.

All three score the same exported model on the same held-out sentences (the standard's test split,
else validation), fed the same padded tensors: tokenization is done once, up front, and is not
timed. Each backend runs alone, after a warm-up, with the same number of threads.

- batch 1: one sentence per call, in data order; latency p50 / p90 and sentences/s.
- batch 32: 32 consecutive sentences per call, padded to the longest; latency p50 per batch,
  sentences/s and real (non-pad) tokens/s.

It prints a markdown table with each backend's speed-up over torch eager fp32 and writes
`inference.json`. The ONNX graphs come from the export folder (`onnx/`, `onnx-int8/`); when the
folder has none they are built into a temporary folder the way the export stage builds them.

    python benchmarks/inference.py --model runs/conll2003-ner-quick/export/model
    python benchmarks/inference.py --model path/to/model --standard standards/sst2-sentiment-quick.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from nlpstd.data.encode import encode
from nlpstd.data.prepare import label_set
from nlpstd.data.readers import read_all
from nlpstd.export.onnx import MODEL_FILE, OnnxForward, export_onnx, quantize_int8
from nlpstd.inference import Forward, call_seconds, torch_forward
from nlpstd.models.build import load_model, load_tokenizer
from nlpstd.models.folder import CONFIG, read_config, task_of
from nlpstd.spec import load_standard
from nlpstd.train.batching import collate

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an exported model folder (export/model)")
    parser.add_argument("--standard", default="standards/conll2003-ner-quick.yaml", help="where the held-out sentences come from")
    parser.add_argument("--sentences", type=int, default=512, help="held-out sentences to time (default 512)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every backend (default: all cores)")
    parser.add_argument("--out", default=None, help="folder for inference.json (default: a temporary folder)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model_dir = Path(args.model)
    task = task_of(read_config(model_dir), Path(model_dir) / CONFIG)
    features, pad_id = held_out_features(args.standard, model_dir, task, args.sentences)
    batches = {size: padded_batches(features, pad_id, size) for size in (1, 32)}
    with tempfile.TemporaryDirectory(prefix="nlpstd-bench-") as scratch:
        graphs = onnx_graphs(model_dir, task, Path(scratch))
        backends: dict[str, Callable[[], Forward]] = {
            "torch eager fp32": lambda: torch_forward(load_model(model_dir, task), torch.device("cpu")),
            "onnxruntime fp32": lambda: OnnxForward(graphs["onnx"], args.threads),
            "onnxruntime int8": lambda: OnnxForward(graphs["onnx-int8"], args.threads),
        }
        rows = {name: {size: measure(make(), batches[size]) for size in batches} for name, make in backends.items()}

    report = {"device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads",
              "date": time.strftime("%Y-%m-%d"), "model": str(model_dir), "task": task,
              "sentences": args.sentences, "results": rows}
    out = Path(args.out or tempfile.mkdtemp(prefix="nlpstd-inference-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "inference.json").write_text(json.dumps(report, indent=2))
    print(table(rows))
    print(f"\n{report['device']}; {args.sentences} sentences; written to {out / 'inference.json'}")


def held_out_features(standard: str, model_dir: Path, task: str, count: int) -> tuple[list[dict], int]:
    """The first `count` held-out sentences, tokenized by the model's tokenizer; and its pad id."""
    path = Path(standard) if Path(standard).exists() else REPO / standard
    std = load_standard(path)
    split = "test" if std.data.test else "validation"
    records = read_all(std.data, split, task)[:count]
    tokenizer = load_tokenizer(str(model_dir))
    features = encode(tokenizer, task, records, label_set(task, records), std.data.max_length, std.data.label_subwords).features
    return features, tokenizer.pad_token_id


def padded_batches(features: list[dict], pad_id: int, size: int) -> list[dict[str, torch.Tensor]]:
    """Consecutive batches of `size`, each padded to its longest sentence."""
    batches = []
    for start in range(0, len(features), size):
        batch = collate(features[start : start + size], pad_id)
        batch.pop("labels")
        batches.append(batch)
    return batches


def onnx_graphs(model_dir: Path, task: str, scratch: Path) -> dict[str, Path]:
    """The export's graphs, or graphs built here when the folder was exported without them."""
    fp32, int8 = model_dir / "onnx" / MODEL_FILE, model_dir / "onnx-int8" / MODEL_FILE
    if not fp32.is_file():
        token_types = "token_type_ids" in load_tokenizer(str(model_dir)).model_input_names
        fp32 = export_onnx(load_model(model_dir, task), scratch / "onnx" / MODEL_FILE, token_types=token_types)
    if not int8.is_file():
        int8 = quantize_int8(fp32, scratch / "onnx-int8" / MODEL_FILE)
    return {"onnx": fp32, "onnx-int8": int8}


def measure(forward: Forward, batches: list[dict[str, torch.Tensor]], warmup: int = 10) -> dict[str, float]:
    seconds = call_seconds(forward, batches, warmup)
    sentences = sum(len(b["input_ids"]) for b in batches)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    quantiles = statistics.quantiles(seconds, n=10)
    return {"p50_ms": round(statistics.median(seconds) * 1e3, 2), "p90_ms": round(quantiles[-1] * 1e3, 2),
            "sentences_per_s": round(sentences / sum(seconds), 1), "tokens_per_s": round(tokens / sum(seconds), 1)}


def table(rows: dict[str, dict[int, dict[str, float]]]) -> str:
    base = rows["torch eager fp32"]
    lines = ["| backend | batch | p50 ms | p90 ms | sentences/s | tokens/s | speed-up vs torch eager fp32 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, by_size in rows.items():
        for size, row in by_size.items():
            ratio = row["sentences_per_s"] / base[size]["sentences_per_s"]
            lines.append(f"| {name} | {size} | {row['p50_ms']} | {row['p90_ms']} | {row['sentences_per_s']} | {row['tokens_per_s']} | {ratio:.2f}× |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
