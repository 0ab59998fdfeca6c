"""Training data augmentation: every operation keeps the labels true, each epoch is seeded, a resumed run augments alike."""

from __future__ import annotations

import json
import pickle
import random
import sys
from collections import Counter
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import killed_then_rerun
from nlpstd.data.augment import Augmenter, apply, in_words, mentions_of, segments
from nlpstd.data.encode import encode_tokens
from nlpstd.runner import run_standard
from nlpstd.spans import entity_spans

SENTENCE = {"tokens": ["Angela", "Merkel", "visited", "central", "Paris", "yesterday", "with", "friends", "."],
            "tags": ["B-PER", "I-PER", "O", "O", "B-LOC", "O", "O", "O", "O"], "line": 3}
TRAIN = [SENTENCE,
         {"tokens": ["Jean", "Claude", "Juncker", "left", "Berlin"], "tags": ["B-PER", "I-PER", "I-PER", "O", "B-LOC"]},
         {"tokens": ["Rome", "and", "Lima"], "tags": ["B-LOC", "O", "B-LOC"]}]
REVIEW = {"text": "a truly wonderful and moving film about brave friends", "label": "pos"}


def _rng(seed: int = 0) -> random.Random:
    return random.Random(seed)


# -- token classification: labels stay true


def test_mention_replace_puts_in_a_training_mention_of_the_same_type_tagged_for_its_length():
    pool = mentions_of(TRAIN)
    for seed in range(20):
        after = apply("mention_replace", SENTENCE, 1.0, _rng(seed), pool)
        entities = entity_spans(after["tags"])
        assert [label for label, _, _ in entities] == ["PER", "LOC"]
        for label, start, end in entities:
            assert tuple(after["tokens"][start:end]) in pool[label]
            assert after["tags"][start:end] == [f"B-{label}"] + [f"I-{label}"] * (end - start - 1)
        outside = [word for word, tag in zip(after["tokens"], after["tags"]) if tag == "O"]
        assert outside == ["visited", "central", "yesterday", "with", "friends", "."]
        assert after["tokens"][:2] != ["Angela", "Merkel"] and "Paris" not in after["tokens"], "every mention replaced"


def test_shuffle_segments_keeps_each_segments_words_and_the_tag_sequence():
    before_runs = [Counter(SENTENCE["tokens"][s:e]) for s, e in segments(SENTENCE["tags"])]
    for seed in range(20):
        after = apply("shuffle_segments", SENTENCE, 0.5, _rng(seed))
        assert after["tags"] == SENTENCE["tags"]
        assert [Counter(after["tokens"][s:e]) for s, e in segments(after["tags"])] == before_runs
        assert after["tokens"] != SENTENCE["tokens"]


def test_segments_are_the_entity_mentions_and_the_runs_of_o_between_them():
    assert segments(SENTENCE["tags"]) == [(0, 2), (2, 4), (4, 5), (5, 9)]


def test_ner_typos_change_words_outside_entities_only():
    for seed in range(20):
        after = apply("typos", SENTENCE, 0.5, _rng(seed))
        changed = [i for i, (a, b) in enumerate(zip(SENTENCE["tokens"], after["tokens"])) if a != b]
        assert changed and all(SENTENCE["tags"][i] == "O" for i in changed)
        assert after["tags"] == SENTENCE["tags"] and len(after["tokens"]) == len(SENTENCE["tokens"])


def test_a_span_record_in_words_encodes_to_the_same_features():
    from nlpstd.models.build import load_tokenizer, resolve_base

    tokenizer = load_tokenizer(resolve_base("minilm-l6"))
    spans = [{"text": "Angela Merkel visited Paris.", "spans": [[0, 13, "PER"], [22, 27, "LOC"]], "line": 1}]
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    worded = in_words(tokenizer, spans)
    assert worded == [{"tokens": ["Angela", "Merkel", "visited", "Paris", "."],
                       "tags": ["B-PER", "I-PER", "O", "B-LOC", "O"], "line": 1}]
    assert encode_tokens(tokenizer, worded, labels, 32).features == encode_tokens(tokenizer, spans, labels, 32).features


