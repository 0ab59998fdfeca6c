"""Text in any script: Chinese ideographs are words of their own, English splits as before, entities
are scored against the gold character spans as given, and invisible characters cost nothing."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA
from nlpstd.data.encode import IGNORE, encode_tokens, unrepresentable_spans, words_and_offsets
from nlpstd.evaluate.metrics import span_metrics
from nlpstd.evaluate.scoring import score_logits, subset_metrics
from nlpstd.models.build import load_tokenizer, resolve_base
from tests.weibo_spans import messages, span_record

WEIBO = DATA / "weibo-ner" / "dev.conll"
CONLL = DATA / "conll2003" / "dev.txt"
CHINESE = "我在北京见到了李明，他说Peter来了2023年。"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_base("minilm-l6"))


@pytest.fixture(scope="module")
def trained_tokenizer():
    """A cased WordPiece tokenizer trained as pretraining trains one, on a little mixed-script text."""
    from nlpstd.models.tokenizer import train_wordpiece
    from nlpstd.spec import TokenizerSpec

    documents = [CHINESE, "Peter flew to Paris in 2023 .", "李明在北京工作"] * 20
    return train_wordpiece(iter(documents), TokenizerSpec(train="wordpiece", vocab_size=200, lowercase=False, min_frequency=1))


def weibo_records(n: int) -> list[dict]:
    """The first n Weibo dev messages as span records (`tests.weibo_spans`), spans as [start, end, label]."""
    records = []
    for chars, tags in messages(WEIBO):
        record = span_record(chars, tags)
        records.append({"text": record["text"], "spans": [[e["start"], e["end"], e["label"]] for e in record["entities"]]})
        if len(records) == n:
            break
    return records


def gold_logits(encoded, labels: list[str]) -> list[np.ndarray]:
    """Logits that predict every word's gold tag at its first sub-word: a perfect model."""
    logits = []
    for feature in encoded.features:
        rows = np.zeros((len(feature["input_ids"]), len(labels)), dtype=np.float32)
        for position, label in enumerate(feature["labels"]):
            rows[position, label if label != IGNORE else 0] = 10.0
        logits.append(rows)
    return logits


needs_weibo = pytest.mark.skipif(not WEIBO.is_file(), reason=f"no Weibo NER data under {DATA}")


@needs_weibo
def test_gold_chinese_spans_predicted_exactly_score_f1_one(tokenizer):
    records = [r for r in weibo_records(60) if r["spans"]][:20]
    types = sorted({label for r in records for _, _, label in r["spans"]})
    labels = ["O"] + [f"{p}-{t}" for t in types for p in "BI"]
    encoded = encode_tokens(tokenizer, records, labels, 256)
    scored = score_logits(gold_logits(encoded, labels), encoded, "token-classification", labels)
    assert scored.metrics["support"] == sum(len(r["spans"]) for r in records)
    assert (scored.metrics["precision"], scored.metrics["recall"], scored.metrics["f1"]) == (1.0, 1.0, 1.0)


@needs_weibo
def test_every_weibo_gold_span_lines_up_with_words(tokenizer):
    records = weibo_records(100)
    assert sum(len(r["spans"]) for r in records) > 50
    assert [span for r in records for span in unrepresentable_spans(tokenizer, r)] == []


@needs_weibo
def test_dropping_k_of_n_gold_entities_gives_recall_n_minus_k_over_n():
    gold = [[tuple(span) for span in r["spans"]] for r in weibo_records(40)]
    n, dropped = sum(map(len, gold)), 0
    pred = []
    for spans in gold:
        keep = spans[1:] if spans and dropped < 5 else spans
        dropped += len(spans) - len(keep)
        pred.append(keep)
    tags = [["O"]] * len(gold)
    scores = span_metrics(gold, pred, tags, tags)
    assert dropped == 5 and scores["support"] == n
    assert scores["recall"] == pytest.approx((n - 5) / n) and scores["precision"] == 1.0
    assert sum(row["support"] for row in scores["per_type"].values()) == n


def test_a_gold_span_no_words_represent_counts_as_a_miss(tokenizer):
    record = {"text": "Peter Blackburn came", "spans": [[0, 5, "PER"], [8, 15, "PER"]]}  # "ckburn": mid-word
    encoded = encode_tokens(tokenizer, [record], ["O", "B-PER", "I-PER"], 32)
    scored = score_logits(gold_logits(encoded, ["O", "B-PER", "I-PER"]), encoded, "token-classification", ["O", "B-PER", "I-PER"])
    assert scored.metrics["support"] == 2
    assert scored.metrics["recall"] == 0.5 and scored.metrics["precision"] == 0.5  # the widened word is no gold entity


