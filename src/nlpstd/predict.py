"""Predictions from an exported model, torch or ONNX: entities with character offsets, or a label with scores."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm.auto import tqdm

from nlpstd.data.encode import encode_tokens, words_and_offsets
from nlpstd.errors import NlpstdError
from nlpstd.export.onnx import MODEL_FILE, OnnxForward
from nlpstd.inference import predict_logits, softmax, torch_forward, word_predictions
from nlpstd.models.build import load_model, load_tokenizer
from nlpstd.spans import decode_entities

TASK_OF_ARCHITECTURE = {"ForTokenClassification": "token-classification", "ForSequenceClassification": "sequence-classification"}


def task_of(model_dir: Path) -> str:
    """The task, read from the saved config's architecture (the folder describes itself)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    for arch in config.get("architectures") or []:
        for suffix, task in TASK_OF_ARCHITECTURE.items():
            if arch.endswith(suffix):
                return task
    raise ValueError(f"{model_dir}: config.json names no token or sequence classification architecture")


def locate(path: Path) -> tuple[Path, Path | None]:
    """(folder with config and tokenizer, ONNX file or None for the torch weights)."""
    if path.is_file() and path.suffix == ".onnx":
        return path.parent, path
    if path.is_dir() and (path / "config.json").is_file():
        has_weights = any((path / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json"))
        return (path, None) if has_weights or not (path / MODEL_FILE).is_file() else (path, path / MODEL_FILE)
    raise NlpstdError(f"{path}: not a model (expected an exported folder with config.json, or a .onnx file beside one); "
                      "pass e.g. runs/<standard>/export/model or runs/<standard>/export/model/onnx-int8/model.onnx")


SPLITS = ("tokenizer", "whitespace")


def split_words(tokenizer, text: str, split: str = "tokenizer") -> list[tuple[str, tuple[int, int]]]:
    """(word, character offsets) of a text, split as `split` says (see `Predictor.__call__`)."""
    if split == "whitespace":
        return [(m.group(), m.span()) for m in re.finditer(r"\S+", text)]
    if split == "tokenizer":
        return words_and_offsets(tokenizer, text)
    raise NlpstdError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")


class Predictor:
    """Loads a model once, torch or ONNX; call it with a list of texts.

    `model_path` is an exported folder (the Hugging Face model), an ONNX file, or a folder holding
    `model.onnx`; the tokenizer and label map are read from the folder (the file's folder for ONNX).
    """

    def __init__(self, model_path: str | Path, batch_size: int = 32, device: str = "cpu", threads: int | None = None):
        self.model_dir, onnx_file = locate(Path(model_path))
        info_path = self.model_dir / "nlpstd.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        config = json.loads((self.model_dir / "config.json").read_text())
        self.task = info.get("task") or task_of(self.model_dir)
        self.iob_repair = info.get("iob_repair", "start")  # the standard's evaluate.iob_repair; older exports: start
        self.tokenizer = load_tokenizer(str(self.model_dir))
        self.max_length = info.get("max_length") or min(self.tokenizer.model_max_length, 512)
        self.stride = info.get("stride")  # long texts: windows as in training (data.stride), else truncation
        self.tokenizer.truncation_side = info.get("truncation_side", "right")
        self.batch_size = batch_size
        self.id2label = {int(k): v for k, v in config["id2label"].items()}
        if onnx_file is not None:
            self.backend, self.forward = "onnx", OnnxForward(onnx_file, threads)
        else:
            model = load_model(self.model_dir, self.task).to(device)
            self.backend, self.forward = "torch", torch_forward(model, torch.device(device))

    def __call__(self, texts: list[str], split: str = "tokenizer") -> list[dict]:
        """Labels or entities per text. For entities, `split` says where words end: `tokenizer` splits
        at spaces and punctuation as the tokenizer does; `whitespace` takes text already split into
        words (CoNLL-style, e.g. "U.S.-based" one word) at its spaces, so those words are labelled."""
        if self.task == "token-classification":
            return self._entities(texts, split)
        return self._labels(texts)

    def _entities(self, texts: list[str], split: str) -> list[dict]:
        pieces = [split_words(self.tokenizer, text, split) for text in texts]
        records = [{"tokens": [w for w, _ in p], "tags": ["O"] * len(p)} for p in pieces]
        encoded = encode_tokens(self.tokenizer, records, ["O"], self.max_length, stride=self.stride)
        logits = predict_logits(self.forward, encoded.features, self.batch_size, pad_id=self.tokenizer.pad_token_id)
        results = []
        for text, piece, per_word in zip(texts, pieces, word_predictions(logits, encoded)):
            tags = [self.id2label[label] if label >= 0 else "O" for label, _ in per_word]
            entities = decode_entities(text, [o for _, o in piece], tags, [p for _, p in per_word], self.iob_repair)
            results.append({"text": text, "entities": entities})
        return results

    def _labels(self, texts: list[str]) -> list[dict]:
        batch = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        features = [{"input_ids": ids, "labels": -100} for ids in batch["input_ids"]]
        for feature, types in zip(features, batch.get("token_type_ids") or []):
            feature["token_type_ids"] = types
        logits = predict_logits(self.forward, features, self.batch_size, pad_id=self.tokenizer.pad_token_id)
        results = []
        for text, row in zip(texts, logits):
            probs = softmax(row)
            best = int(probs.argmax())
            scores = {self.id2label[i]: round(float(p), 4) for i, p in enumerate(probs)}
            results.append({"text": text, "label": self.id2label[best], "score": round(float(probs[best]), 4), "scores": scores})
        return results


def read_texts(path: Path) -> list[dict]:
    """Records to label from a file: JSON Lines (`{"text": ...}`; other fields such as an id come back
    with the prediction) when it ends in .jsonl, else plain text, one per line. Blank lines are skipped."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            if path.suffix != ".jsonl":
                records.append({"text": line.rstrip("\n")})
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise NlpstdError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
            if isinstance(record, str):
                record = {"text": record}
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise NlpstdError(f"{path}:{number}: text: expected an object with a string \"text\" field")
            records.append(record)
    return records


def predict_records(predictor: Predictor, records: list[dict], chunk: int = 1024, progress: bool = True,
                    split: str = "tokenizer") -> Iterator[dict]:
    """Predictions in input order, `chunk` texts at a time (each cut into batches), so output streams
    and memory stays flat however long the file."""
    with tqdm(total=len(records), unit="text", desc="predict", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(records), chunk):
            part = records[start : start + chunk]
            for record, result in zip(part, predictor([r["text"] for r in part], split)):
                yield {**{k: v for k, v in record.items() if k != "text"}, **result}
            bar.update(len(part))
