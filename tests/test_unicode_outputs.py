"""Non-ASCII labels and texts stay readable in everything nlpstd writes for people: JSON files and JSON
lines carry `正面`, not `\\u6b63\\u9762`, in UTF-8, and the model card shows the label names as they are."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from nlpstd.cli import main
from nlpstd.jsonio import dumps, write_json
from nlpstd.runner import run_standard

LABELS = ("正面", "负面")  # positive, negative


def chinese_tsv(n: int, offset: int = 0) -> str:
    """Film reviews with a Chinese prefix and a Chinese label; the English word carries the sentiment."""
    good, bad = ["great", "wonderful", "moving", "brilliant"], ["dull", "awful", "boring", "clumsy"]
    rows = ["sentence\tlabel"]
    for i in range(offset, offset + n):
        positive = i % 2 == 0
        word = (good if positive else bad)[i % 4]
        rows.append(f"电影：a {word} film , truly {word}\t{LABELS[0] if positive else LABELS[1]}")
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def chinese_run(tmp_path_factory, tiny_base: Path) -> Path:
    folder = tmp_path_factory.mktemp("unicode")
    (folder / "train.tsv").write_text(chinese_tsv(64), encoding="utf-8")
    (folder / "dev.tsv").write_text(chinese_tsv(16, offset=300), encoding="utf-8")
    (folder / "standard.yaml").write_text(textwrap.dedent(f"""
        name: tiny-zh
        task: sequence-classification
        data: {{format: tsv, train: train.tsv, validation: dev.tsv, text_column: sentence, max_length: 32}}
        model: {{base: {tiny_base}}}
        finetune: {{epochs: 2, lr: 3.0e-3, batch_size: 8}}
        evaluate: {{metrics: [accuracy, f1], gate: {{metric: accuracy, min: 0.0}}}}
        runtime: {{threads: 1}}
    """), encoding="utf-8")
    run_standard(folder / "standard.yaml", folder / "out", tracking=False)
    return folder / "out"


def unescaped(text: str) -> bool:
    return all(label in text for label in LABELS) and "\\u" not in text


def test_metrics_json_keeps_chinese_label_names_unescaped(chinese_run: Path):
    text = (chinese_run / "evaluate" / "metrics.json").read_text(encoding="utf-8")
    assert unescaped(text)
    assert set(json.loads(text)["scores"]["validation"]["per_label"]) == set(LABELS)


def test_predictions_keep_chinese_labels_and_texts_unescaped(chinese_run: Path):
    lines = (chinese_run / "evaluate" / "predictions_validation.jsonl").read_text(encoding="utf-8").splitlines()
    assert unescaped("\n".join(lines)) and "电影：" in lines[0]
    row = json.loads(lines[0])
    assert row["gold"] in LABELS and row["text"].startswith("电影：")


def test_data_prep_and_the_model_folder_keep_chinese_labels_unescaped(chinese_run: Path):
    assert unescaped((chinese_run / "data-prep" / "labels.json").read_text(encoding="utf-8"))
    assert unescaped((chinese_run / "data-prep" / "summary.json").read_text(encoding="utf-8"))
    assert "\\u" not in (chinese_run / "summary.json").read_text(encoding="utf-8")


def test_model_card_lists_chinese_label_names_as_written(chinese_run: Path):
    card = (chinese_run / "export" / "model" / "README.md").read_text(encoding="utf-8")
    assert f"labels: {LABELS[0]}, {LABELS[1]}" in card or f"labels: {LABELS[1]}, {LABELS[0]}" in card


def test_predict_json_prints_chinese_labels_and_texts_unescaped(chinese_run: Path, capsys):
    text = "电影：a great film , truly great"
    assert main(["predict", str(chinese_run / "export" / "model"), text, "--json"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert text in line and "\\u" not in line
    assert json.loads(line)["label"] in LABELS


def test_json_helper_writes_utf8_whatever_the_locale(tmp_path: Path):
    path = write_json(tmp_path / "x.json", {"标签": "人名"})
    assert path.read_bytes() == '{\n  "标签": "人名"\n}\n'.encode("utf-8")
    assert dumps(["é"]) == '["é"]'


def test_mlflow_params_and_the_resolved_standard_keep_chinese_unescaped(tmp_path: Path):
    from nlpstd.spec import load_standard

    (tmp_path / "train.tsv").write_text(chinese_tsv(8), encoding="utf-8")
    (tmp_path / "standard.yaml").write_text(textwrap.dedent("""
        name: zh-params
        description: 中文情感分类
        task: sequence-classification
        data: {format: tsv, train: train.tsv, validation: train.tsv, text_column: sentence}
        model: {base: minilm-l6}
        pretrain: {enabled: true, corpus: {files: [语料.txt], held_out_fraction: 0.1}}
    """), encoding="utf-8")
    (tmp_path / "语料.txt").write_text("电影很好。\n", encoding="utf-8")
    std = load_standard(tmp_path / "standard.yaml")
    params = std.flat_params()
    assert params["description"] == "中文情感分类"
    assert "语料.txt" in params["pretrain.corpus.files"]  # a list, written as JSON
    assert "中文情感分类" in std.to_yaml() and "\\u" not in std.to_yaml()