# -- sequence classification: the label stays, the text changes as named


def test_delete_drops_words_and_keeps_the_rest_in_order():
    after = apply("delete", REVIEW, 0.3, _rng())
    words, kept = REVIEW["text"].split(), after["text"].split()
    assert len(kept) == len(words) - 3 and after["label"] == "pos"
    assert kept == [word for word in words if word in kept]


@pytest.mark.parametrize("text", ["wonderful", "wonderful film"])
def test_delete_never_empties_a_text(text: str):
    assert all(apply("delete", {"text": text, "label": "pos"}, 0.5, _rng(seed))["text"] for seed in range(20))


def test_swap_exchanges_words_and_keeps_them_all():
    after = apply("swap", REVIEW, 0.1, _rng())
    assert after["text"] != REVIEW["text"] and after["label"] == "pos"
    assert sorted(after["text"].split()) == sorted(REVIEW["text"].split())


def test_insert_adds_copies_of_words_of_the_same_text():
    after = apply("insert", REVIEW, 0.2, _rng())
    words = REVIEW["text"].split()
    assert len(after["text"].split()) == len(words) + 2 and after["label"] == "pos"
    assert set(after["text"].split()) == set(words)


def test_text_typos_change_letters_inside_words_and_keep_each_length():
    after = apply("typos", REVIEW, 0.3, _rng())
    pairs = list(zip(REVIEW["text"].split(), after["text"].split(), strict=True))
    changed = [(a, b) for a, b in pairs if a != b]
    assert changed and all(len(a) == len(b) and a[0] == b[0] and a[-1] == b[-1] for a, b in changed)
    assert after["label"] == "pos"


def test_a_text_pair_has_both_texts_changed():
    pair = {**REVIEW, "text_pair": "friends liked the brave film a lot"}
    after = apply("swap", pair, 0.3, _rng(1))
    assert after["text"] != pair["text"] and after["text_pair"] != pair["text_pair"]


# -- epochs: seeded, a share of the examples, the split's size kept

REVIEWS = [{"text": f"the quick brown fox number {i} jumps", "label": str(i % 2)} for i in range(1000)]


def test_the_same_seed_and_epoch_give_the_same_records_and_another_epoch_others():
    augmenter = Augmenter(REVIEWS, ("delete", "swap", "insert", "typos"), 0.3, 0.1, seed=7)
    again = Augmenter(REVIEWS, ("delete", "swap", "insert", "typos"), 0.3, 0.1, seed=7)
    assert augmenter(1) == again(1)
    assert augmenter(1) != augmenter(2)


def test_probability_p_augments_a_p_share_of_the_examples_and_keeps_the_rest():
    augmenter = Augmenter(REVIEWS, ("delete", "swap", "insert", "typos"), 0.3, 0.1, seed=0)
    records = augmenter(0)
    changed = sum(a != b for a, b in zip(REVIEWS, records))
    assert len(records) == len(REVIEWS) and 280 <= changed <= 300  # a typo may replace a letter with itself
    assert [r["label"] for r in records] == [r["label"] for r in REVIEWS]
    assert augmenter.counts([0])["augmented_examples"] == 300


def test_the_augmented_objective_batches_each_epoch_from_that_epochs_features():
    from nlpstd.train.batching import Augmented

    def features_of(epoch: int) -> list[dict]:
        return [{"input_ids": [epoch + 1] * (3 + i % 4), "labels": 0} for i in range(16 + epoch)]

    objective = Augmented(features_of, micro_batch=4, seed=0, group_by_length=True, pad_id=0)
    assert sum(len(batch) for batch in objective.batches(0)) == 16
    batches = objective.batches(1)
    assert sum(len(batch) for batch in batches) == 17
    worker = pickle.loads(pickle.dumps(objective))  # a loader worker started by pickling
    assert worker.features_of is None
    assert worker.collate(batches[0], 1, 0)["input_ids"].max() == 2, "epoch 1's features"


# -- the finetune stage


