"""Predictions from an exported model folder: entities with character offsets, or a label with scores."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from nlpstd.data.encode import encode_tokens, words_and_offsets
from nlpstd.errors import NlpstdError
from nlpstd.inference import predict_logits, softmax, word_predictions
from nlpstd.models.build import load_model, load_tokenizer

TASK_OF_ARCHITECTURE = {"ForTokenClassification": "token-classification", "ForSequenceClassification": "sequence-classification"}


def task_of(model_dir: Path) -> str:
    """The task, read from the saved config's architecture (the folder describes itself)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    for arch in config.get("architectures") or []:
        for suffix, task in TASK_OF_ARCHITECTURE.items():
            if arch.endswith(suffix):
                return task
    raise ValueError(f"{model_dir}: config.json names no token or sequence classification architecture")


def decode_entities(text: str, offsets: list[tuple[int, int]], tags: list[str], probs: list[float]) -> list[dict]:
    """IOB2 word tags -> entity spans; a stray `I-X` starts a new entity rather than being dropped."""
    entities: list[dict] = []
    current: dict | None = None
    for (start, end), tag, prob in zip(offsets, tags, probs):
        kind = tag[2:] if tag != "O" else None
        continues = current is not None and tag.startswith("I-") and kind == current["label"]
        if continues:
            current["end"] = end
            current["_probs"].append(prob)
            continue
        if current:
            entities.append(current)
        current = {"label": kind, "start": start, "end": end, "_probs": [prob]} if kind else None
    if current:
        entities.append(current)
    for entity in entities:
        scores = entity.pop("_probs")
        entity["text"] = text[entity["start"] : entity["end"]]
        entity["score"] = round(sum(scores) / len(scores), 4)
    return [{k: e[k] for k in ("text", "label", "start", "end", "score")} for e in entities]


class Predictor:
    """Loads a model folder once; call it with a list of texts."""

    def __init__(self, model_dir: str | Path, batch_size: int = 32, device: str = "cpu"):
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise NlpstdError(f"{self.model_dir}: not a model folder (no config.json); pass e.g. runs/<standard>/export/model")
        info_path = self.model_dir / "nlpstd.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        self.task = info.get("task") or task_of(self.model_dir)
        self.tokenizer = load_tokenizer(str(self.model_dir))
        self.max_length = info.get("max_length") or min(self.tokenizer.model_max_length, 512)
        self.device, self.batch_size = torch.device(device), batch_size
        self.model = load_model(self.model_dir, self.task).to(self.device).eval()
        self.id2label = {int(k): v for k, v in self.model.config.id2label.items()}

    def __call__(self, texts: list[str]) -> list[dict]:
        if self.task == "token-classification":
            return self._entities(texts)
        return self._labels(texts)

    def _entities(self, texts: list[str]) -> list[dict]:
        pieces = [words_and_offsets(self.tokenizer, text) for text in texts]
        records = [{"tokens": [w for w, _ in p], "tags": ["O"] * len(p)} for p in pieces]
        encoded = encode_tokens(self.tokenizer, records, ["O"], self.max_length)
        logits = predict_logits(self.model, encoded.features, self.batch_size, self.device, pad_id=self.tokenizer.pad_token_id)
        results = []
        for text, piece, row, feature in zip(texts, pieces, logits, encoded.features):
            per_word = word_predictions(row, feature["word_ids"], len(piece))
            tags = [self.id2label[label] if label >= 0 else "O" for label, _ in per_word]
            entities = decode_entities(text, [o for _, o in piece], tags, [p for _, p in per_word])
            results.append({"text": text, "entities": entities})
        return results

    def _labels(self, texts: list[str]) -> list[dict]:
        batch = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        features = [{"input_ids": ids, "labels": -100} for ids in batch["input_ids"]]
        for feature, types in zip(features, batch.get("token_type_ids") or []):
            feature["token_type_ids"] = types
        logits = predict_logits(self.model, features, self.batch_size, self.device, pad_id=self.tokenizer.pad_token_id)
        results = []
        for text, row in zip(texts, logits):
            probs = softmax(row)
            best = int(probs.argmax())
            scores = {self.id2label[i]: round(float(p), 4) for i, p in enumerate(probs)}
            results.append({"text": text, "label": self.id2label[best], "score": round(float(probs[best]), 4), "scores": scores})
        return results
