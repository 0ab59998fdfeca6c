"""The exported folder is a plain Hugging Face model, and `nlpstd predict` agrees with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

from nlpstd.cli import main
from nlpstd.predict import Predictor, decode_entities
from nlpstd.runner import run_standard

TEXTS = ["Maria Smith flew to Tokyo for Siemens on day 3 .", "Anna Smith flew to Oslo .", "nothing here"]


@pytest.fixture
def ner_export(ner_standard: Path, tmp_path: Path) -> Path:
    run_standard(ner_standard, tmp_path / "out", tracking=False)
    return tmp_path / "out" / "export" / "model"


def test_export_folder_carries_label_map_and_model_card(ner_export: Path):
    config = json.loads((ner_export / "config.json").read_text())
    assert config["id2label"]["0"] == "O" and "B-PER" in config["label2id"]
    card = (ner_export / "README.md").read_text()
    assert "# tiny-ner" in card and "Data fingerprint" in card and "nlpstd run" in card
    assert not list(ner_export.glob("*.bin")) and not list(ner_export.glob("*.pkl")), "no pickle in the export"


def test_transformers_loads_the_export_and_agrees_with_nlpstd_predict(ner_export: Path):
    model = AutoModelForTokenClassification.from_pretrained(ner_export).eval()
    tokenizer = AutoTokenizer.from_pretrained(ner_export)
    ours = Predictor(ner_export)(TEXTS)
    for text, result in zip(TEXTS, ours):
        # the plain transformers way: word-split input, label of each word's first sub-word
        words = [w for w, _ in tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)]
        offsets = [o for _, o in tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)]
        encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            probs = model(**encoded).logits[0].softmax(-1)
        tags, scores, seen = [], [], set()
        for position, word in enumerate(encoded.word_ids(0)):
            if word is not None and word not in seen:
                seen.add(word)
                tags.append(model.config.id2label[int(probs[position].argmax())])
                scores.append(float(probs[position].max()))
        expected = decode_entities(text, offsets, tags, scores)
        assert [(e["label"], e["start"], e["end"]) for e in result["entities"]] == [(e["label"], e["start"], e["end"]) for e in expected]
    assert any(result["entities"] for result in ours), "the tiny model finds some entity"


def test_predict_command_prints_entities_as_json(ner_export: Path, capsys):
    assert main(["predict", str(ner_export), TEXTS[0], "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[0])
    assert result["text"] == TEXTS[0]
    for entity in result["entities"]:
        assert TEXTS[0][entity["start"] : entity["end"]] == entity["text"]


def test_sequence_export_predicts_the_same_label_as_transformers(cls_standard: Path, tmp_path: Path):
    run_standard(cls_standard, tmp_path / "out", tracking=False)
    folder = tmp_path / "out" / "export" / "model"
    texts = ["a great film , truly great", "a dull film , truly dull"]
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    expected = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    assert [r["label"] for r in Predictor(folder)(texts)] == expected


def test_decoder_joins_inside_tags_and_splits_on_type_change():
    text = "Peter Smith met Anna in Paris"
    offsets = [(0, 5), (6, 11), (12, 15), (16, 20), (21, 23), (24, 29)]
    tags = ["B-PER", "I-PER", "O", "I-PER", "O", "B-LOC"]
    entities = decode_entities(text, offsets, tags, [0.9] * 6)
    assert [(e["text"], e["label"]) for e in entities] == [("Peter Smith", "PER"), ("Anna", "PER"), ("Paris", "LOC")]


def test_predict_on_a_folder_without_a_model_is_a_clear_error(tmp_path: Path, capsys):
    assert main(["predict", str(tmp_path), "some text"]) == 2
    assert "not a model (expected an exported folder with config.json" in capsys.readouterr().err


@pytest.fixture
def onnx_export(ner_standard: Path, tmp_path: Path) -> Path:
    """The tiny NER model exported as a Hugging Face folder with an ONNX graph in `onnx/`."""
    ner_standard.write_text(ner_standard.read_text() + "export: {formats: [safetensors, onnx]}\n")
    run_standard(ner_standard, tmp_path / "out", tracking=False)
    return tmp_path / "out" / "export" / "model"


def entities_of(path: Path) -> list[list[tuple]]:
    return [[(e["label"], e["start"], e["end"]) for e in json.loads(line)["entities"]] for line in path.read_text().splitlines()]


def test_predict_with_onnx_gives_the_torch_labels_on_10000_lines(onnx_export: Path, tmp_path: Path):
    names, places = ["Maria", "John", "Sofia", "Lukas", "Anna"], ["Tokyo", "Oslo", "Lima", "Paris"]
    lines = [json.dumps({"id": i, "text": f"{names[i % 5]} Smith flew to {places[i % 4]} on day {i} ."}) for i in range(10_000)]
    (tmp_path / "texts.jsonl").write_text("\n".join(lines) + "\n")
    for name, model in (("torch", onnx_export), ("onnx", onnx_export / "onnx" / "model.onnx")):
        assert main(["predict", str(model), "--file", str(tmp_path / "texts.jsonl"), "--output", str(tmp_path / f"{name}.jsonl"), "--batch-size", "64"]) == 0
    torch_rows = (tmp_path / "torch.jsonl").read_text().splitlines()
    assert len(torch_rows) == 10_000 and json.loads(torch_rows[9_999])["id"] == 9_999, "input order and ids kept"
    assert entities_of(tmp_path / "onnx.jsonl") == entities_of(tmp_path / "torch.jsonl")
    assert any(entities_of(tmp_path / "torch.jsonl")), "the model finds entities to compare"


def test_predict_reads_plain_text_one_line_per_text(onnx_export: Path, tmp_path: Path):
    (tmp_path / "texts.txt").write_text("Anna Smith flew to Oslo .\n\nJohn Smith flew to Lima .\n")
    assert main(["predict", str(onnx_export / "onnx"), "--file", str(tmp_path / "texts.txt"), "--output", str(tmp_path / "out.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["Anna Smith flew to Oslo .", "John Smith flew to Lima ."], "a folder with model.onnx is read as ONNX"


def test_a_bad_jsonl_line_is_named_and_no_output_is_written(ner_export: Path, tmp_path: Path, capsys):
    (tmp_path / "texts.jsonl").write_text('{"text": "Anna Smith"}\n{"text": 3}\n')
    assert main(["predict", str(ner_export), "--file", str(tmp_path / "texts.jsonl"), "--output", str(tmp_path / "out.jsonl")]) == 2
    assert f"{tmp_path / 'texts.jsonl'}:2: text:" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()
