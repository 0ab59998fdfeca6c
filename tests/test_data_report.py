"""The data report: lengths, labels, duplicates, empty examples, overlap between splits, the
checks of `data.checks`, and evaluation's score without the examples train also holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DATA, needs_real_data, ner_yaml, write_conll_splits, write_standard
from nlpstd.data import report as data_report
from nlpstd.data.prepare import PreparedData
from nlpstd.errors import DataError, StandardError
from nlpstd.evaluate.metrics import ner_metrics
from nlpstd.spec import DataChecks, load_standard
from nlpstd.stages import data_prep

TOKEN, CLASS = "token-classification", "sequence-classification"


def sentence(text: str, line: int = 1) -> dict:
    """A CoNLL record from `token/TAG token/TAG ...` (a bare token is tagged O)."""
    pairs = [item.split("/") if "/" in item else (item, "O") for item in text.split()]
    return {"tokens": [t for t, _ in pairs], "tags": [g for _, g in pairs], "line": line}


def example(text: str, label: str = "pos", line: int = 1) -> dict:
    return {"text": text, "label": label, "line": line}


def prepared(task: str, **splits: list[dict]) -> PreparedData:
    return PreparedData(task, [], splits, "fingerprint")


@pytest.fixture(scope="module")
def tokenizer():
    from nlpstd.models.build import load_tokenizer, resolve_base

    return load_tokenizer(resolve_base("minilm-l6"))


def conll_file(*sentences: str) -> str:
    """Sentences as `token/TAG ...` (a bare token is tagged O), one token per line, after a -DOCSTART- line."""
    blocks = ["\n".join(" ".join(pair.split("/")) if "/" in pair else f"{pair} O" for pair in s.split()) for s in sentences]
    return "-DOCSTART- -X- -X- O\n\n" + "\n\n".join(blocks) + "\n"


def conll_standard(folder: Path, train: str, validation: str, test: str, extra: str = "") -> Path:
    """A standard over three small CoNLL files and the packaged base (its tokenizer is the one measured)."""
    for name, text in (("train.txt", train), ("dev.txt", validation), ("test.txt", test)):
        (folder / name).write_text(text)
    return write_standard(folder, f"""
        name: report
        task: token-classification
        data: {{format: conll, train: train.txt, validation: dev.txt, test: test.txt, max_length: 16{extra}}}
        model: {{base: minilm-l6}}
    """)


# ---------------------------------------------------------------------------------------
# Overlap between splits


def test_exact_overlap_lists_the_test_sentences_train_holds_verbatim():
    train = [sentence("EU/B-ORG rejects German call", 3), sentence("LONDON/B-LOC 1996-08-30", 10)]
    test = [sentence("Peter/B-PER wins", 2), sentence("LONDON/B-LOC 1996-08-30", 5), sentence("LONDON/B-LOC 1996-08-30", 8)]
    found = data_report.overlap(train, test)
    assert (found["exact"], found["normalized"], found["indices"]) == (2, 2, [1, 2])
    assert found["items"][0] == {"index": 1, "line": 5, "train_index": 1, "train_line": 10, "match": "exact",
                                 "same_labels": True, "text": "LONDON 1996-08-30"}
    assert found["exact_share"] == pytest.approx(2 / 3, abs=1e-6)


def test_overlap_compares_tokens_and_says_when_the_labels_differ():
    found = data_report.overlap([sentence("Paris/B-LOC Hilton/I-LOC")], [sentence("Paris/B-PER Hilton/I-PER")])
    assert found["exact"] == 1
    assert found["items"][0]["same_labels"] is False


def test_normalized_overlap_ignores_case_and_runs_of_whitespace():
    train = [example("A great  film"), example("dull")]
    test = [example("a GREAT film"), example("a great film ,"), example("dull")]
    found = data_report.overlap(train, test)
    assert (found["exact"], found["normalized"]) == (1, 2)
    assert [(item["index"], item["match"]) for item in found["items"]] == [(0, "normalized"), (2, "exact")]


def test_a_sentence_inside_a_longer_train_sentence_is_not_overlap():
    found = data_report.overlap([sentence("LONDON 1996-08-30 and more")], [sentence("LONDON 1996-08-30")])
    assert found["normalized"] == 0


def test_text_pairs_overlap_only_when_both_texts_match():
    train = [{"text": "a man sleeps", "text_pair": "he rests", "label": "yes", "line": 2}]
    test = [{"text": "a man sleeps", "text_pair": "he runs", "label": "no", "line": 2},
            {"text": "A man sleeps", "text_pair": "He rests", "label": "yes", "line": 3}]
    assert data_report.overlap(train, test)["indices"] == [1]


# ---------------------------------------------------------------------------------------
# One split


def test_duplicates_count_repeats_after_the_first_and_those_with_other_labels():
    records = [example("good", "pos"), example("bad", "neg"), example("good", "pos"), example("good", "neg")]
    assert data_report.duplicates(records) == ([2, 3], 1)


def test_empty_examples_are_those_without_words_or_without_sub_words(tokenizer):
    records = [example("fine"), example(""), example("\u200b")]  # a zero-width space survives the reader's strip()
    lengths = data_report.subword_lengths(tokenizer, records)
    stats = data_report.split_report(records, lengths, tokenizer.num_special_tokens_to_add(), max_length=16)
    assert (stats["empty"], stats["empty_indices"]) == (2, [1, 2])


def test_label_distribution_counts_entities_per_type_not_tags():
    records = [sentence("Anna/B-PER Maria/I-PER Smith/I-PER visits New/B-LOC York/I-LOC"),
               sentence("Berlin/B-LOC Paris/B-LOC"),       # two entities side by side
               sentence("York/I-LOC and/O Oslo/I-LOC"),    # an I- after O starts an entity, as seqeval reads it
               sentence("nothing here")]
    assert data_report.label_counts(records) == {"LOC": 5, "PER": 1}


def test_stray_inside_tags_are_counted_apart_with_their_file_lines():
    records = [sentence("Anna/B-PER Maria/I-PER visits Oslo/I-LOC", line=3),   # Oslo: I-LOC after O
               sentence("Anna/B-PER Lima/I-LOC", line=9)]                       # Lima: I-LOC after PER
    report = data_report.build(prepared(TOKEN, train=records, validation=records[:1]), None, "not measured", 32)
    assert report["splits"]["train"]["stray_tags"] == {"count": 2, "lines": [6, 10]}
    markdown = data_report.markdown(report, [])
    assert "train: 2 entities begin with a B- tag and 2 with a stray I- tag" in markdown
    assert "lines 6, 10" in markdown


def test_label_distribution_counts_spans_and_classes():
    spans = [{"text": "Bob in Paris", "spans": [[0, 3, "PER"], [7, 12, "LOC"]], "line": 1}]
    assert data_report.label_counts(spans) == {"LOC": 1, "PER": 1}
    assert data_report.label_counts([example("a", "pos"), example("b", "neg"), example("c", "pos")]) == {"neg": 1, "pos": 2}


def test_truncated_share_counts_examples_longer_than_max_length_in_sub_words(tokenizer):
    records = [sentence("short"), sentence(" ".join(["word"] * 20)), sentence("unbelievably " * 5)]
    lengths = data_report.subword_lengths(tokenizer, records)
    assert lengths[:2] == [3, 22]  # [CLS] + sub-words + [SEP]
    assert lengths[2] > 10 > 5 + 2  # five words, more than one sub-word each
    stats = data_report.split_report(records, lengths, 2, max_length=10)
    assert (stats["truncated"], stats["truncated_share"]) == (2, pytest.approx(2 / 3, abs=1e-6))
    assert stats["lengths"]["max"] == 20


def test_with_data_stride_long_examples_are_reported_as_windowed_not_cut(tokenizer):
    splits = prepared(TOKEN, train=[sentence(" ".join(["word"] * 20))], validation=[sentence("a")])
    report = data_report.build(splits, tokenizer, "the base's", 16, stride=4)
    data_report.check(report, DataChecks(), {})
    text = data_report.markdown(report, [])
    assert "windowed (over 16)" in text and "not cut" in text and "truncated at" not in text
    assert report["splits"]["train"]["truncated"] == 1


def test_without_a_tokenizer_the_report_has_no_sub_word_figures(tmp_path):
    report = data_report.build(prepared(CLASS, train=[example("a b c")], validation=[example("d")]), None, "not measured", 16)
    assert "subwords" not in report["splits"]["train"] and "truncated" not in report["splits"]["train"]
    assert report["splits"]["train"]["lengths"]["max"] == 3
    text = data_report.markdown(report, [])
    assert "Sub-words: not measured" in text and "truncated at" not in text


def test_a_standard_that_trains_its_vocabulary_measures_no_sub_words_at_data_prep(pretrain_standard):
    tokenizer, note = data_prep.report_tokenizer(load_standard(pretrain_standard))
    assert tokenizer is None
    assert "trains its own WordPiece vocabulary" in note


# ---------------------------------------------------------------------------------------
# Checks


def overlapping_report() -> dict:
    train = [example("seen"), example("also seen")]
    return data_report.build(prepared(CLASS, train=train, validation=[example("new")], test=[example("Seen"), example("fresh")]),
                             None, "not measured", 16)


def test_overlap_above_the_limit_warns_and_is_recorded_in_the_report():
    report = overlapping_report()
    warnings = data_report.check(report, DataChecks(max_overlap=0.1), {"test": "data/test.tsv"})
    assert warnings == ["1 of 2 test examples (50.00%) also occur in train (0 verbatim), above data.checks.max_overlap 0.1"]
    assert report["checks"]["violations"] == warnings
    assert "**Checks: 1 warning**" in data_report.markdown(report, [])


def test_overlap_above_the_limit_fails_naming_the_split_share_limit_and_setting():
    with pytest.raises(DataError) as caught:
        data_report.check(overlapping_report(), DataChecks(max_overlap=0.1, on_violation="fail"), {"test": "data/test.tsv"})
    message = str(caught.value)
    assert message.startswith("data/test.tsv: data.checks.max_overlap: 1 of 2 test examples (50.00%) also occur in train")
    assert "above data.checks.max_overlap 0.1" in message and "on_violation: warn" in message


def test_overlap_within_the_limit_passes():
    report = overlapping_report()
    assert data_report.check(report, DataChecks(max_overlap=0.5, on_violation="fail"), {}) == []
    expected = "**Checks: passed** (max_overlap 0.5, max_duplicates off, max_unknown_share 0.05, max_unaligned_spans 0)"
    assert expected in data_report.markdown(report, [])


def test_duplicates_are_checked_only_when_max_duplicates_is_set():
    report = data_report.build(prepared(CLASS, train=[example("x"), example("x")], validation=[example("y")]), None, "", 16)
    assert data_report.check(report, DataChecks(), {}) == []
    warnings = data_report.check(report, DataChecks(max_duplicates=0.2), {})
    assert warnings == ["1 of 2 train examples (50.00%) repeat an earlier train example, above data.checks.max_duplicates 0.2"]


def test_data_checks_reject_unknown_keys_and_values(tmp_path):
    path = conll_standard(tmp_path, conll_file("a/O"), conll_file("b/O"), conll_file("c/O"), ", checks: {max_overlp: 0.1}")
    with pytest.raises(StandardError, match=r"data\.checks\.max_overlp: unknown key 'max_overlp' \(did you mean 'max_overlap'\?\)"):
        load_standard(path)
    path = conll_standard(tmp_path, conll_file("a/O"), conll_file("b/O"), conll_file("c/O"), ", checks: {on_violation: stop}")
    with pytest.raises(StandardError, match=r"data\.checks\.on_violation: "):
        load_standard(path)


# ---------------------------------------------------------------------------------------
# The stage


def small_splits(folder: Path, extra: str = "") -> Path:
    return conll_standard(
        folder,
        conll_file("EU/B-ORG rejects German/B-MISC call", "Peter/B-PER Blackburn/I-PER", "LONDON/B-LOC 1996-08-30", "Peter/B-PER Blackburn/I-PER"),
        conll_file("Anna/B-PER sings", "london/B-LOC 1996-08-30"),
        conll_file("LONDON/B-LOC 1996-08-30", "Oslo/B-LOC wins", "Rome/B-LOC " + "and/O " * 20 + "Oslo/B-LOC"),
        extra,
    )


def test_data_prep_writes_the_report_its_plots_and_figures(tmp_path, capsys):
    out = tmp_path / "out"
    metrics = data_prep.run(load_standard(small_splits(tmp_path)), out)
    report = json.loads((out / "data_report.json").read_text())
    assert (report["overlap"]["test"]["exact"], report["overlap"]["validation"]["normalized"]) == (1, 1)
    assert report["splits"]["train"]["duplicates"] == 1
    assert report["splits"]["train"]["labels"] == {"LOC": 1, "MISC": 1, "ORG": 1, "PER": 2}
    assert report["splits"]["test"]["truncated"] == 1  # 22 words, max_length 16
    assert (metrics["test_overlap_exact"], metrics["validation_overlap_exact"], metrics["validation_overlap_normalized"]) == (1, 0, 1)
    text = (out / "data_report.md").read_text()
    assert text.startswith("# Data report of report\n")
    assert "| test | 3 | 1 (33.33%) | 1 (33.33%) |" in text
    assert "![lengths](plots/lengths.png)" in text
    for plot in ("lengths.png", "labels.png"):
        assert (out / "plots" / plot).read_bytes().startswith(b"\x89PNG")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("data-prep: warning:")]
    assert len(lines) == 2 and lines[1].startswith("data-prep: warning: 1 of 3 test examples (33.33%) also occur in train")


def test_data_prep_fails_before_writing_anything_when_told_to(tmp_path):
    std = load_standard(small_splits(tmp_path, ", checks: {max_overlap: 0.4, on_violation: fail}"))
    with pytest.raises(DataError, match=r"dev\.txt: data\.checks\.max_overlap: 1 of 2 validation examples \(50\.00%\)"):
        data_prep.run(std, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial"))


def test_data_prep_logs_the_report_through_the_tracker(tmp_path):
    class Recorder:
        run_id = None

        def __init__(self):
            self.artifacts, self.metrics = [], {}

        def log_params(self, params): ...
        def log_metrics(self, metrics, step=None): self.metrics.update(metrics)
        def log_artifact(self, path, folder=None): self.artifacts.append((Path(path).name, folder))
        def set_tags(self, tags): ...
        def log_dataset(self, name, source, digest, context): ...

    tracker = Recorder()
    data_prep.run(load_standard(small_splits(tmp_path)), tmp_path / "out", tracker)
    assert {("data_report.md", None), ("data_report.json", None), ("plots", "plots")} <= set(tracker.artifacts)
    assert tracker.metrics["test_overlap_exact"] == 1


def test_overlap_indices_read_back_what_data_prep_found(tmp_path):
    data_prep.run(load_standard(small_splits(tmp_path)), tmp_path / "out")
    assert data_report.overlap_indices(tmp_path / "out") == {"validation": [1], "test": [0]}
    assert data_report.overlap_indices(tmp_path) == {}  # a folder without a report


# ---------------------------------------------------------------------------------------
# Evaluation without the overlap


def test_evaluation_scores_test_again_without_the_sentences_train_holds(tmp_path, tiny_base):
    from nlpstd.runner import run_standard

    write_conll_splits(tmp_path)  # short sentences repeat there: most test sentences also occur in train
    std_file = write_standard(tmp_path, ner_yaml(tiny_base).replace("epochs: 3", "max_steps: 6"))
    summary = run_standard(std_file, tmp_path / "out", stages=["data-prep", "finetune", "evaluate"], tracking=False)
    out = tmp_path / "out"
    overlap = data_report.overlap_indices(out / "data-prep")["test"]
    assert 0 < len(overlap) < 24

    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    assert (metrics["clean"]["test"]["examples"], metrics["clean"]["test"]["excluded"]) == (24 - len(overlap), len(overlap))
    rows = [json.loads(line) for line in (out / "evaluate" / "predictions_test.jsonl").read_text().splitlines()]
    kept = [row for i, row in enumerate(rows) if i not in set(overlap)]
    expected = ner_metrics([row["gold"] for row in kept], [row["pred"] for row in kept])["f1"]
    assert metrics["test_clean_f1"] == pytest.approx(expected)
    assert summary["stages"]["evaluate"]["metrics"]["test_clean_f1"] == pytest.approx(expected)
    report = (out / "evaluate" / "report.md").read_text()
    assert f"| test_clean | {expected:.4f} |" in report
    assert f"`test_clean`: the {24 - len(overlap)} test examples that train does not hold ({len(overlap)} found" in report


# ---------------------------------------------------------------------------------------
# Real data


@needs_real_data
def test_conll_test_has_the_126_sentences_that_occur_verbatim_in_train(tmp_path, monkeypatch):
    """The count CoNLL-2003's own documentation gives: token sequences equal, -DOCSTART- lines not sentences."""
    monkeypatch.setenv("NLPSTD_DATA", str(DATA))
    standard = Path(__file__).resolve().parents[1] / "standards" / "conll2003-ner.yaml"
    metrics = data_prep.run(load_standard(standard), tmp_path / "out")
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert metrics["test_overlap_exact"] == 126
    assert report["overlap"]["test"]["examples"] == 3453
    assert report["splits"]["test"]["labels"] == {"LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617}
    assert len([item for item in report["overlap"]["test"]["items"] if item["match"] == "exact"]) == 126


# ---------------------------------------------------------------------------------------
# Vocabulary fit, length unit, spans inside words, what overlap was compared with

CHINESE = ["我们今天在北京看到了很多美丽的风景", "微博网友说这家餐厅的菜很好吃", "张三丰在武当山修炼太极拳"]


def chinese_sentence(text: str, line: int = 1) -> dict:
    """A CoNLL record with one character per token, as the Weibo files give them (position digits stripped)."""
    return {"tokens": list(text), "tags": ["O"] * len(text), "line": line}


def test_a_chinese_split_read_with_the_english_base_is_mostly_unknown_and_warns(tokenizer):
    report = data_report.build(prepared(TOKEN, train=[chinese_sentence(t) for t in CHINESE],
                                        validation=[chinese_sentence(CHINESE[0])]), tokenizer, "the base's", 64)
    fit = report["splits"]["train"]["vocabulary"]
    assert fit["unknown_share"] > 0.5 and fit["unknown_char_share"] > 0.5
    assert fit["unknown"] == fit["unknown_chars"]  # one character per piece here: each unknown piece loses one
    warnings = data_report.check(report, DataChecks(max_overlap=None), {})
    assert len(warnings) == 2 and warnings[0].startswith(f"{fit['unknown_share']:.1%} of train's sub-words are [UNK]")
    assert "above data.checks.max_unknown_share 0.05" in warnings[0] and "tokenizer: {train: wordpiece}" in warnings[0]
    assert "## Vocabulary fit" in data_report.markdown(report, [])


def test_english_text_has_almost_no_unknown_sub_words(tokenizer):
    records = [sentence("EU rejects German call to boycott British lamb ."), sentence("Peter Blackburn"), sentence("LONDON 1996-08-30")]
    fit = data_report.vocabulary_fit(tokenizer, records)
    assert (fit["unknown"], fit["unknown_chars"], fit["chars"]) == (0, 0, 70)


def test_only_characters_that_no_known_piece_covers_are_lost(tokenizer):
    fit = data_report.vocabulary_fit(tokenizer, [example("naïve café \U0001d11e ok")])  # a musical symbol the vocabulary lacks
    assert (fit["subwords"], fit["unknown"]) == (4, 1)
    assert (fit["chars"], fit["unknown_chars"]) == (12, 1)


def test_an_unknown_share_above_the_limit_with_on_violation_fail_stops_data_prep_in_one_line(tmp_path):
    chinese = "\n\n".join("\n".join(f"{char} O" for char in text) for text in CHINESE) + "\n"
    path = conll_standard(tmp_path, chinese.replace("北 O", "北 B-LOC"), chinese, chinese,
                          ", checks: {max_overlap: null, on_violation: fail}")
    with pytest.raises(DataError) as caught:
        data_prep.run(load_standard(path), tmp_path / "out")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'train.txt'}: data.checks.max_unknown_share: ")
    assert "\n" not in message and "choose a model.base for its language" in message
    assert not (tmp_path / "out").exists()


