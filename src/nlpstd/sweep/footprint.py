"""What serving a trial's model costs: its parameters, the work of one forward pass, its CPU latency and
its bytes on disk, in fp32 and as the dynamic-int8 ONNX graph the export stage would ship, with that
graph's own validation scores.

Latency is what a request-at-a-time server sees: one example per call, tokenization excluded, the
median over a fixed sample of validation examples after a warm-up, on this machine's CPU with the
process's thread setting (`runtime.threads`), torch fp32 under `inference_mode` against ONNX Runtime.
benchmarks/inference.py measures the same way, over more examples and batch sizes. The int8 graph is
built by the export's own functions (`export_onnx`, `quantize_int8`) in a scratch folder and thrown
away: export builds its own from the recommended standard."""

from __future__ import annotations

import importlib.util
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from nlpstd.data.encode import Encoded
from nlpstd.errors import NlpstdError
from nlpstd.evaluate.metrics import headline
from nlpstd.evaluate.scoring import score_logits
from nlpstd.export.onnx import MODEL_FILE, OnnxForward, export_onnx, quantize_int8
from nlpstd.inference import Forward, call_seconds, predict_logits, torch_forward
from nlpstd.models.build import count_parameters, load_model, load_tokenizer
from nlpstd.models.ensemble import MEMBERS
from nlpstd.spans import IobRepair
from nlpstd.spec import GateSpec
from nlpstd.train.batching import collate

log = logging.getLogger(__name__)

SAMPLE = 64  # validation examples timed, evenly spaced over the split: the same ones on every rerun
WARMUP = 8  # untimed calls first, so allocation, kernel choice and ONNX Runtime's graph setup are not timed
ONNX_LIMIT = 2 * 1024**3  # export writes one self-contained ONNX file, and protobuf caps a file at 2 GB
ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")  # what export_onnx and quantize_int8 import

# What `footprint` measures, as a trial's result.json records it (its `parameters` come from fine-tuning).
KEYS = ("inference_flops", "inference_tokens", "cpu_ms", "cpu_threads", "disk_bytes",
        "int8_validation", "int8_cpu_ms", "int8_disk_bytes", "int8_skipped")


def footprint(model_dir: str | Path, task: str, validation: Encoded, labels: list[str], *, batch_size: int = 32,
              iob_repair: IobRepair = "start", sample: int = SAMPLE) -> dict[str, Any]:
    """The footprint of the fine-tuned folder `model_dir`, measured on `validation` (encoded by its tokenizer):
    `parameters`, `inference_flops` of one batch-1 forward pass over `inference_tokens` (the split's median
    length), `cpu_ms` per example at batch 1 with `cpu_threads`, `disk_bytes` of the weights; then the int8
    graph's `int8_validation` scores, `int8_cpu_ms` and `int8_disk_bytes`, or the reason in `int8_skipped`."""
    model_dir = Path(model_dir)
    tokenizer = load_tokenizer(str(model_dir))
    model = load_model(model_dir, task).to("cpu").float().eval()
    timed = [_single(feature, tokenizer.pad_token_id) for feature in _spread(validation.features, sample)]
    parameters, _ = count_parameters(model)
    tokens, flops = inference_flops(model, validation.features)
    out: dict[str, Any] = {"parameters": parameters, "inference_flops": flops, "inference_tokens": tokens,
                           "cpu_ms": latency_ms(torch_forward(model, torch.device("cpu")), timed),
                           "cpu_threads": torch.get_num_threads(), "disk_bytes": weights_bytes(model_dir)}
    log.info(f"footprint: {parameters:,} parameters, {flops:.3g} FLOPs per example of {tokens} tokens, "
             f"{out['cpu_ms']:.2f} ms per example on {out['cpu_threads']} CPU thread(s), {out['disk_bytes'] / 1e6:.1f} MB")

    skipped = onnx_unavailable(out["disk_bytes"])
    if skipped is None:
        try:
            out.update(int8_footprint(model, tokenizer, task, validation, labels, timed, batch_size, iob_repair))
        except (NlpstdError, RuntimeError) as exc:  # an operator the exporter or ONNX Runtime cannot take: fp32 still stands
            skipped = f"int8 graph failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if skipped is not None:
        log.warning(f"footprint: no int8 figures: {skipped}")
        out.update(int8_validation=None, int8_cpu_ms=None, int8_disk_bytes=None)
    out["int8_skipped"] = skipped
    return out


