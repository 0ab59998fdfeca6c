"""The exported folder is a plain Hugging Face model, and `nlpstd predict` agrees with it."""

from __future__ import annotations

import json
import shutil
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
        output = str(tmp_path / f"{name}.jsonl")
        assert main(["predict", str(model), "--file", str(tmp_path / "texts.jsonl"), "--output", output, "--batch-size", "64"]) == 0
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


# ---------------------------------------------------------------------------------------
# The command line and the folder checks, on a tiny fine-tuned folder built in seconds


@pytest.fixture
def tiny_ner(tmp_path: Path) -> Path:
    """A fine-tuned NER folder as export writes it (tiny random BERT), copied so a test may change it."""
    from tests.bad_input.model_folders import TOKEN, exported

    return Path(shutil.copytree(exported(TOKEN), tmp_path / "model"))


def printed_texts(out: str) -> list[str]:
    return [json.loads(line)["text"] for line in out.splitlines()]


def test_predict_flags_may_come_before_between_or_after_the_texts(tiny_ner: Path, capsys):
    for argv in (["--json", "Anna flew", "Peter left"], ["Anna flew", "--json", "Peter left"],
                 ["Anna flew", "Peter left", "--json"], ["--batch-size", "1", "Anna flew", "--json", "Peter left"]):
        assert main(["predict", str(tiny_ner), *argv]) == 0
        assert printed_texts(capsys.readouterr().out) == ["Anna flew", "Peter left"], argv


def test_predict_takes_a_text_that_looks_like_a_flag_after_a_double_dash(tiny_ner: Path, capsys):
    assert main(["predict", str(tiny_ner), "--json", "--", "--not-a-flag"]) == 0
    assert printed_texts(capsys.readouterr().out) == ["--not-a-flag"]


def test_predict_help_still_prints_the_whole_usage(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["predict", "--help"])
    assert exit.value.code == 0
    assert "usage: nlpstd predict" in capsys.readouterr().out


def test_predict_output_is_complete_and_leaves_no_partial_file(tiny_ner: Path, tmp_path: Path, capsys):
    (tmp_path / "texts.jsonl").write_text("\ufeff" + "".join(json.dumps({"id": i, "text": f"Anna {i}"}) + "\n" for i in range(5)),
                                          encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(tiny_ner), "--file", str(tmp_path / "texts.jsonl"), "--output", str(out)]) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [0, 1, 2, 3, 4], "a byte-order mark is no text"
    assert "5 predictions (torch)" in capsys.readouterr().err
    assert not Path(f"{out}.partial").exists()


def test_predict_of_texts_prints_nothing_on_stderr(tiny_ner: Path, capsys):
    assert main(["predict", str(tiny_ner), "Anna flew to Oslo ."]) == 0
    assert capsys.readouterr().err == "", "no loading bar or load report from transformers"


@pytest.mark.parametrize("family", ["distilbert", "electra"])
def test_folders_of_every_supported_family_predict(family: str, tmp_path: Path):
    from transformers import AutoConfig, AutoModelForTokenClassification

    from nlpstd.models.folder import FAMILIES
    from tests.bad_input.model_folders import LABELS, TOKEN, exported

    assert family in FAMILIES
    folder = Path(shutil.copytree(exported(TOKEN), tmp_path / family))
    bert = json.loads((folder / "config.json").read_text())
    sizes = {"distilbert": {"dim": 32, "n_layers": 1, "n_heads": 2, "hidden_dim": 64},
             "electra": {"embedding_size": 32, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                         "intermediate_size": 64}}[family]
    labels = LABELS[TOKEN]
    config = AutoConfig.for_model(family, vocab_size=bert["vocab_size"], max_position_embeddings=64,
                                  id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)}, **sizes)
    AutoModelForTokenClassification.from_config(config).save_pretrained(folder)

    results = Predictor(folder)(["Anna flew to Oslo .", ""])
    assert [r["text"] for r in results] == ["Anna flew to Oslo .", ""]


def test_a_base_folder_loads_as_a_base_with_its_tokenizer(tiny_base: Path):
    from nlpstd.models.build import load_tokenizer, resolve_base

    assert resolve_base(str(tiny_base)) == str(tiny_base), "a local base passes the folder check"
    assert load_tokenizer(str(tiny_base)).is_fast