def test_without_a_tokenizer_the_vocabulary_fit_is_said_to_be_not_measured():
    report = data_report.build(prepared(CLASS, train=[example("a b")], validation=[example("c")]), None, "not measured: trained later", 16)
    assert "vocabulary" not in report["splits"]["train"]
    assert "## Vocabulary fit\n\nNot measured: trained later." in data_report.markdown(report, [])


def test_lengths_are_in_characters_for_text_written_without_spaces():
    records = [example("我们今天在北京，看到了 Weibo"), example("很好吃")]
    assert data_report.length_unit(records) == "characters"
    report = data_report.build(prepared(CLASS, train=records, validation=[example("好")]), None, "", 16)
    assert report["length_unit"] == "characters"
    assert report["splits"]["train"]["lengths"]["max"] == 16  # 11 ideographs and a comma, 5 Latin letters, the space not counted
    text = data_report.markdown(report, [])
    assert "characters mean / p95 / max" in text and "Lengths are in characters" in text


def test_lengths_stay_in_words_for_space_separated_text():
    report = data_report.build(prepared(CLASS, train=[example("a great film, in Beijing 北京")], validation=[example("b")]), None, "", 16)
    assert report["length_unit"] == "words" and report["splits"]["train"]["lengths"]["max"] == 6
    assert "words mean / p95 / max" in data_report.markdown(report, [])


