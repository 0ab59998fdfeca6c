"""One span decoder everywhere: evaluation's written entities, `nlpstd predict` on the torch folder, the
MLflow pyfunc model logged by export and the ONNX graph find the same entities in the same texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from seqeval.metrics.sequence_labeling import get_entities
from span_parity import four_way_entities

from conftest import conll_text, ner_yaml
from nlpstd.predict import Predictor
from nlpstd.runner import run_standard

# The tiny model tags by position: a name in second place after a non-name comes out as a stray
# I-PER, which `iob_repair: drop` must drop on every path alike.
_STRAY = [[("flew", "O"), ("Smith", "I-PER"), ("to", "O"), ("Oslo", "B-LOC"), (".", "O")],
          [("to", "O"), ("Smith", "I-PER"), ("flew", "O"), ("to", "O"), ("Lima", "B-LOC"), ("for", "O"), ("Fiat", "B-ORG"), (".", "O")],
          # CoNLL words the tokenizer would split at their punctuation: served texts must keep them whole
          [("Maria", "B-PER"), ("Smith", "I-PER"), ("flew", "O"), ("to", "O"), ("Paris-based", "O"), ("Siemens", "B-ORG"),
           ("on", "O"), ("1996-08-30", "O"), (".", "O")]]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, tiny_base: Path) -> tuple[Path, str]:
    """The tiny NER standard with `iob_repair: drop` and ONNX, run once under a local MLflow store:
    (output folder, export run id)."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("span-parity")
    (folder / "train.txt").write_text(conll_text(96))
    (folder / "dev.txt").write_text(conll_text(24, offset=500))
    stray = "\n".join("\n".join(f"{w} NNP B-NP {t}" for w, t in sentence) + "\n" for sentence in _STRAY)
    (folder / "test.txt").write_text(conll_text(24, offset=900) + stray)
    body = ner_yaml(tiny_base).replace("evaluate: {gate: {metric: f1, min: 0.0}}", "evaluate: {gate: {metric: f1, min: 0.0}, iob_repair: drop}")
    (folder / "standard.yaml").write_text(body + "export: {formats: [safetensors, onnx]}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # the store's artifacts (./mlruns) stay in the test's folder
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        summary = run_standard(folder / "standard.yaml", folder / "out")
        client = MlflowClient()
        parent = client.get_run(summary["mlflow_run_id"])
        export_run = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}' "
                                        "and tags.`nlpstd.stage` = 'export'")[0]
        yield folder / "out", export_run.info.run_id


def test_evaluation_predict_pyfunc_and_onnx_find_identical_entities(tracked_run: tuple[Path, str], monkeypatch):
    out, run_id = tracked_run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{out.parent / 'mlflow.db'}")
    result = four_way_entities(out / "export" / "model", out / "evaluate" / "predictions_test.jsonl", f"runs:/{run_id}/pyfunc")
    assert len(result.texts) == 27
    assert result.disagreements() == []
    assert result.count() >= 20 and len({e[0] for t in result.entities["evaluate"] for e in t}) == 3, "PER, LOC and ORG found"


def test_the_repair_setting_travels_with_the_export_and_changes_what_is_found(tracked_run: tuple[Path, str]):
    out, _ = tracked_run
    model = out / "export" / "model"
    for folder in (model, model / "onnx"):
        assert json.loads((folder / "nlpstd.json").read_text())["iob_repair"] == "drop"
    texts = [" ".join(w for w, _ in sentence) for sentence in _STRAY]
    predictor = Predictor(model)
    dropped = predictor(texts)
    predictor.iob_repair = "start"
    assert sum(len(r["entities"]) for r in predictor(texts)) > sum(len(r["entities"]) for r in dropped), \
        "the model predicts a stray I-PER here, and only `start` keeps it"


def test_evaluation_scores_the_entities_it_writes(tracked_run: tuple[Path, str]):
    out, _ = tracked_run
    rows = [json.loads(line) for line in (out / "evaluate" / "predictions_test.jsonl").read_text().splitlines()]
    assert all(row["text"] == " ".join(row["tokens"]) for row in rows), "CoNLL words joined by single spaces"
    for row in rows:
        assert not any(tag.startswith("I-") and (i == 0 or row["pred"][i - 1][2:] != tag[2:]) for i, tag in enumerate(row["pred"])), \
            "drop: no stray I- reaches seqeval"
        assert [(e["label"], e["words"][0], e["words"][1] - 1) for e in row["entities"]] == get_entities(row["pred"])
        assert all(row["text"][e["start"] : e["end"]] == e["text"] for e in row["entities"])


def test_a_pyfunc_model_of_the_onnx_format_serves_the_graph_and_pickles_nothing(tracked_run: tuple[Path, str], tmp_path: Path):
    import mlflow

    from nlpstd.export.pyfunc import save_pyfunc

    model = tracked_run[0] / "export" / "model"
    saved = save_pyfunc(model, tmp_path / "pyfunc", "onnx")
    assert {p.name for p in (saved / "artifacts" / "model").iterdir()} >= {"model.onnx", "nlpstd.json", "tokenizer.json"}
    assert not (saved / "artifacts" / "model" / "model.safetensors").exists(), "one format per pyfunc model"
    assert not [p for p in saved.rglob("*") if p.suffix in (".pkl", ".pickle")], "a model from code: nothing pickled"
    texts = ["Anna Smith flew to Oslo for Google .", "flew Smith to Lima ."]
    loaded = mlflow.pyfunc.load_model(str(saved))
    assert loaded.predict(texts) == Predictor(model / "onnx" / "model.onnx")(texts)
