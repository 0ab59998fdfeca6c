"""Score a model on encoded examples: the one path used by training-time evaluation and the evaluate stage."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import PreTrainedModel

from nlpstd.data.encode import Encoded
from nlpstd.evaluate.metrics import classification_metrics, ner_metrics, span_metrics
from nlpstd.inference import predict_logits, torch_forward, word_predictions
from nlpstd.spans import IobRepair, char_spans, repair_tags


@dataclass
class Scored:
    metrics: dict
    predictions: list  # token tasks: tags per word (IOB2-repaired); sequence tasks: one label per example
    gold: list
    word_scores: list = field(default_factory=list)  # token tasks: probability of each word's predicted tag
    gold_spans: list = field(default_factory=list)  # span data: gold (start, end, label) per example, as given
    pred_spans: list = field(default_factory=list)  # span data: predicted (start, end, label) per example


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
    iob_repair: IobRepair = "start",
) -> Scored:
    """Score a torch model on the encoded examples (other backends: `predict_logits` then `score_logits`)."""
    logits = predict_logits(torch_forward(model, device, precision), encoded.features, batch_size, pad_id, desc)
    return score_logits(logits, encoded, task, labels, iob_repair)


def score_logits(logits: list[np.ndarray], encoded: Encoded, task: str, labels: list[str],
                 iob_repair: IobRepair = "start") -> Scored:
    """Metrics from logits already computed: the predictions are the ones `predict` would return. Predicted
    tags are IOB2-repaired as the span decoder repairs them (gold tags never are), so the scores count
    exactly the entities `predict` returns. Span data is scored against its gold spans as given."""
    id2label = dict(enumerate(labels))
    if task == "token-classification":
        per_word = word_predictions(logits, encoded)  # a truncated word: (-1, 0.0), predicted O
        pred = [repair_tags([id2label[label] if label >= 0 else "O" for label, _ in words], iob_repair) for words in per_word]
        probs = [[prob for _, prob in words] for words in per_word]
        if all(spans is None for spans in encoded.spans):  # CoNLL words: seqeval, as CoNLL scores them
            return Scored(ner_metrics(encoded.tags, pred), pred, encoded.tags, probs)
        gold_spans = [_gold_spans(spans, offsets, tags) for spans, offsets, tags in zip(encoded.spans, encoded.offsets, encoded.tags)]
        pred_spans = [char_spans(offsets, tags) for offsets, tags in zip(encoded.offsets, pred)]
        return Scored(span_metrics(gold_spans, pred_spans, encoded.tags, pred), pred, encoded.tags, probs, gold_spans, pred_spans)
    pred = [labels[int(row.argmax())] for row in logits]
    gold = [labels[f["labels"]] for f in encoded.features]
    return Scored(classification_metrics(gold, pred, labels), pred, gold)


def subset_metrics(scored: Scored, keep: list[int], task: str, labels: list[str]) -> dict:
    """Metrics over the examples at `keep` only, from the predictions already made (no second pass
    through the model): e.g. a test split without the examples train also holds."""
    gold = [scored.gold[i] for i in keep]
    pred = [scored.predictions[i] for i in keep]
    if task == "token-classification" and scored.gold_spans:
        return span_metrics([scored.gold_spans[i] for i in keep], [scored.pred_spans[i] for i in keep], gold, pred)
    if task == "token-classification":
        return ner_metrics(gold, pred)
    return classification_metrics(gold, pred, labels)


def _gold_spans(spans: list | None, offsets: list[tuple[int, int]], tags: list[str]) -> list[tuple[int, int, str]]:
    """An example's gold entities in characters: its spans as given, or, for CoNLL words mixed into
    span data, the entities of its tags located in its joined words."""
    if spans is None:
        return char_spans(offsets, tags)
    return [(int(start), int(end), str(label)) for start, end, label in spans]
