"""Bad data files: rows, columns, labels, encodings and spans, per reader."""

from __future__ import annotations

from tests.bad_input.case import (CLASS_JSONL, CLASS_JSONL_FILES, CONLL, CONLL_FILES, CSV, CSV_FILES, SPANS, SPANS_FILES,
                                  TSV, TSV_FILES, Case, run_standard)


def case(id: str, standard: str, files: dict, file: str, line: int | None, field: str | None, message: str) -> Case:
    return Case(id, **run_standard(standard, files, file=file, line=line, field=field, message=message))


CASES = [
    # -- CoNLL
    case("conll-wrong-column-count", CONLL, {**CONLL_FILES, "train.txt": "EU NNP B-ORG\nrejects O\n"},
         "train.txt", 2, "columns", "wrong column count: expected 3 fields"),
    case("conll-bad-tag", CONLL, {**CONLL_FILES, "train.txt": "EU B-ORG\n\nPeter PER\n"},
         "train.txt", 3, "tag", "'PER' is not an IOB2 tag"),
    case("conll-dev-tag-not-in-train", CONLL, {**CONLL_FILES, "dev.txt": "Peter B-PER\n\nvisits O\nParis B-LOC\n"},
         "dev.txt", 4, "tag", "'LOC'"),
    case("conll-not-utf8", CONLL, {**CONLL_FILES, "train.txt": b"EU B-ORG\nrejects O\nZ\xfcrich B-ORG\n"},
         "train.txt", 3, "encoding", "0xfc"),
    # -- TSV / CSV
    case("tsv-no-label-column", TSV, {**TSV_FILES, "train.tsv": "text\tclass\ngreat film\tpos\n"},
         "train.tsv", 1, "label", "no such column"),
    case("tsv-wrong-column-count", TSV, {**TSV_FILES, "train.tsv": "text\tlabel\ngreat film\tpos\ndull\tplot\tneg\n"},
         "train.tsv", 3, "columns", "wrong column count: expected 2 fields"),
    case("tsv-empty-text", TSV, {**TSV_FILES, "dev.tsv": "text\tlabel\nfine acting\tpos\n \tneg\n"},
         "dev.tsv", 3, "text", "empty text"),
    case("csv-label-not-in-train", CSV, {**CSV_FILES, "dev.csv": "text,label\nfine acting,pos\nso-so,neutral\n"},
         "dev.csv", 3, "label", "'neutral' is not in train's labels"),
    # -- JSON Lines
    case("jsonl-invalid-json", CLASS_JSONL, {**CLASS_JSONL_FILES, "dev.jsonl": '{"text": "fine", "label": "pos"}\n{"text": "boring", "label": "neg"\n'},
         "dev.jsonl", 2, "json", "invalid JSON"),
    case("jsonl-span-beyond-text", SPANS, {**SPANS_FILES, "train.jsonl": '{"text": "Anna left", "entities": [[0, 4, "PER"]]}\n{"text": "Bo", "entities": [[0, 9, "PER"]]}\n'},
         "train.jsonl", 2, "entities[0].end", "beyond the end of the text"),
    case("jsonl-overlapping-spans", SPANS, {**SPANS_FILES, "train.jsonl": '{"text": "New York City", "entities": [[0, 8, "LOC"], [4, 13, "LOC"]]}\n'},
         "train.jsonl", 1, "entities[1]", "overlaps entities[0]"),
]
