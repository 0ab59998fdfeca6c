"""Which examples a limit keeps (`data.sample`), the warning when it leaves labels out, and held-out
splits cut from train (`data.split_from_train`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from nlpstd.data import report as data_report
from nlpstd.data.prepare import check_data, fingerprint, load, prepare, save
from nlpstd.data.sampling import labels_of
from nlpstd.errors import DataError
from nlpstd.spec import Standard
from nlpstd.stages import data_prep

TOKEN, CLASS = "token-classification", "sequence-classification"


def standard(folder: Path, files: dict[str, str], task: str = CLASS, fmt: str = "csv", seed: int = 42, **options) -> Standard:
    """Write `files` (split -> content) as <split>.<fmt> in `folder`, and a standard reading them."""
    folder.mkdir(parents=True, exist_ok=True)
    data: dict = {"format": fmt, **options}
    for split, content in files.items():
        (folder / f"{split}.{fmt}").write_text(content, encoding="utf-8")
        data[split] = f"{split}.{fmt}"
    std = {"name": "t", "task": task, "seed": seed, "data": data, "model": {"base": "minilm-l6"}}
    return Standard.model_validate(std, context={"base_dir": str(folder)})


def sorted_csv(sizes: dict[str, int]) -> str:
    """A CSV sorted by class: `sizes[label]` rows of each label, one block after another."""
    rows = [f"example {label} {i},{label}" for label, count in sizes.items() for i in range(count)]
    return "text,label\n" + "".join(f"{row}\n" for row in rows)


SORTED = sorted_csv({"neg": 60, "neutral": 25, "pos": 15})
DEV = sorted_csv({"neg": 3, "neutral": 3, "pos": 3})


def labels(records: list[dict]) -> Counter:
    return Counter(record["label"] for record in records)


def conll_sentences(count: int) -> str:
    """`count` CoNLL sentences: mostly persons, every tenth a place, one an organisation."""
    blocks = []
    for i in range(count):
        tag = "B-ORG" if i == count - 1 else "B-LOC" if i % 10 == 0 else "B-PER"
        blocks.append(f"Name{i} {tag}\nspoke O")
    return "\n\n".join(blocks) + "\n"


# ---------------------------------------------------------------------------------------
# data.sample


def test_head_keeps_the_first_examples_as_before(tmp_path):
    std = standard(tmp_path, {"train": SORTED, "validation": DEV}, max_train_examples=70)
    kept = prepare(std).splits["train"]
    assert [r["line"] for r in kept] == list(range(2, 72))


def test_head_fingerprint_does_not_depend_on_the_seed(tmp_path):
    one = standard(tmp_path / "a", {"train": SORTED, "validation": DEV}, seed=1, max_train_examples=70)
    two = standard(tmp_path / "b", {"train": SORTED, "validation": DEV}, seed=2, max_train_examples=70)
    assert fingerprint(one.data, one.seed) == fingerprint(two.data, two.seed)


def test_random_sample_is_seeded_and_keeps_file_order(tmp_path):
    std = standard(tmp_path, {"train": SORTED, "validation": DEV}, sample="random", max_train_examples=30)
    first, again = prepare(std).splits["train"], prepare(std).splits["train"]
    lines = [r["line"] for r in first]
    assert first == again and lines == sorted(lines) and len(lines) == 30
    assert lines != list(range(2, 32))


def test_random_sample_changes_with_the_seed(tmp_path):
    one = standard(tmp_path / "a", {"train": SORTED, "validation": DEV}, seed=1, sample="random", max_train_examples=30)
    two = standard(tmp_path / "b", {"train": SORTED, "validation": DEV}, seed=2, sample="random", max_train_examples=30)
    assert prepare(one).splits["train"] != prepare(two).splits["train"]
    assert fingerprint(one.data, one.seed) != fingerprint(two.data, two.seed)


def test_stratified_sample_keeps_each_labels_share(tmp_path):
    std = standard(tmp_path, {"train": SORTED, "validation": DEV}, sample="stratified", max_train_examples=20)
    assert labels(prepare(std).splits["train"]) == {"neg": 12, "neutral": 5, "pos": 3}


def test_stratified_sample_keeps_every_label_when_it_holds_as_many_examples(tmp_path):
    rare = sorted_csv({"neg": 95, "neutral": 4, "pos": 1})
    std = standard(tmp_path, {"train": rare, "validation": DEV}, sample="stratified", max_train_examples=3)
    assert labels(prepare(std).splits["train"]) == {"neg": 1, "neutral": 1, "pos": 1}


def test_stratified_sample_of_token_data_keeps_every_entity_type(tmp_path):
    std = standard(tmp_path, {"train": conll_sentences(50), "validation": "Name0 B-PER\n"}, task=TOKEN, fmt="conll",
                   sample="stratified", max_train_examples=3)
    kept = prepare(std).splits["train"]
    assert set().union(*(labels_of(record) for record in kept)) == {"LOC", "ORG", "PER"}


def test_eval_limit_samples_validation_with_the_same_mode(tmp_path):
    dev = sorted_csv({"neg": 30, "pos": 30})
    std = standard(tmp_path, {"train": SORTED, "validation": dev}, sample="stratified", max_eval_examples=10)
    assert labels(prepare(std).splits["validation"]) == {"neg": 5, "pos": 5}


# ---------------------------------------------------------------------------------------
# The warning when a limit leaves labels out


def test_head_on_a_sorted_file_keeps_one_class_and_warns(tmp_path):
    std = standard(tmp_path, {"train": SORTED, "validation": DEV}, max_train_examples=70, checks={"max_overlap": None})
    checked = check_data(std)
    assert set(labels(checked.prepared.splits["train"])) == {"neg", "neutral"}
    [warning] = checked.warnings
    assert "data.max_train_examples keeps 70 of 100 train examples with 2 of its 3 labels (missing: pos)" in warning
    assert "file may be sorted" in warning and "data.sample: stratified" in warning


def test_validate_prints_the_limit_warning_without_tying_it_to_on_violation(tmp_path, capsys):
    from nlpstd.cli import main

    standard(tmp_path, {"train": SORTED, "validation": DEV})  # writes the data files
    (tmp_path / "standard.yaml").write_text("name: t\ntask: sequence-classification\nmodel: {base: minilm-l6}\ndata:\n"
                                            "  format: csv\n  train: train.csv\n  validation: validation.csv\n"
                                            "  max_train_examples: 70\n  checks: {max_overlap: null}\n", encoding="utf-8")
    assert main(["validate", str(tmp_path / "standard.yaml")]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert line.startswith("warning: data.max_train_examples keeps 70 of 100 train examples") and "on_violation" not in line


def test_stratified_on_a_sorted_file_keeps_every_class_without_warning(tmp_path):
    std = standard(tmp_path, {"train": SORTED, "validation": DEV}, sample="stratified", max_train_examples=10,
                   checks={"max_overlap": None})
    checked = check_data(std)
    assert set(labels(checked.prepared.splits["train"])) == {"neg", "neutral", "pos"}
    assert checked.warnings == []


def test_data_prep_prints_the_warning_and_writes_it_in_the_report(tmp_path, caplog):
    std = standard(tmp_path, {"train": SORTED, "validation": DEV}, max_train_examples=70, checks={"max_overlap": None})
    with caplog.at_level("WARNING"):
        data_prep.run(std, tmp_path / "out")
    assert "data-prep: warning: data.max_train_examples keeps 70 of 100 train examples with 2 of its 3 labels" in caplog.text
    markdown = (tmp_path / "out" / "data_report.md").read_text()
    assert "**Checks: 1 warning**" in markdown and "(missing: pos)" in markdown
    assert "| train | max_train_examples | 70 of 100 | data.sample: head | 2 of 3 |" in markdown


def test_data_prep_with_stratified_sample_reports_no_warning(tmp_path):
    std = standard(tmp_path, {"train": SORTED, "validation": DEV}, sample="stratified", max_train_examples=10,
                   checks={"max_overlap": None})
    data_prep.run(std, tmp_path / "out")
    markdown = (tmp_path / "out" / "data_report.md").read_text()
    assert "**Checks: passed**" in markdown and "| 3 of 3 |" in markdown


# ---------------------------------------------------------------------------------------
# data.split_from_train


def test_carved_validation_is_a_seeded_stratified_share_of_train(tmp_path):
    std = standard(tmp_path, {"train": SORTED}, split_from_train={"validation": 0.2})
    prepared = prepare(std)
    assert labels(prepared.splits["validation"]) == {"neg": 12, "neutral": 5, "pos": 3}
    assert len(prepared.splits["train"]) == 80 and prepared.splits == prepare(std).splits


def test_carved_splits_do_not_share_examples_and_cover_the_file(tmp_path):
    std = standard(tmp_path, {"train": SORTED}, split_from_train={"validation": 0.1, "test": 0.1})
    splits = prepare(std).splits
    lines = [r["line"] for split in ("train", "validation", "test") for r in splits[split]]
    assert sorted(lines) == list(range(2, 102)) and list(splits) == ["train", "validation", "test"]


def test_carved_split_without_stratify_is_a_random_share(tmp_path):
    std = standard(tmp_path, {"train": SORTED}, split_from_train={"validation": 0.3, "stratify": False})
    validation = prepare(std).splits["validation"]
    assert len(validation) == 30 and [r["line"] for r in validation] == sorted(r["line"] for r in validation)


def test_carved_split_keeps_every_label_in_train(tmp_path):
    rare = sorted_csv({"neg": 95, "neutral": 4, "pos": 1})
    std = standard(tmp_path, {"train": rare}, split_from_train={"validation": 0.5})
    assert set(labels(prepare(std).splits["train"])) == {"neg", "neutral", "pos"}


def test_limits_apply_to_what_remains_after_the_cut(tmp_path):
    std = standard(tmp_path, {"train": SORTED}, split_from_train={"validation": 0.2}, max_train_examples=10, max_eval_examples=5,
                   sample="stratified")
    prepared = prepare(std)
    assert (len(prepared.splits["train"]), len(prepared.splits["validation"])) == (10, 5)
    assert prepared.read == {"train": 80, "validation": 20}


def test_carved_split_names_the_train_file_as_its_source(tmp_path):
    std = standard(tmp_path, {"train": SORTED}, split_from_train={"validation": 0.2})
    prepared = prepare(std)
    assert prepared.sources["validation"] == prepared.sources["train"] == str(tmp_path / "train.csv")
    assert prepared.carved["validation"] == {"from": "train", "file": str(tmp_path / "train.csv"), "share": 0.2,
                                             "examples": 20, "train_examples": 100, "stratified": True, "seed": 42}


def test_the_cut_is_saved_and_loaded_with_the_prepared_data(tmp_path):
    prepared = prepare(standard(tmp_path, {"train": SORTED}, split_from_train={"validation": 0.2}))
    save(prepared, tmp_path / "out")
    assert load(tmp_path / "out").carved == prepared.carved


def test_the_cut_counts_in_the_fingerprint(tmp_path):
    plain = standard(tmp_path / "a", {"train": SORTED, "validation": DEV})
    cut = standard(tmp_path / "b", {"train": SORTED}, split_from_train={"validation": 0.2})
    other_seed = standard(tmp_path / "c", {"train": SORTED}, seed=7, split_from_train={"validation": 0.2})
    prints = {fingerprint(s.data, s.seed) for s in (plain, cut, other_seed)}
    assert len(prints) == 3


def test_the_report_says_which_split_was_cut_from_where(tmp_path):
    std = standard(tmp_path, {"train": SORTED}, split_from_train={"validation": 0.2}, checks={"max_overlap": None})
    data_prep.run(std, tmp_path / "out")
    markdown = (tmp_path / "out" / "data_report.md").read_text()
    assert "## Splits cut from train" in markdown
    assert f"| validation | {tmp_path / 'train.csv'} | 20 of 100 | 0.2 | yes | 42 |" in markdown


def test_a_label_only_the_cut_holds_is_refused_at_its_train_file_line(tmp_path):
    one = sorted_csv({"neg": 10, "pos": 9, "odd": 1})  # seed 0 draws the one `odd` row into validation
    std = standard(tmp_path, {"train": one}, split_from_train={"validation": 0.5, "stratify": False}, seed=0)
    with pytest.raises(DataError, match="'odd' is not in train's labels") as caught:
        prepare(std)
    assert (caught.value.file, caught.value.line) == (str(tmp_path / "train.csv"), 21)


def test_a_share_smaller_than_one_example_is_refused(tmp_path):
    std = standard(tmp_path, {"train": sorted_csv({"neg": 2, "pos": 2})}, split_from_train={"validation": 0.1})
    with pytest.raises(DataError, match="less than one example"):
        prepare(std)


def test_overlap_with_a_sampled_train_says_how_it_was_chosen(tmp_path):
    std = standard(tmp_path, {"train": SORTED, "validation": DEV}, sample="random", max_train_examples=30)
    report = data_report.build(prepare(std), None, "not measured", 32)
    assert "a random sample of 30 of 100 train examples" in data_report.compared_with(report["overlap"]["validation"])