def test_clean_scores_of_span_data_count_the_kept_examples_gold_spans(tokenizer):
    records = [{"text": "李明在北京", "spans": [[0, 2, "PER"], [3, 5, "LOC"]]}, {"text": "王芳来了", "spans": [[0, 2, "PER"]]}]
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    encoded = encode_tokens(tokenizer, records, labels, 32)
    scored = score_logits(gold_logits(encoded, labels), encoded, "token-classification", labels)
    kept = subset_metrics(scored, [1], "token-classification", labels)
    assert (kept["support"], kept["f1"], sorted(kept["per_type"])) == (1, 1.0, ["PER"])


@pytest.mark.parametrize("which", ["minilm", "trained"])
def test_each_chinese_character_is_a_word_and_latin_words_stay_whole(which, tokenizer, trained_tokenizer):
    pieces = words_and_offsets(tokenizer if which == "minilm" else trained_tokenizer, CHINESE)
    words = [word for word, _ in pieces]
    assert words == [*"我在北京见到了李明", "，", *"他说", "Peter", *"来了", "2023", "年", "。"]
    assert [CHINESE[start:end] for _, (start, end) in pieces] == words


def test_text_with_no_spaces_keeps_offsets_into_the_original_text(tokenizer):
    text = "ＡＢＣ公司，iPhone15发布！"  # full-width Latin, no spaces anywhere
    pieces = words_and_offsets(tokenizer, text)
    assert [text[start:end] for _, (start, end) in pieces] == [word for word, _ in pieces]
    assert [word for word, _ in pieces] == ["ＡＢＣ", "公", "司", "，", "iPhone15", "发", "布", "！"]


@pytest.mark.skipif(not CONLL.is_file(), reason=f"no CoNLL-2003 data under {DATA}")
def test_english_text_splits_as_the_pre_tokenizer_split_it(tokenizer):
    sentences, words = [], []
    for line in CONLL.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("-DOCSTART-"):
            words.append(line.split(" ")[0])
        elif words:
            sentences.append(" ".join(words))
            words = []
    sentences = sentences[:200]
    assert len(sentences) == 200
    for text in sentences:
        before = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
        assert words_and_offsets(tokenizer, text) == before


def test_unrepresentable_spans_names_a_span_that_starts_mid_word(tokenizer):
    record = {"text": "Peter Blackburn from Berlin.", "spans": [[0, 5, "PER"], [8, 15, "PER"], [21, 27, "LOC"]]}
    assert unrepresentable_spans(tokenizer, record) == [[8, 15, "PER"]]
    assert unrepresentable_spans(tokenizer, {"tokens": ["Peter"], "tags": ["B-PER"]}) == []


def test_predict_locates_chinese_entities_in_the_original_text(tiny_base: Path, tmp_path: Path):
    import torch
    from transformers import BertForTokenClassification

    from nlpstd.predict import Predictor

    labels = ["O", "B-PER", "I-PER"]
    model = BertForTokenClassification.from_pretrained(tiny_base, num_labels=3, id2label=dict(enumerate(labels)),
                                                       label2id={label: i for i, label in enumerate(labels)})
    with torch.no_grad():  # every word an entity of its own, so each word's place is checked
        model.classifier.bias.copy_(torch.tensor([0.0, 50.0, 0.0]))
    model.save_pretrained(tmp_path)
    load_tokenizer(str(tiny_base)).save_pretrained(tmp_path)
    text = "我在北京见到了李明 \ufe0f，Peter来了。"
    entities = Predictor(tmp_path)([text])[0]["entities"]
    assert [e["text"] for e in entities] == [*"我在北京见到了李明", "，", "Peter", "来", "了", "。"]
    assert all(e["text"] == text[e["start"]:e["end"]] for e in entities)


def test_a_variation_selector_costs_no_position_and_is_no_word(tokenizer, trained_tokenizer):
    texts = ["Great job!\ufe0f", "I love it \u2764\ufe0f so\u200d much\ufe0f"]
    for tok in (tokenizer, trained_tokenizer):
        for text in texts:
            pieces = words_and_offsets(tok, text)
            assert all("\ufe0f" not in word and "\u200d" not in word for word, _ in pieces)
            assert [text[start:end] for _, (start, end) in pieces] == [word for word, _ in pieces]
            plain = text.replace("\ufe0f", "").replace("\u200d", "")
            fits = len(tok(plain)["input_ids"])  # exactly the positions of the text without them
            encoded = encode_tokens(tok, [{"text": text, "spans": []}], ["O"], fits)
            assert encoded.truncated == 0
            assert encoded.features[0]["input_ids"] == tok(plain)["input_ids"]


def test_a_conll_word_of_only_a_variation_selector_is_not_counted_as_truncated(tokenizer):
    record = {"tokens": ["Great", "job", "!", "\ufe0f"], "tags": ["O"] * 4}
    encoded = encode_tokens(tokenizer, [record], ["O"], 16)
    assert (encoded.truncated, encoded.dropped) == (0, 0)


