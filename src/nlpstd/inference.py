"""Batched forward passes for evaluation, prediction and export parity, and turning logits into labels.

One batching path serves every backend: a *forward* is any callable from a padded batch of tensors
to a logits array, so the torch model and an ONNX Runtime session are scored by the same code.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from nlpstd.runtime import autocast
from nlpstd.train.batching import collate, eval_batches

Forward = Callable[[dict[str, torch.Tensor]], np.ndarray]


def torch_forward(model: PreTrainedModel, device: torch.device, precision: str = "fp32") -> Forward:
    """The model's logits as float32 numpy, under the precision the standard asks for."""
    model.eval()

    @torch.inference_mode()
    def forward(batch: dict[str, torch.Tensor]) -> np.ndarray:
        with autocast(device, precision):
            return model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().numpy()

    return forward


def predict_logits(forward: Forward, features: list[dict], batch_size: int, pad_id: int = 0,
                   desc: str | None = None) -> list[np.ndarray]:
    """Logits per example, in input order: (T_i, L) for token tasks, (L,) for sequence tasks."""
    out: list[np.ndarray | None] = [None] * len(features)
    batches = eval_batches([len(f["input_ids"]) for f in features], batch_size)
    for indices in tqdm(batches, desc=desc, disable=desc is None, unit="batch", leave=False):
        batch = collate([features[i] for i in indices], pad_id)
        batch.pop("labels")
        logits = forward(batch)
        for row, i in enumerate(indices):
            out[i] = logits[row, : len(features[i]["input_ids"])] if logits.ndim == 3 else logits[row]
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def word_predictions(logits: np.ndarray, word_ids: list[int], n_words: int) -> list[tuple[int, float]]:
    """(label id, probability) per word from its first sub-word; words cut by truncation get (-1, 0.0)."""
    probs = softmax(logits)
    result: list[tuple[int, float]] = [(-1, 0.0)] * n_words
    previous = -1
    for position, word in enumerate(word_ids):
        if word >= 0 and word != previous:
            label = int(probs[position].argmax())
            result[word] = (label, float(probs[position, label]))
        previous = word
    return result


def word_tags(logits: np.ndarray, word_ids: list[int], n_words: int, id2label: dict[int, str]) -> list[str]:
    """Predicted tag per word; a truncated word is predicted `O` (and counted in the report)."""
    return [id2label[label] if label >= 0 else "O" for label, _ in word_predictions(logits, word_ids, n_words)]
