"""Score a model on encoded examples: the one path used by training-time evaluation and the evaluate stage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel

from nlpstd.data.encode import Encoded
from nlpstd.evaluate.metrics import classification_metrics, ner_metrics
from nlpstd.inference import predict_logits, torch_forward, word_tags


@dataclass
class Scored:
    metrics: dict
    predictions: list  # token tasks: tags per word; sequence tasks: one label per example
    gold: list


def score(
    model: PreTrainedModel,
    encoded: Encoded,
    task: str,
    labels: list[str],
    *,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    pad_id: int = 0,
    desc: str | None = None,
) -> Scored:
    """Score a torch model on the encoded examples (other backends: `predict_logits` then `score_logits`)."""
    logits = predict_logits(torch_forward(model, device, precision), encoded.features, batch_size, pad_id, desc)
    return score_logits(logits, encoded, task, labels)


def score_logits(logits: list[np.ndarray], encoded: Encoded, task: str, labels: list[str]) -> Scored:
    """Metrics from logits already computed: the predictions are the ones `predict` would return."""
    id2label = dict(enumerate(labels))
    if task == "token-classification":
        pred = [
            word_tags(row, f["word_ids"], len(words), id2label)
            for row, f, words in zip(logits, encoded.features, encoded.words)
        ]
        return Scored(ner_metrics(encoded.tags, pred), pred, encoded.tags)
    pred = [labels[int(row.argmax())] for row in logits]
    gold = [labels[f["labels"]] for f in encoded.features]
    return Scored(classification_metrics(gold, pred, labels), pred, gold)