class _Planned(Exception):
    """Raised in place of training, once the objective is built."""


def _objective_of(standard: Path, out: Path, monkeypatch):
    """The objective the finetune stage would train."""
    from nlpstd.spec import load_standard
    from nlpstd.stages import finetune

    run_standard(standard, out, stages=["data-prep"], tracking=False)
    built = []

    def planned(model, objective, *args, **kwargs):
        built.append(objective)
        raise _Planned

    monkeypatch.setattr(finetune, "train", planned)
    with pytest.raises(_Planned):
        finetune.run(load_standard(standard), out / "data-prep", out / "finetune")
    return built[0]


def _augmented(standard: Path, probability: float = 0.5) -> None:
    standard.write_text(standard.read_text().replace("finetune: {", f"finetune: {{augment: {{probability: {probability}}}, "))


def test_without_augment_finetune_trains_supervised_on_the_prepared_features(ner_standard: Path, tmp_path: Path, monkeypatch):
    from nlpstd.data import prepare
    from nlpstd.models.build import load_tokenizer, resolve_base
    from nlpstd.spec import load_standard
    from nlpstd.train.batching import Supervised

    objective = _objective_of(ner_standard, tmp_path / "out", monkeypatch)
    assert type(objective) is Supervised
    data = prepare.load(tmp_path / "out" / "data-prep")
    tokenizer = load_tokenizer(resolve_base(load_standard(ner_standard).model.base))
    assert objective.features == encode_tokens(tokenizer, data.splits["train"], data.labels, 32).features


@pytest.mark.parametrize("fixture", ["ner_standard", "cls_standard"])
def test_with_augment_each_epoch_trains_on_other_features_of_the_same_count(fixture: str, tmp_path: Path, monkeypatch,
                                                                            request):
    from nlpstd.train.batching import Augmented

    standard = request.getfixturevalue(fixture)
    _augmented(standard)
    objective = _objective_of(standard, tmp_path / "out", monkeypatch)
    assert type(objective) is Augmented
    objective.batches(0)
    first = objective.features
    objective.batches(1)
    assert objective.features != first and len(objective.features) == len(first) == 96


def test_finetune_metrics_count_the_augmented_examples(ner_standard: Path, tmp_path: Path):
    _augmented(ner_standard)
    run_standard(ner_standard, tmp_path / "out", stages=["data-prep", "finetune"], tracking=False)
    metrics = json.loads((tmp_path / "out" / "finetune" / "metrics.json").read_text())
    assert metrics["augmented_examples"] == 3 * 48  # 3 epochs, half of 96 examples each
    assert sum(metrics[f"augmented_{op}"] for op in ("mention_replace", "shuffle_segments", "typos")) == 3 * 48


def test_sigkill_mid_training_with_augmentation_then_rerun_matches_an_uninterrupted_run(ner_standard: Path, tmp_path: Path):
    _augmented(ner_standard)
    text = ner_standard.read_text().replace("epochs: 3", "epochs: 40").replace("checkpoint_every: 10", "checkpoint_every: 25")
    ner_standard.write_text(text.replace("evaluate: {", "evaluate: {metrics: [f1], "))
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "nlpstd.cli", "run", str(ner_standard), "--out", str(out), "--no-tracking"]

    # -- kill at the second checkpoint (a few epochs in), rerun: it resumes, and ends where a run never interrupted ends
    killed_then_rerun(command, out / ".finetune.partial" / "checkpoints" / "last" / "state.json")
    reference = tmp_path / "reference"
    run_standard(ner_standard, reference, stages=["data-prep", "finetune"], tracking=False)
    resumed = load_file(out / "finetune" / "model" / "model.safetensors")
    straight = load_file(reference / "finetune" / "model" / "model.safetensors")
    assert all((resumed[k] - straight[k]).abs().max() < 1e-5 for k in straight)
    metrics = [json.loads((folder / "finetune" / "metrics.json").read_text()) for folder in (out, reference)]
    assert metrics[0]["augmented_examples"] == metrics[1]["augmented_examples"]