def onnx_unavailable(disk_bytes: int) -> str | None:
    """Why no int8 graph can be built here, found before any work: the ONNX packages are missing (an image
    with the training stack alone), or the weights exceed what one ONNX file holds."""
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    if disk_bytes >= ONNX_LIMIT:
        return f"weights of {disk_bytes / 1e9:.1f} GB exceed the 2 GB one ONNX file holds"
    return None


def int8_footprint(model: torch.nn.Module, tokenizer, task: str, validation: Encoded, labels: list[str],
                   timed: list[dict[str, torch.Tensor]], batch_size: int, iob_repair: IobRepair) -> dict[str, Any]:
    """The dynamic-int8 graph as export builds it (quantized from the fp32 graph): its scores on the whole
    split, scored as export's parity check scores a format, its latency on `timed` and its file size."""
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nlpstd-footprint-") as scratch:
        fp32 = export_onnx(model, Path(scratch) / "onnx" / MODEL_FILE, token_types="token_type_ids" in tokenizer.model_input_names)
        int8 = quantize_int8(fp32, Path(scratch) / "onnx-int8" / MODEL_FILE)
        forward = OnnxForward(int8, torch.get_num_threads())
        logits = predict_logits(forward, validation.features, batch_size, pad_id=tokenizer.pad_token_id, desc="footprint int8")
        scores = headline(score_logits(logits, validation, task, labels, iob_repair).metrics)
        out = {"int8_validation": scores, "int8_cpu_ms": latency_ms(forward, timed), "int8_disk_bytes": int8.stat().st_size}
    log.info(f"footprint: int8 {out['int8_cpu_ms']:.2f} ms per example, {out['int8_disk_bytes'] / 1e6:.1f} MB "
             f"(built and scored in {time.perf_counter() - began:.1f} s)")
    return out


def int8_verdict(int8: dict[str, float] | None, fp32: dict[str, float], gate: GateSpec, max_drop: float) -> dict[str, Any]:
    """Whether the int8 graph may serve: its gate metric clears the gate and stays within `max_drop`
    (export.parity.max_metric_drop) of the fp32 model's, as the export's parity check will demand."""
    if int8 is None:
        return {"int8_metric_drop": None, "int8_passes_gate": False}
    drop = fp32[gate.metric] - int8[gate.metric]
    return {"int8_metric_drop": drop, "int8_passes_gate": int8[gate.metric] >= gate.min and drop <= max_drop}


def inference_flops(model: torch.nn.Module, features: list[dict]) -> tuple[int, float]:
    """(tokens, FLOPs) of one forward pass at batch 1 over the example of median length: torch's count
    of matrix products and attention, 2 per multiply-add; lookups and element-wise work are not counted."""
    lengths = sorted(len(f["input_ids"]) for f in features)
    median = lengths[(len(lengths) - 1) // 2]
    example = next(f for f in features if len(f["input_ids"]) == median)
    # on a CPU, attention runs as a kernel the counter has no formula for; it is the same product as on a GPU
    cpu_attention = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        model(**_single(example, 0))
    return median, float(counter.get_total_flops())


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def latency_ms(forward: Forward, batches: list[dict[str, torch.Tensor]], warmup: int = WARMUP) -> float:
    """Median milliseconds of one call over `batches`, after `warmup` untimed calls."""
    return round(statistics.median(call_seconds(forward, batches, warmup)) * 1e3, 3)


def weights_bytes(model_dir: str | Path) -> int:
    """Bytes of the weights the folder serves: its safetensors file(s), and an ensemble's members' as well."""
    folder = Path(model_dir)
    return sum(path.stat().st_size for path in [*folder.glob("*.safetensors"), *(folder / MEMBERS).glob("*/*.safetensors")])


def _spread(features: list[dict], count: int) -> list[dict]:
    """`count` features evenly spaced over the split (all of them when it is smaller): short and long alike."""
    step = max(1, len(features) // count)
    return features[::step][:count]


def _single(feature: dict, pad_id: int) -> dict[str, torch.Tensor]:
    """One example as a batch of one: input_ids and attention_mask (1, T), no labels."""
    batch = collate([feature], pad_id)
    batch.pop("labels")
    return batch
