"""Bad input in sampling (`data.sample`, example limits), held-out splits cut from train
(`data.split_from_train`) and text hygiene (control characters): see each case's id."""

from __future__ import annotations

from tests.bad_input.case import CONLL, CONLL_FILES, CSV, CSV_FILES, Case, edited, run_standard


def case(id: str, standard: str, files: dict, file: str, line: int | None, field: str | None, message: str) -> Case:
    return Case(id, **run_standard(standard, files, file=file, line=line, field=field, message=message))


def with_data(standard: str, setting: str) -> str:
    """`standard` with one more line in its data section (line 7 of the baseline)."""
    return edited(standard, "model:\n", f"  {setting}\nmodel:\n")


def carved(standard: str, setting: str) -> str:
    """`standard` without its validation file, cutting it from train instead (`setting`, line 6)."""
    return edited(standard, "  validation: dev.csv\n", f"  {setting}\n")


def csv_rows(*rows: str) -> str:
    return "text,label\n" + "".join(f"{row}\n" for row in rows)


SORTED_CSV = csv_rows("dull plot,neg", "bad film,neg", "boring,neg", "great film,pos", "loved it,pos")

CASES = [
    # -- data.split_from_train
    case("carve-share-under-one-example", carved(CSV, "split_from_train: {validation: 0.1}"), CSV_FILES,
         "train.csv", None, "data.split_from_train.validation", "0.1 of 2 train examples is less than one example"),
    case("carve-stratified-leaves-fewer-examples-than-labels", carved(CSV, "split_from_train: {validation: 0.45, test: 0.44}"),
         {**CSV_FILES, "train.csv": csv_rows("good,pos", "bad,neg", "fine,pos")},
         "train.csv", None, "data.split_from_train", "leaves 1 to train on, fewer than one example of each of train's 2 labels"),
    case("carve-unstratified-leaves-a-label-to-validation-only", carved(CSV, "split_from_train: {validation: 0.5, stratify: false}"),
         {**CSV_FILES, "train.csv": csv_rows(*[f"fine {i},pos" for i in range(9)], *[f"dull {i},neg" for i in range(10)], "odd one,odd")},
         "train.csv", 21, "label", "label 'odd' is not in train's labels (neg, pos)"),
    case("carve-validation-also-given-as-a-file", with_data(CSV, "split_from_train: {validation: 0.1}"), CSV_FILES,
         "standard.yaml", 7, "data.split_from_train.validation", "data.validation is a file already; cut it from train or read it"),
    case("carve-shares-leave-too-little-train", carved(CSV, "split_from_train: {validation: 0.5, test: 0.4}"), CSV_FILES,
         "standard.yaml", 6, "data.split_from_train", "would leave less than a tenth of train"),
    case("carve-share-not-below-one", carved(CSV, "split_from_train: {validation: 1.5}"), CSV_FILES,
         "standard.yaml", 6, "data.split_from_train.validation", "must be < 1, got 1.5"),
    # -- data.sample and the limits
    case("sample-unknown-mode", with_data(CSV, "sample: shuffle"), CSV_FILES,
         "standard.yaml", 7, "data.sample", "'shuffle'"),
    case("head-limit-on-a-sorted-file-keeps-one-class", with_data(CSV, "max_train_examples: 3"),
         {**CSV_FILES, "train.csv": SORTED_CSV},
         "train.csv", 2, "label", "all have the label 'neg', while line 5 has 'pos'; a classifier needs at least two classes: "
                                  "raise max_train_examples, or set data.sample: stratified"),
    case("conll-head-limit-keeps-no-entity-suggests-stratified", with_data(CONLL, "max_train_examples: 1"),
         {**CONLL_FILES, "train.txt": "the O\nrain O\n\nPeter B-PER\n"},
         "train.txt", 1, "tag", "or set data.sample: stratified"),
    # -- control characters
    case("control-characters-over-the-limit-fail", with_data(CSV, "checks: {max_control_characters: 0.1, on_violation: fail}"),
         {**CSV_FILES, "train.csv": csv_rows("great\x07 film,pos", "dull plot,neg")},
         "train.csv", None, "data.checks.max_control_characters", "1 of 2 train examples (50.00%) hold control characters"),
    case("control-characters-in-validation-over-the-limit-fail", with_data(CSV, "checks: {max_control_characters: 0, on_violation: fail}"),
         {**CSV_FILES, "dev.csv": csv_rows("fine\x1b acting,pos", "boring,neg")},
         "dev.csv", None, "data.checks.max_control_characters", "first: line 2, U+001B"),
    case("control-characters-unknown-setting", with_data(CSV, "control_characters: strip"), CSV_FILES,
         "standard.yaml", 7, "data.control_characters", "'strip'"),
]