def test_character_unit_makes_every_visible_character_a_word(tokenizer):
    text = "李明用iPhone15 拍了\u200b照，cafe\u0301。"
    pieces = words_and_offsets(tokenizer, text, "character")
    assert [word for word, _ in pieces] == [*"李明用iPhone15拍了照，caf", "e\u0301", "。"]
    assert [text[start:end] for _, (start, end) in pieces] == [word for word, _ in pieces]


def test_character_unit_lines_up_every_span_of_a_character_annotated_text(tokenizer):
    record = {"text": "华为P40发布", "spans": [[0, 3, "ORG"], [3, 5, "PRODUCT"]]}  # spans inside the word "为P40"
    assert unrepresentable_spans(tokenizer, record, "character") == []
    assert unrepresentable_spans(tokenizer, record, "word") == [[0, 3, "ORG"], [3, 5, "PRODUCT"]]


def test_predict_cuts_text_into_the_unit_the_model_was_trained_on(tiny_base: Path, tmp_path: Path):
    import json

    import torch
    from transformers import BertForTokenClassification

    from nlpstd.predict import Predictor

    labels = ["O", "B-PER", "I-PER"]
    model = BertForTokenClassification.from_pretrained(tiny_base, num_labels=3, id2label=dict(enumerate(labels)),
                                                       label2id={label: i for i, label in enumerate(labels)})
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([0.0, 50.0, 0.0]))
    model.save_pretrained(tmp_path)
    load_tokenizer(str(tiny_base)).save_pretrained(tmp_path)
    (tmp_path / "nlpstd.json").write_text(json.dumps({"task": "token-classification", "word_unit": "character"}))
    text = "李明说Peter来了"
    entities = Predictor(tmp_path)([text])[0]["entities"]
    assert [e["text"] for e in entities] == list(text)
    assert all(e["text"] == text[e["start"]:e["end"]] for e in entities)


@pytest.mark.slow
@pytest.mark.skipif(not WEIBO.is_file(), reason=f"no Weibo NER data under {DATA}")
def test_weibo_as_json_lines_trains_and_scores_as_its_conll_file(tiny_base: Path, tmp_path: Path):
    """The same messages, one character per line or as text with character spans (data.word_unit:
    character): the same words and tags, so the same weights, predictions and scores."""
    import json

    from safetensors.torch import load_file

    from nlpstd.runner import run_standard
    from tests.weibo_spans import write_conll, write_jsonl

    train = WEIBO.with_name("train.conll")
    common = f"""
        task: token-classification
        model: {{base: {tiny_base}}}
        finetune: {{epochs: 2, lr: 3.0e-3, batch_size: 16, checkpoint_every: 100}}
        evaluate: {{gate: {{metric: f1, min: 0.0}}}}
        runtime: {{threads: 1}}
    """
    forms = {"conll": "format: conll, train: train.conll, validation: dev.conll, token_pattern: '(.+?)[0-9]+'",
             "jsonl": "format: jsonl, train: train.jsonl, validation: dev.jsonl, word_unit: character"}
    runs = {}
    for form, data in forms.items():
        folder = tmp_path / form
        folder.mkdir()
        write_conll(train, folder / "train.conll", 160)
        write_conll(WEIBO, folder / "dev.conll", 60)
        write_jsonl(train, folder / "train.jsonl", 160)
        write_jsonl(WEIBO, folder / "dev.jsonl", 60)
        standard = folder / "standard.yaml"
        standard.write_text(f"name: weibo-{form}\ndata: {{{data}, max_length: 128}}\n" + textwrap.dedent(common))
        run_standard(standard, folder / "out", stages=["data-prep", "finetune", "evaluate"], tracking=False)
        runs[form] = folder / "out"

    def read(form: str, path: str):
        return json.loads((runs[form] / path).read_text(encoding="utf-8"))

    gold = read("conll", "data-prep/data_report.json")["splits"]["validation"]["labels"]
    assert gold == read("jsonl", "data-prep/data_report.json")["splits"]["validation"]["labels"]
    assert sum(gold.values()) > 0
    conll_weights = load_file(runs["conll"] / "finetune" / "model" / "model.safetensors")
    jsonl_weights = load_file(runs["jsonl"] / "finetune" / "model" / "model.safetensors")
    assert all((conll_weights[name] == jsonl_weights[name]).all() for name in conll_weights)

    def found(form: str) -> list[list[tuple[str, str]]]:  # CoNLL text is its words joined by spaces
        rows = [json.loads(line) for line in (runs[form] / "evaluate" / "predictions_validation.jsonl").open()]
        return [[(e["label"], e["text"].replace(" ", "")) for e in row["entities"]] for row in rows]

    assert found("conll") == found("jsonl")
    conll_metrics, jsonl_metrics = read("conll", "evaluate/metrics.json"), read("jsonl", "evaluate/metrics.json")
    assert conll_metrics["validation_f1"] == jsonl_metrics["validation_f1"]
