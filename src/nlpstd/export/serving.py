"""The serving hand-off: a KServe InferenceService that serves the exported model from its destination."""

from __future__ import annotations

import re

from nlpstd import storage
from nlpstd.spec import Standard

API_VERSION = "serving.kserve.io/v1beta1"
# Where each format lives inside the exported folder (the storage URI of its runtime).
FOLDERS = {"safetensors": "", "onnx": "onnx", "onnx-int8": "onnx-int8"}
# The Hugging Face runtime's names for our tasks.
_HF_TASKS = {"token-classification": "token_classification", "sequence-classification": "sequence_classification"}


def service_name(name: str) -> str:
    """A DNS-1123 label (lowercase alphanumerics and '-', at most 63), as Kubernetes names require."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].rstrip("-")
    return label or "nlpstd-model"


def storage_uri(std: Standard, slot: str | None = None) -> str | None:
    """The cluster reads the model where export uploaded it (the export's own `slot` folder of the
    destination); a local destination is not reachable from there."""
    serving = std.export.serving
    if serving.storage_uri:
        return serving.storage_uri
    destination = std.export.destination
    if not (destination and storage.is_remote(destination)):
        return None
    return f"{destination.rstrip('/')}/{slot}" if slot else destination


def inference_service(std: Standard, uri: str) -> dict:
    """The manifest for `kubectl apply -f`: the Hugging Face runtime for the safetensors folder (text in,
    labels out), the ONNX runtime (Open Inference Protocol v2, tensors in and out) for an ONNX format."""
    serving = std.export.serving
    name = service_name(std.export.register_as or std.name)
    folder = FOLDERS[serving.format]
    quantities = {"cpu": serving.cpu, "memory": serving.memory}
    model: dict = {"storageUri": uri.rstrip("/") + (f"/{folder}" if folder else ""),
                   "resources": {"requests": dict(quantities), "limits": dict(quantities)}}
    if serving.format == "safetensors":
        model = {"modelFormat": {"name": "huggingface"},
                 "args": [f"--model_name={name}", "--model_dir=/mnt/models", f"--task={_HF_TASKS[std.task]}"], **model}
    else:
        model = {"modelFormat": {"name": "onnx"}, "protocolVersion": "v2", **model}
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "nlpstd"},
            "annotations": {"nlpstd/standard": std.name, "nlpstd/spec-hash": std.spec_hash(), "nlpstd/format": serving.format},
        },
        "spec": {"predictor": {"model": model}},
    }