def test_when_train_is_cut_the_overlap_says_it_compared_only_the_first_training_examples(tmp_path, capsys):
    data_prep.run(load_standard(small_splits(tmp_path, ", max_train_examples: 3")), tmp_path / "out")
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert (report["overlap"]["test"]["train_examples"], report["overlap"]["test"]["train_file_examples"]) == (3, 4)
    against = "the first 3 of 4 train examples (data.max_train_examples; the rest were not compared)"
    assert f"Compared with {against}" in (tmp_path / "out" / "data_report.md").read_text()
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("data-prep: warning:")]
    assert warnings and all(f"also occur in {against}" in line for line in warnings)


def test_gold_spans_inside_words_are_counted_and_listed_with_their_line(tmp_path, tokenizer):
    records = [{"text": "Smithsons met Anna in Oslo", "spans": [[0, 5, "PER"], [14, 18, "PER"], [22, 26, "LOC"]], "line": 4},
               {"text": "Rome", "spans": [[0, 4, "LOC"]], "line": 7}]
    report = data_report.build(prepared(TOKEN, train=records, validation=records[1:]), tokenizer, "the base's", 32)
    aligned = report["splits"]["train"]["alignment"]
    assert (aligned["spans"], aligned["unaligned"], aligned["unaligned_share"]) == (4, 1, 0.25)
    assert aligned["items"] == [{"index": 0, "line": 4, "start": 0, "end": 5, "label": "PER", "span": "Smith",
                                 "text": "Smithsons met Anna in Oslo"}]
    warnings = data_report.check(report, DataChecks(max_overlap=None), {})
    assert warnings == ["1 of 4 train gold spans (25.00%) start or end inside a word (first: line 4, PER 'Smith'), above "
                        "data.checks.max_unaligned_spans 0: they are tagged on whole words, not as annotated"]
    assert "| 4 | PER | 0-5 | Smith | Smithsons met Anna in Oslo |" in data_report.markdown(report, [])
    with pytest.raises(DataError, match=r"data\.checks\.max_unaligned_spans: 1 of 4 train gold spans"):
        data_report.check(report, DataChecks(max_overlap=None, on_violation="fail"), {"train": "train.jsonl"})
