"""Explanations: integrated gradients name the words a prediction rests on, in the report and in `predict`."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertForSequenceClassification, BertForTokenClassification

from nlpstd.cli import main
from nlpstd.evaluate.explain import Case, explain_text, explain_word, pick_cases, word_scores
from nlpstd.runner import run_standard
from tests.conftest import ner_yaml, sst_text, write_conll_splits, write_standard

CPU = torch.device("cpu")
CUE, FILLER = "zebra", "the a river house quiet green table morning walked under over slowly bright paper window city old".split()
LABELS = {0: "plain", 1: "cue"}


def cue_example(rng: random.Random, positive: bool) -> tuple[str, int]:
    """Five to nine filler words, with the cue word somewhere among them iff the label is 1."""
    words = rng.choices(FILLER, k=rng.randint(5, 9))
    if positive:
        words.insert(rng.randrange(len(words) + 1), CUE)
    return " ".join(words), int(positive)


@pytest.fixture(scope="module")
def cue_model(tiny_base: Path, tmp_path_factory) -> Path:
    """The tiny BERT fine-tuned (fully, 40 steps of 16) to say 1 exactly when the cue word is there, saved as
    export saves a model; its held-out accuracy is checked here, so every test below reads a model that learned."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    rng = random.Random(0)
    train = [cue_example(rng, i % 2 == 0) for i in range(256)]
    held_out = [cue_example(rng, i % 2 == 0) for i in range(64)]
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(tiny_base, num_labels=2, id2label=LABELS,
                                                          label2id={v: k for k, v in LABELS.items()})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(40):
        batch = [train[(step * 16 + i) % len(train)] for i in range(16)]
        inputs = tokenizer([text for text, _ in batch], padding=True, return_tensors="pt")
        model(**inputs, labels=torch.tensor([label for _, label in batch])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        inputs = tokenizer([text for text, _ in held_out], padding=True, return_tensors="pt")
        predicted = model(**inputs).logits.argmax(-1).tolist()
    accuracy = sum(p == label for p, (_, label) in zip(predicted, held_out)) / len(held_out)
    assert accuracy >= 0.95, f"the model did not learn the cue (held-out accuracy {accuracy:.2f})"

    folder = tmp_path_factory.mktemp("cue-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "nlpstd.json").write_text(json.dumps({"task": "sequence-classification", "max_length": 32}))
    return folder


@pytest.fixture(scope="module")
def cue(cue_model: Path) -> tuple:
    return BertForSequenceClassification.from_pretrained(cue_model).eval(), AutoTokenizer.from_pretrained(cue_model)


def positives(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [cue_example(rng, True)[0] for _ in range(n)]


# ---------------------------------------------------------------------------------------
# Attributions


def test_a_model_that_learned_a_cue_word_gives_it_the_top_attribution(cue):
    model, tokenizer = cue
    tops = []
    for text in positives(10):
        explanation = explain_text(model, tokenizer, text, id2label=LABELS, steps=32, max_length=32, device=CPU)
        assert explanation.target == "cue"
        tops.append(explanation.words[explanation.scores.index(max(explanation.scores))])
    assert tops.count(CUE) >= 8, tops


def test_attributions_are_finite_one_per_word_and_scaled_to_the_strongest(cue):
    model, tokenizer = cue
    text = positives(1)[0]
    explanation = explain_text(model, tokenizer, text, id2label=LABELS, steps=8, max_length=32, device=CPU)
    assert explanation.words == text.split()
    assert all(math.isfinite(score) for score in explanation.scores)
    assert max(abs(score) for score in explanation.scores) == 1.0
    assert math.isfinite(explanation.delta) and math.isfinite(explanation.change)


def test_with_enough_steps_the_convergence_delta_is_small_beside_the_change(cue):
    model, tokenizer = cue
    for text in positives(2):
        explanation = explain_text(model, tokenizer, text, id2label=LABELS, steps=256, max_length=32, device=CPU)
        assert abs(explanation.delta) < 0.05 * abs(explanation.change), explanation


def test_a_text_pair_is_explained_word_by_word_with_a_separator_between_the_texts(cue):
    model, tokenizer = cue
    explanation = explain_text(model, tokenizer, "a zebra here", text_pair="old river", id2label=LABELS, steps=4,
                               max_length=32, device=CPU)
    assert explanation.words == ["a", "zebra", "here", "[SEP]", "old", "river"]
    assert explanation.scores[3] == 0.0, "the separator is no word of either text"


def test_word_scores_add_up_sub_words_and_leave_out_special_tokens():
    # [CLS] zeb ##ra runs [SEP]: two sub-words of word 0, one of word 1
    assert word_scores([5.0, 1.0, 2.0, -1.5, 9.0], [-1, 0, 0, 1, -1], 2) == [1.0, -0.5]
    assert word_scores([0.0, 0.0], [0, 1], 2) == [0.0, 0.0]


def test_a_token_label_is_explained_at_the_word_asked_for(tiny_base: Path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    torch.manual_seed(0)
    model = BertForTokenClassification.from_pretrained(tiny_base, num_labels=3).eval()
    words = ["Peter", "Smith", "flew", "to", "Paris", "."]
    explanation = explain_word(model, tokenizer, words, 4, id2label={0: "O", 1: "B-LOC", 2: "I-LOC"}, steps=8,
                               max_length=32, device=CPU)
    assert explanation.words == words and explanation.word == 4
    assert explanation.target in {"O", "B-LOC", "I-LOC"} and all(math.isfinite(s) for s in explanation.scores)


def test_a_word_that_truncation_cuts_away_is_not_explained(tiny_base: Path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    model = BertForTokenClassification.from_pretrained(tiny_base, num_labels=2).eval()
    with pytest.raises(ValueError, match="cut away by max_length 8"):
        explain_word(model, tokenizer, ["a"] * 20, 15, id2label={0: "O", 1: "B-X"}, steps=4, max_length=8, device=CPU)


def test_a_long_text_is_explained_in_the_window_where_its_word_sits_most_centrally(tiny_base: Path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    torch.manual_seed(0)
    model = BertForTokenClassification.from_pretrained(tiny_base, num_labels=2).eval()
    words = [f"w{i}" for i in range(40)]  # one window holds 6 sub-words: w, ##N (two per word, at least)
    explanation = explain_word(model, tokenizer, words, 20, id2label={0: "O", 1: "B-X"}, steps=4, max_length=8,
                               stride=2, device=CPU)
    assert len(explanation.words) < len(words), "a window's words, not the whole text"
    assert explanation.words[explanation.word] == "w20"


# ---------------------------------------------------------------------------------------
# Which examples are explained


def test_for_ner_an_error_is_explained_at_its_wrong_entity_and_a_success_at_a_found_one():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "O", "O"], ["O", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-PER", "O", "O"], ["O", "O", "O"]]
    cases = pick_cases(gold, pred, "token-classification", examples=5, seed=0)
    errors = [c for c in cases if c.kind == "error"]
    assert errors == [Case("error", 0, 3, ("ORG", 3, 4), True), Case("error", 2, 2, ("LOC", 2, 3), False)]
    assert [c for c in cases if c.kind == "success"] == [Case("success", 0, 0, ("PER", 0, 2)), Case("success", 1, 0, ("PER", 0, 1))]


def test_the_same_seed_draws_the_same_cases_and_at_most_examples_of_each_kind():
    gold, pred = ["a"] * 50, ["a" if i % 3 else "b" for i in range(50)]
    cases = pick_cases(gold, pred, "sequence-classification", examples=3, seed=1)
    assert cases == pick_cases(gold, pred, "sequence-classification", examples=3, seed=1)
    assert [c.kind for c in cases] == ["error"] * 3 + ["success"] * 3
    assert all(pred[c.index] != gold[c.index] for c in cases if c.kind == "error")


# ---------------------------------------------------------------------------------------
# The evaluate stage


@pytest.fixture(scope="module")
def ner_run(tiny_base: Path, tmp_path_factory) -> Path:
    """The tiny NER standard, trained and evaluated with one error and one success explained in 8 steps."""
    folder = tmp_path_factory.mktemp("explain-ner")
    write_conll_splits(folder)
    body = ner_yaml(tiny_base).replace("evaluate: {gate: {metric: f1, min: 0.0}}",
                                       "evaluate: {gate: {metric: f1, min: 0.0}, explain: {examples: 1, steps: 8}}")
    run_standard(write_standard(folder, body), folder / "out", stages=["data-prep", "finetune", "evaluate"], tracking=False)
    return folder


def test_evaluate_writes_explanations_pictures_and_a_report_section(ner_run: Path):
    evaluate = ner_run / "out" / "evaluate"
    explained = json.loads((evaluate / "explanations.json").read_text())
    assert explained["split"] == "test" and explained["steps"] == 8
    assert 1 <= len(explained["examples"]) <= 2 and {e["kind"] for e in explained["examples"]} <= {"error", "success"}
    for example in explained["examples"]:
        assert (evaluate / example["picture"]).read_bytes().startswith(b"\x89PNG")
        assert f"({example['picture']})" in (evaluate / "report.md").read_text()
    assert "## Explanations (test)" in (evaluate / "report.md").read_text()
    assert "<span" in (evaluate / "explanations.html").read_text()


def test_a_ner_explanation_is_about_its_entity_first_word(ner_run: Path):
    for example in json.loads((ner_run / "out" / "evaluate" / "explanations.json").read_text())["examples"]:
        attributions, entity = example["attributions"], example["entity"]
        assert attributions["words"][attributions["word"]] == entity["text"].split()[0]
        if entity["found"]:  # the label explained is the entity's (B- or, before repair, I-)
            assert attributions["target"].partition("-")[2] == entity["label"]


def test_evaluate_explains_a_classifier_word_by_word(tiny_base: Path, tmp_path: Path):
    (tmp_path / "train.tsv").write_text(sst_text(96))
    (tmp_path / "dev.tsv").write_text(sst_text(24, offset=300))
    standard = write_standard(tmp_path, f"""
        name: tiny-cls
        task: sequence-classification
        data: {{format: tsv, train: train.tsv, validation: dev.tsv, text_column: sentence, max_length: 32}}
        model: {{base: {tiny_base}}}
        finetune: {{epochs: 1, lr: 3.0e-3, batch_size: 8}}
        evaluate: {{metrics: [accuracy], gate: {{metric: accuracy, min: 0.0}}, explain: {{examples: 1, steps: 8}}}}
        runtime: {{threads: 1}}
    """)
    run_standard(standard, tmp_path / "out", stages=["data-prep", "finetune", "evaluate"], tracking=False)
    examples = json.loads((tmp_path / "out" / "evaluate" / "explanations.json").read_text())["examples"]
    assert examples and all(e["attributions"]["target"] in {"0", "1"} for e in examples)
    assert all(e["attributions"]["words"] == e["text"].split() for e in examples)


class RecordingTracker:
    """Keeps what a stage logs, for the tests to read."""

    run_id = None  # no registry behind it

    def __init__(self):
        self.artifacts: list[tuple[str, str | None]] = []

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.artifacts.append((Path(path).name, folder))

    def log_params(self, params): ...
    def log_metrics(self, metrics, step=None): ...
    def set_tags(self, tags): ...
    def log_dataset(self, name, source, digest, context): ...


def test_evaluate_logs_the_explanations_and_their_pictures_as_artifacts(ner_run: Path, tmp_path: Path):
    from nlpstd.spec import load_standard
    from nlpstd.stages import evaluate

    tracker, out = RecordingTracker(), ner_run / "out"
    evaluate.run(load_standard(ner_run / "standard.yaml"), out / "data-prep", out / "finetune" / "model", tmp_path / "evaluate",
                 tracker=tracker)
    assert {("explanations.json", "evaluate"), ("explanations.html", "evaluate"),
            ("explanations", "evaluate/explanations")} <= set(tracker.artifacts)


def test_explanations_are_off_by_default(ner_run: Path, tmp_path: Path):
    out = Path(shutil.copytree(ner_run / "out", tmp_path / "out"))
    standard = ner_run / "plain.yaml"  # beside the data files it names
    standard.write_text((ner_run / "standard.yaml").read_text().replace(", explain: {examples: 1, steps: 8}", ""))
    run_standard(standard, out, stages=["evaluate"], tracking=False)
    assert not (out / "evaluate" / "explanations.json").exists() and not (out / "evaluate" / "explanations").exists()
    assert "Explanations" not in (out / "evaluate" / "report.md").read_text()


# ---------------------------------------------------------------------------------------
# nlpstd predict --explain


def test_predict_explain_adds_the_words_attributions_to_each_json_line(cue_model: Path, capsys):
    assert main(["predict", str(cue_model), "--json", "--explain", "--explain-steps", "16", "the zebra walked", "old river"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["attributions"]["words"] for row in rows] == [["the", "zebra", "walked"], ["old", "river"]]
    assert [row["attributions"]["target"] for row in rows] == [row["label"] for row in rows]
    assert rows[0]["attributions"]["scores"][1] == 1.0


def test_predict_explain_prints_a_line_of_signed_scores_under_each_text(cue_model: Path, capsys):
    assert main(["predict", str(cue_model), "--explain", "--explain-steps", "8", "the zebra walked"]) == 0
    label_line, why = capsys.readouterr().out.splitlines()
    assert label_line.startswith("cue\t") and why.startswith("  why cue: the(") and "zebra(+1.00)" in why


def test_predict_explain_gives_each_entity_its_own_attributions(capsys):
    from tests.bad_input.model_folders import TOKEN, exported

    assert main(["predict", str(exported(TOKEN)), "--json", "--explain", "--explain-steps", "4", "Peter Smith flew to Paris ."]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["entities"], "the tiny random model predicts entities in this text"
    for entity in row["entities"]:
        attributions = entity["attributions"]
        assert attributions["word"] == entity["words"][0]
        assert attributions["words"] == ["Peter", "Smith", "flew", "to", "Paris", "."]


def test_predict_without_explain_gives_no_attributions(cue_model: Path, capsys):
    assert main(["predict", str(cue_model), "--json", "the zebra walked"]) == 0
    assert "attributions" not in json.loads(capsys.readouterr().out)


def test_predict_explain_refuses_an_onnx_model_before_loading_it(tmp_path: Path, capsys):
    from tests.bad_input.model_folders import TOKEN, exported

    folder = Path(shutil.copytree(exported(TOKEN), tmp_path / "model"))
    (folder / "model.onnx").write_bytes(b"not loaded")
    assert main(["predict", str(folder / "model.onnx"), "--explain", "Peter"]) != 0
    assert "--explain: needs the torch weights" in capsys.readouterr().err


def test_a_library_caller_asking_an_onnx_predictor_to_explain_gets_the_same_refusal(cue_model: Path, tmp_path: Path):
    from nlpstd.errors import NlpstdError
    from nlpstd.export.onnx import export_onnx
    from nlpstd.models.build import load_model
    from nlpstd.predict import Predictor

    folder = Path(shutil.copytree(cue_model, tmp_path / "model"))
    export_onnx(load_model(folder, "sequence-classification"), folder / "model.onnx", token_types=True)
    predictor = Predictor(folder / "model.onnx")
    assert predictor("the zebra walked")[0]["label"] in LABELS.values()  # it predicts; it cannot explain
    with pytest.raises(NlpstdError, match=r"--explain: needs the torch weights, and .*model.onnx is an ONNX model"):
        predictor("the zebra walked", explain_steps=8)
