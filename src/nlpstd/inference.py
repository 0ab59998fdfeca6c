"""Batched forward passes for evaluation, prediction and export parity, and turning logits into labels.

One batching path serves every backend: a *forward* is any callable from a padded batch of tensors
to a logits array, so the torch model and an ONNX Runtime session are scored by the same code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from nlpstd.data.encode import Encoded
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


def call_seconds(forward: Forward, batches: list[dict[str, torch.Tensor]], warmup: int) -> list[float]:
    """The wall seconds of each call of `forward` on `batches`, after `warmup` untimed calls on the
    first ones (one-off costs: allocation, kernel choice, lazy initialisation)."""
    for batch in batches[:warmup]:
        forward(batch)
    seconds = []
    for batch in batches:
        began = time.perf_counter()
        forward(batch)
        seconds.append(time.perf_counter() - began)
    return seconds


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


def word_predictions(logits: list[np.ndarray], encoded: Encoded) -> list[list[tuple[int, float]]]:
    """(label id, probability) per word of each example, from the word's first sub-word. A word seen
    by several windows (data.stride) takes the window where it sits most centrally, farthest from
    either edge, where it has the most context; a word no window holds (truncation) gets (-1, 0.0)."""
    best = [[(-1, -1, 0.0)] * len(words) for words in encoded.words]  # (centrality, label, probability)
    for row, feature, record in zip(logits, encoded.features, encoded.record_of):
        probs = softmax(row)
        for position, word, centrality in first_subwords(feature["word_ids"]):
            if centrality > best[record][word][0]:
                label = int(probs[position].argmax())
                best[record][word] = (centrality, label, float(probs[position, label]))
    return [[(label, prob) for _, label, prob in words] for words in best]


def first_subwords(word_ids: list[int]) -> Iterator[tuple[int, int, int]]:
    """(position, word, centrality) of each word's first sub-word in one window (`word_ids`: -1 for
    specials and padding); centrality is the distance to the window's nearer edge. A word in several
    windows is read where its centrality is greatest, the first such window on a tie."""
    previous = -1
    for position, word in enumerate(word_ids):
        if word >= 0 and word != previous:
            yield position, word, min(position, len(word_ids) - 1 - position)
        previous = word


def word_tags(logits: list[np.ndarray], encoded: Encoded, id2label: dict[int, str]) -> list[list[str]]:
    """Predicted tag per word of each example; a truncated word is predicted `O` (and counted in the report)."""
    return [[id2label[label] if label >= 0 else "O" for label, _ in words] for words in word_predictions(logits, encoded)]
