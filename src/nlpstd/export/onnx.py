"""ONNX for serving: the fine-tuned model as an ONNX graph with dynamic batch and sequence axes, its int8
dynamic quantization, and an ONNX Runtime session that scores batches like the torch model does."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel

from nlpstd.errors import NlpstdError

MODEL_FILE = "model.onnx"
OPSET = 18


class _Logits(torch.nn.Module):
    """Named inputs in, logits out: the graph's signature a serving runtime sees."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


def export_onnx(model: PreTrainedModel, path: Path, token_types: bool) -> Path:
    """One self-contained file (weights inside; models under 2 GB), inputs int64 (batch, sequence)."""
    model = model.to("cpu").eval()
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    example = {name: torch.ones(2, 8, dtype=torch.long) for name in names}
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    log = io.StringIO()
    try:
        with _quiet("torch.onnx"), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            program = torch.onnx.export(_Logits(model), (), kwargs=example, dynamo=True, opset_version=OPSET,
                                        dynamic_shapes={name: {0: batch, 1: sequence} for name in names},
                                        input_names=names, output_names=["logits"], verbose=False)
            path.parent.mkdir(parents=True, exist_ok=True)
            program.save(str(path), external_data=False)
    except Exception as exc:  # the exporter's own log says which operator failed
        raise NlpstdError(f"export: ONNX conversion failed: {exc}\n{log.getvalue()[-2000:]}") from exc
    _strip_debug_info(path)
    return path


def _strip_debug_info(path: Path) -> None:
    """The exporter annotates every node with Python stack traces (file paths of the machine that
    exported it); a deliverable carries none of that, and the same model gives the same file anywhere."""
    import onnx

    graph = onnx.load(str(path))
    for node in [*graph.graph.node, *(n for function in graph.functions for n in function.node)]:
        del node.metadata_props[:]
    onnx.save(graph, str(path))


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic quantization: int8 weights, activations quantized per batch at run time; no calibration data."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    with _quiet(""):  # the quantizer logs advice to pre-process on the root logger, once per call
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
    return target


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Warnings and a logger's chatter off for one call; errors still show."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


class OnnxForward:
    """An ONNX Runtime session as a forward: padded torch batch in, float32 logits out."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise NlpstdError(f"{path}: no ONNX model there")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        shape = batch["input_ids"].shape
        feed = {name: (batch[name] if name in batch else torch.zeros(shape, dtype=torch.long)).numpy().astype(np.int64)
                for name in self.input_names}
        return self.session.run(None, feed)[0].astype(np.float32, copy=False)
