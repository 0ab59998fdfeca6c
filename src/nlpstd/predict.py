"""Predictions from an exported model, torch or ONNX: entities with character offsets, or a label with scores."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from tqdm.auto import tqdm

from nlpstd import jsonio
from nlpstd.data.encode import encode_tokens, words_and_offsets
from nlpstd.errors import LocatedError, NlpstdError
from nlpstd.export.onnx import MODEL_FILE, OnnxForward
from nlpstd.fsutil import atomic_file
from nlpstd.inference import Forward, predict_logits, softmax, torch_forward, word_predictions
from nlpstd.models.build import load_model, load_tokenizer
from nlpstd.models.folder import (
    CONFIG,
    TOKENIZER,
    WEIGHTS,
    WEIGHTS_INDEX,
    check_model_folder,
    first_line,
    read_config,
    read_model_info,
    regular_file_size,
    task_of,
)
from nlpstd.spans import WordUnit, decode_entities

ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what OnnxForward feeds, all int64


def locate(path: Path) -> tuple[Path, Path | None]:
    """(folder with config and tokenizer, ONNX file or None for the torch weights)."""
    if not os.path.lexists(path):
        raise NlpstdError(f"model: {path}: no such file or folder")
    if path.is_dir() and os.path.lexists(path / CONFIG):
        has_weights = any(os.path.lexists(path / name) for name in (WEIGHTS, WEIGHTS_INDEX))
        return (path, None) if has_weights or not os.path.lexists(path / MODEL_FILE) else (path, path / MODEL_FILE)
    if path.suffix == ".onnx" and not path.is_dir():
        return path.parent, path
    raise NlpstdError(f"{path}: not a model (expected an exported folder with config.json, or a .onnx file beside one); "
                      "pass e.g. runs/<standard>/export/model or runs/<standard>/export/model/onnx-int8/model.onnx")


SPLITS = ("tokenizer", "whitespace")


def split_words(tokenizer, text: str, split: str = "tokenizer", unit: WordUnit = "word") -> list[tuple[str, tuple[int, int]]]:
    """(word, character offsets) of a text, split as `split` says (see `Predictor.__call__`); `tokenizer`
    cuts it into the model's `unit`s (its standard's data.word_unit)."""
    if split == "whitespace":
        return [(m.group(), m.span()) for m in re.finditer(r"\S+", text)]
    if split == "tokenizer":
        return words_and_offsets(tokenizer, text, unit)
    raise NlpstdError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")


class Predictor:
    """Loads a model once, torch or ONNX; call it with a list of texts.

    `model_path` is an exported folder (the Hugging Face model), an ONNX file, or a folder holding
    `model.onnx`; the tokenizer and label map are read from the folder (the file's folder for ONNX).
    """

    def __init__(self, model_path: str | Path, batch_size: int = 32, device: str = "cpu", threads: int | None = None):
        # -- the folder, checked as data before anything loads it
        self.model_path, (self.model_dir, onnx_file) = str(model_path), locate(Path(model_path))
        config = read_config(self.model_dir)
        info = read_model_info(self.model_dir, config)
        self.task = info.get("task") or task_of(config, self.model_dir / CONFIG)
        config = check_model_folder(self.model_dir, self.task, weights=onnx_file is None)  # the head of that task
        self.iob_repair = info.get("iob_repair", "start")  # the standard's evaluate.iob_repair; older exports: start
        self.word_unit = info.get("word_unit", "word")  # the standard's data.word_unit: how text was cut for training
        self.id2label = {int(k): v for k, v in config["id2label"].items()}

        # -- tokenizer: texts are cut or windowed as in training
        self.tokenizer = load_tokenizer(str(self.model_dir))
        _check_tokenizer_fits(self.model_dir, config, self.tokenizer, self.task)
        positions = config.get("max_position_embeddings")
        positions = positions if isinstance(positions, int) and positions > 0 else 512
        self.max_length = info.get("max_length") or min(self.tokenizer.model_max_length, 512, positions)
        self.stride = info.get("stride")  # long texts: windows as in training (data.stride), else truncation
        self.tokenizer.truncation_side = info.get("truncation_side", "right")
        self.batch_size = batch_size

        # -- model
        self.device, self.model = torch.device(device), None  # the torch model, kept for explanations
        if onnx_file is not None:
            self.backend, self.forward = "onnx", onnx_forward(onnx_file, threads, self.task, len(self.id2label))
        else:
            self.model = load_model(self.model_dir, self.task).to(device)
            self.backend, self.forward = "torch", torch_forward(self.model, self.device)

    def __call__(self, texts: list[str], split: str = "tokenizer", explain_steps: int | None = None) -> list[dict]:
        """Labels or entities per text. For entities, `split` says where words end: `tokenizer` splits
        as training did (`words_and_offsets`: spaces, punctuation, each CJK ideograph, invisible
        characters left out; every character for a model trained on characters), so entity offsets slice
        the text given; `whitespace` takes text already split into
        words (CoNLL-style, e.g. "U.S.-based" one word) at its spaces, so those words are labelled.
        With `explain_steps`, each label (each entity, at its first word) carries `attributions`: the
        words' integrated gradients over that many steps (`nlpstd.evaluate.explain`), torch models only."""
        texts = check_texts(texts)  # the pyfunc model and library callers get here without the CLI's checks
        if explain_steps is not None and self.model is None:
            raise explain_needs_torch(self.model_path)
        if self.task == "token-classification":
            return self._entities(texts, split, explain_steps)
        return self._labels(texts, explain_steps)

    def _entities(self, texts: list[str], split: str, explain_steps: int | None = None) -> list[dict]:
        pieces = [split_words(self.tokenizer, text, split, self.word_unit) for text in texts]
        records = [{"tokens": [w for w, _ in p], "tags": ["O"] * len(p)} for p in pieces]
        encoded = encode_tokens(self.tokenizer, records, ["O"], self.max_length, stride=self.stride)
        logits = predict_logits(self.forward, encoded.features, self.batch_size, pad_id=self.tokenizer.pad_token_id)
        results = []
        for text, piece, per_word in zip(texts, pieces, word_predictions(logits, encoded)):
            tags = [self.id2label[label] if label >= 0 else "O" for label, _ in per_word]
            entities = decode_entities(text, [o for _, o in piece], tags, [p for _, p in per_word], self.iob_repair)
            for entity in entities if explain_steps else ():
                entity["attributions"] = self._explain([w for w, _ in piece], explain_steps, entity["words"][0])
            results.append({"text": text, "entities": entities})
        return results

    def _explain(self, text_or_words: str | list[str], steps: int, word: int | None = None) -> dict:
        """Word attributions of a text's predicted label, or (`word` given) of the label at `words[word]`."""
        from nlpstd.evaluate.explain import explain_text, explain_word

        settings = {"id2label": self.id2label, "steps": steps, "max_length": self.max_length, "device": self.device}
        if word is None:
            return explain_text(self.model, self.tokenizer, text_or_words, **settings).to_dict()
        return explain_word(self.model, self.tokenizer, text_or_words, word, stride=self.stride, **settings).to_dict()

    def _labels(self, texts: list[str], explain_steps: int | None = None) -> list[dict]:
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
            if explain_steps:
                results[-1]["attributions"] = self._explain(text, explain_steps)
        return results


def _check_tokenizer_fits(folder: Path, config: dict, tokenizer, task: str) -> None:
    """A token id past the embeddings, or no pre-tokenizer to split words, fails deep inside a forward
    pass; both are visible once the tokenizer is loaded."""
    vocab_size = config.get("vocab_size")
    if isinstance(vocab_size, int) and len(tokenizer) > vocab_size:
        raise LocatedError(folder / CONFIG, None, "vocab_size", f"{vocab_size}, but the tokenizer has {len(tokenizer)} "
                           "tokens: they belong to different models")
    if task == "token-classification" and tokenizer.backend_tokenizer.pre_tokenizer is None:
        raise LocatedError(folder / TOKENIZER, None, "pre_tokenizer", "missing: entities are found in words, which it splits")


def explain_needs_torch(model: str) -> NlpstdError:
    """The refusal of `--explain` for an ONNX model: attributions need gradients, which a graph does not give."""
    return NlpstdError(f"--explain: needs the torch weights, and {model} is an ONNX model (a graph gives no gradients): "
                       "pass the exported folder itself, e.g. runs/<standard>/export/model")


def onnx_forward(path: Path, threads: int | None, task: str, labels: int) -> Forward:
    """An ONNX Runtime session over `path`, refused in one line when Runtime cannot load the file, when
    it asks for inputs nlpstd does not feed, or when its logits are not one row of `labels` per token
    (NER) or per text; a failure on a batch is one line too."""
    regular_file_size(path)  # a pipe named model.onnx would block the reader
    try:
        forward = OnnxForward(path, threads)
    except Exception as exc:  # onnxruntime's error types derive from Exception alone
        raise LocatedError(path, None, None, f"ONNX Runtime cannot load it: {first_line(exc)}") from None
    session = forward.session
    for graph_input in session.get_inputs():
        if graph_input.name not in ONNX_INPUTS or graph_input.type != "tensor(int64)":
            raise LocatedError(path, None, "inputs", f"{graph_input.name} ({graph_input.type}): nlpstd feeds "
                               f"{', '.join(ONNX_INPUTS)} as int64")
    if "input_ids" not in forward.input_names:
        raise LocatedError(path, None, "inputs", "no input_ids: not a model of token ids")
    shape, rank = session.get_outputs()[0].shape, 3 if task == "token-classification" else 2
    if len(shape) != rank or (isinstance(shape[-1], int) and shape[-1] != labels):
        raise LocatedError(path, None, "outputs", f"logits of shape {shape}; a {task} model of {labels} labels gives "
                           f"{['batch', 'sequence', labels][3 - rank:]}")

    def checked(batch: dict[str, torch.Tensor]):
        try:
            return forward(batch)
        except Exception as exc:  # e.g. a graph that loads but fails on real shapes
            raise LocatedError(path, None, None, f"ONNX Runtime failed on a batch: {first_line(exc)}") from None

    return checked


def check_texts(texts: Iterable[str]) -> list[str]:
    """Texts that can be tokenized and printed: a lone surrogate (from a JSON `\\ud800` escape, or
    bytes of a command-line argument that are not UTF-8) is refused here, not in the tokenizer."""
    checked = []
    for number, text in enumerate(texts, 1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NlpstdError(f"texts: text {number}: {_surrogate(text, exc)}") from None
        checked.append(text)
    return checked


def _surrogate(text: str, exc: UnicodeEncodeError) -> str:
    """What the lone surrogate at `exc.start` was: a byte Python could not decode (an argument), or
    half of a UTF-16 pair (a JSON escape)."""
    code = ord(text[exc.start])
    if 0xDC80 <= code <= 0xDCFF:  # how Python keeps an undecodable byte of a command-line argument
        return f"byte 0x{code - 0xDC00:02x} at character {exc.start + 1} is not UTF-8"
    return f"{text[exc.start]!r} at character {exc.start + 1} is half of a UTF-16 pair, not a character"


def read_texts(path: Path) -> list[dict]:
    """Records to label from a file: JSON Lines (`{"text": ...}`; other fields such as an id come back
    with the prediction) when it ends in .jsonl, else plain text, one per line. Blank lines are skipped.
    Every fault is located at its line; a pipe or device is refused before it is opened (it would block)."""
    try:
        regular_file_size(path)
        data = path.read_bytes()
    except LocatedError as exc:
        raise NlpstdError(f"--file: {path}: {exc.message}") from None
    except OSError as exc:
        raise NlpstdError(f"--file: {path}: cannot be read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark is not part of the first text
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LocatedError(path, line, "text", f"not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None
    records = []
    for number, line in enumerate(io.StringIO(text, newline=None), 1):  # newlines as open() reads them
        if line.strip():
            records.append(_record(path, number, line.rstrip("\n")))
    return records


def _record(path: Path, number: int, line: str) -> dict:
    """One line of the file as a record with a string `text`."""
    if path.suffix != ".jsonl":
        return {"text": line}
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise LocatedError(path, number, "text", f"not a JSON object ({exc.msg})") from None
    if isinstance(record, str):
        record = {"text": record}
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise LocatedError(path, number, "text", "expected an object with a string \"text\" field")
    try:
        record["text"].encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocatedError(path, number, "text", _surrogate(record["text"], exc)) from None
    return record


def check_output(path: Path) -> None:
    """`--output` names a file to create or replace in an existing folder; checked before the model
    loads, so a mistyped path costs nothing."""
    if path.is_dir():
        raise NlpstdError(f"--output: {path} is a folder; name a file in it, e.g. {path / 'predictions.jsonl'}")
    if not path.parent.is_dir():
        raise NlpstdError(f"--output: no folder {path.parent} to write {path.name} in")


def write_jsonl(results: Iterable[dict], path: Path) -> int:
    """Writes one JSON object per line to `path`, which appears only when complete, so a reader never
    sees half a file; whatever stops it (an error, ctrl-C) leaves no partial file behind.
    Returns the number of lines."""
    count = 0
    try:
        with atomic_file(path) as out:
            for result in results:
                out.write((jsonio.dumps(result) + "\n").encode("utf-8"))
                count += 1
    except OSError as exc:
        raise NlpstdError(f"--output: cannot write {path} ({exc.strerror})") from None
    return count


def predict_records(predictor: Predictor, records: list[dict], chunk: int = 1024, progress: bool = True,
                    split: str = "tokenizer", explain_steps: int | None = None) -> Iterator[dict]:
    """Predictions in input order, `chunk` texts at a time (each cut into batches), so output streams
    and memory stays flat however long the file; with `explain_steps`, word attributions too."""
    with tqdm(total=len(records), unit="text", desc="predict", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(records), chunk):
            part = records[start : start + chunk]
            for record, result in zip(part, predictor([r["text"] for r in part], split, explain_steps)):
                yield {**{k: v for k, v in record.items() if k != "text"}, **result}
            bar.update(len(part))


def discard_stdout() -> None:
    """Points stdout at /dev/null once its reader has gone (`nlpstd predict ... | head`), so Python's
    flush at exit does not fail on the closed pipe a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
