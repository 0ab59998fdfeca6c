"""Bad data files: rows, columns, labels, encodings, text and spans per reader, training data a model
cannot learn from, the data checks, and pretraining corpus files."""

from __future__ import annotations

from tests.bad_input.case import (
    CLASS_JSONL,
    CLASS_JSONL_FILES,
    CONLL,
    CONLL_FILES,
    CSV,
    CSV_FILES,
    DIRECTORY,
    FIFO,
    SPANS,
    SPANS_FILES,
    TSV,
    TSV_FILES,
    Case,
    edited,
    run_standard,
)


def case(id: str, standard: str, files: dict, file: str, line: int | None, field: str | None, message: str) -> Case:
    return Case(id, **run_standard(standard, files, file=file, line=line, field=field, message=message))


def with_data(standard: str, setting: str) -> str:
    """`standard` with one more line in its data section."""
    return edited(standard, "model:\n", f"  {setting}\nmodel:\n")


def jsonl(*lines: str) -> str:
    return "".join(f"{line}\n" for line in lines)


def with_corpus(files: str, held_out: str = "held_out_fraction: 0.1") -> str:
    """The CoNLL baseline with pretraining on `files` (a YAML list)."""
    return CONLL + f"pretrain:\n  enabled: true\n  corpus:\n    files: {files}\n    {held_out}\n"


CORPUS = with_corpus("[corpus.txt]")
CORPUS_FILES = {**CONLL_FILES, "corpus.txt": "A first paragraph.\n\nA second one.\n"}
CORPUS_KEY = "pretrain.corpus.files[0]"

CASES = [
    # -- CoNLL
    case("conll-wrong-column-count", CONLL, {**CONLL_FILES, "train.txt": "EU NNP B-ORG\nrejects O\n"},
         "train.txt", 2, "columns", "wrong column count: expected 3 fields"),
    case("conll-token-not-matching-token-pattern", edited(CONLL, "  validation: dev.txt\n", "  validation: dev.txt\n  token_pattern: '(.+?)[0-9]+'\n"),
         {"train.txt": "科0 B-ORG\n技1 O\n\n全0 B-PER\n方 O\n", "dev.txt": "科0 B-ORG\n"},
         "train.txt", 5, "token", "'方' does not match data.token_pattern '(.+?)[0-9]+'"),
    case("conll-bad-tag", CONLL, {**CONLL_FILES, "train.txt": "EU B-ORG\n\nPeter PER\n"},
         "train.txt", 3, "tag", "'PER' is not an IOB2 tag"),
    case("conll-dev-tag-not-in-train", CONLL, {**CONLL_FILES, "dev.txt": "Peter B-PER\n\nvisits O\nParis B-LOC\n"},
         "dev.txt", 4, "tag", "'LOC'"),
    case("conll-not-utf8", CONLL, {**CONLL_FILES, "train.txt": b"EU B-ORG\nrejects O\nZ\xfcrich B-ORG\n"},
         "train.txt", 3, "encoding", "0xfc"),
    case("conll-utf8-cut-off-at-the-end", CONLL, {**CONLL_FILES, "train.txt": b"EU B-ORG\nrejects O\nZ\xc3"},
         "train.txt", 3, "encoding", "0xc3"),
    case("conll-nul-in-token", CONLL, {**CONLL_FILES, "train.txt": "EU B-ORG\nrej\x00ects O\n"},
         "train.txt", 2, "token", "a NUL character"),
    case("conll-nul-in-tag", CONLL, {**CONLL_FILES, "dev.txt": "Peter B-PER\x00\n"},
         "dev.txt", 1, "tag", "a NUL character"),
    case("conll-empty-file", CONLL, {**CONLL_FILES, "dev.txt": ""},
         "dev.txt", None, None, "no examples found: the file is empty"),
    case("conll-only-blank-lines", CONLL, {**CONLL_FILES, "train.txt": "\n \n\t\n-DOCSTART- O\n\n"},
         "train.txt", None, None, "only blank lines and -DOCSTART- markers"),
    case("conll-train-without-entities", CONLL, {**CONLL_FILES, "train.txt": "the O\nrain O\n\nfalls O\n"},
         "train.txt", 1, "tag", "no training example holds an entity (every tag is O)"),
    case("conll-train-cut-before-its-first-entity", with_data(CONLL, "max_train_examples: 1"),
         {**CONLL_FILES, "train.txt": "the O\nrain O\n\nPeter B-PER\n\nEU B-ORG\n"},
         "train.txt", 1, "tag", "kept by data.max_train_examples (1) hold no entity (every tag is O), while line 4 has one"),
    case("conll-duplicates-over-the-limit", with_data(CONLL, "checks: {max_duplicates: 0, on_violation: fail}"),
         {**CONLL_FILES, "train.txt": "EU B-ORG\nrejects O\n\nPeter B-PER\n\nEU B-ORG\nrejects O\n"},
         "train.txt", None, "data.checks.max_duplicates", "1 of 3 train examples"),
    # -- TSV / CSV
    case("tsv-no-label-column", TSV, {**TSV_FILES, "train.tsv": "text\tclass\ngreat film\tpos\n"},
         "train.tsv", 1, "label", "no such column"),
    case("tsv-wrong-column-count", TSV, {**TSV_FILES, "train.tsv": "text\tlabel\ngreat film\tpos\ndull\tplot\tneg\n"},
         "train.tsv", 3, "columns", "wrong column count: expected 2 fields"),
    case("tsv-empty-text", TSV, {**TSV_FILES, "dev.tsv": "text\tlabel\nfine acting\tpos\n \tneg\n"},
         "dev.tsv", 3, "text", "empty text"),
    case("tsv-empty-file", TSV, {**TSV_FILES, "train.tsv": ""},
         "train.tsv", None, None, "no examples found: the file is empty"),
    case("tsv-column-named-twice", TSV, {**TSV_FILES, "train.tsv": "text\tlabel\ttext\ngreat\tpos\tfilm\ndull\tneg\tplot\n"},
         "train.tsv", 1, "text", "names this column 2 times"),
    case("tsv-nul-in-text", TSV, {**TSV_FILES, "dev.tsv": "text\tlabel\nfine\x00acting\tpos\n"},
         "dev.tsv", 2, "text", "a NUL character (\\x00) at character 5"),
    case("tsv-field-past-the-size-limit", TSV, {**TSV_FILES, "train.tsv": TSV_FILES["train.tsv"] + "a" * 200_000 + "\tpos\n"},
         "train.tsv", 5, "columns", "a field longer than 131,072 characters"),
    case("tsv-train-with-one-class", TSV, {**TSV_FILES, "train.tsv": "text\tlabel\ngreat film\tpos\nloved it\tpos\n"},
         "train.tsv", 2, "label", "every training example has the label 'pos'; a classifier needs at least two classes"),
    case("tsv-overlap-with-train-over-the-limit", with_data(TSV, "checks: {max_overlap: 0.1, on_violation: fail}"),
         {**TSV_FILES, "dev.tsv": "text\tlabel\nGreat  FILM\tpos\nboring\tneg\n"},
         "dev.tsv", None, "data.checks.max_overlap", "1 of 2 validation examples (50.00%) also occur in train"),
    case("csv-label-not-in-train", CSV, {**CSV_FILES, "dev.csv": "text,label\nfine acting,pos\nso-so,neutral\n"},
         "dev.csv", 3, "label", "'neutral' is not in train's labels"),
    case("csv-header-only", CSV, {**CSV_FILES, "train.csv": "text,label\n"},
         "train.csv", None, None, "no examples found: only the header row"),
    case("csv-first-line-blank", CSV, {**CSV_FILES, "train.csv": "\ntext,label\ndull plot,neg\n"},
         "train.csv", 1, "columns", "the first line is blank"),
    case("csv-unclosed-quote", CSV, {**CSV_FILES, "train.csv": 'text,label\ndull plot,neg\n"great, really,pos\n'},
         "train.csv", 3, "columns", "malformed CSV row"),
    case("csv-nul-in-label", CSV, {**CSV_FILES, "dev.csv": "text,label\nfine acting,pos\x00\n"},
         "dev.csv", 2, "label", "a NUL character"),
    case("csv-train-cut-to-one-class", with_data(CSV, "max_train_examples: 1"), CSV_FILES,
         "train.csv", 2, "label", "kept by data.max_train_examples (1) all have the label 'pos', while line 3 has 'neg'"),
    # -- JSON Lines, classification
    case("jsonl-invalid-json", CLASS_JSONL, {**CLASS_JSONL_FILES, "dev.jsonl": '{"text": "fine", "label": "pos"}\n{"text": "boring", "label": "neg"\n'},
         "dev.jsonl", 2, "json", "invalid JSON"),
    case("jsonl-line-is-an-array", CLASS_JSONL, {**CLASS_JSONL_FILES, "dev.jsonl": '["fine acting", "pos"]\n'},
         "dev.jsonl", 1, "json", "expected one JSON object per line, got an array"),
    case("jsonl-line-is-a-number", CLASS_JSONL, {**CLASS_JSONL_FILES, "dev.jsonl": '{"text": "fine", "label": "pos"}\n42\n'},
         "dev.jsonl", 2, "json", "got a number"),
    case("jsonl-line-is-null", CLASS_JSONL, {**CLASS_JSONL_FILES, "train.jsonl": CLASS_JSONL_FILES["train.jsonl"] + "null\n"},
         "train.jsonl", 3, "json", "got null"),
    case("jsonl-integer-past-the-digit-limit", CLASS_JSONL, {**CLASS_JSONL_FILES, "dev.jsonl": '{"text": "fine", "label": ' + "7" * 5000 + "}\n"},
         "dev.jsonl", 1, "json", "4300 digits"),
    case("jsonl-nested-too-deeply", CLASS_JSONL, {**CLASS_JSONL_FILES, "dev.jsonl": '{"text": "fine", "label": ' + "[" * 100_000 + "]" * 100_000 + "}\n"},
         "dev.jsonl", 1, "json", "nested too deeply"),
    case("jsonl-label-null", CLASS_JSONL, {**CLASS_JSONL_FILES, "dev.jsonl": '{"text": "fine acting", "label": null}\n'},
         "dev.jsonl", 1, "label", "a label is a string, integer or boolean, got null"),
    case("jsonl-label-float", CLASS_JSONL, {**CLASS_JSONL_FILES, "train.jsonl": '{"text": "great film", "label": 1.5}\n'},
         "train.jsonl", 1, "label", "got 1.5"),
    case("jsonl-label-object", CLASS_JSONL, {**CLASS_JSONL_FILES, "dev.jsonl": '{"text": "fine acting", "label": {"name": "pos"}}\n'},
         "dev.jsonl", 1, "label", 'got {"name": "pos"}'),
    case("jsonl-text-number", CLASS_JSONL, {**CLASS_JSONL_FILES, "dev.jsonl": '{"text": 42, "label": "pos"}\n'},
         "dev.jsonl", 1, "text", "must be a string, got 42"),
    case("jsonl-nul-escape-in-text", CLASS_JSONL, {**CLASS_JSONL_FILES, "dev.jsonl": '{"text": "fine\\u0000acting", "label": "pos"}\n'},
         "dev.jsonl", 1, "text", "a NUL character"),
    case("jsonl-lone-surrogate-in-text", CLASS_JSONL, {**CLASS_JSONL_FILES, "train.jsonl": CLASS_JSONL_FILES["train.jsonl"] + '{"text": "bad \\ud800 half", "label": "neg"}\n'},
         "train.jsonl", 3, "text", "a lone surrogate '\\ud800' at character 5"),
    case("jsonl-lone-surrogate-in-label", CLASS_JSONL, {**CLASS_JSONL_FILES, "dev.jsonl": '{"text": "fine acting", "label": "po\\udc00s"}\n'},
         "dev.jsonl", 1, "label", "a lone surrogate"),
    case("jsonl-empty-file", CLASS_JSONL, {**CLASS_JSONL_FILES, "dev.jsonl": "\n\n"},
         "dev.jsonl", None, None, "no examples found"),
    case("jsonl-train-with-one-integer-class", CLASS_JSONL,
         {"train.jsonl": jsonl('{"text": "great film", "label": 1}', '{"text": "loved it", "label": 1}'),
          "dev.jsonl": jsonl('{"text": "fine acting", "label": 1}')},
         "train.jsonl", 1, "label", "every training example has the label '1'"),
    # -- JSON Lines, entity spans
    case("jsonl-span-beyond-text", SPANS, {**SPANS_FILES, "train.jsonl": '{"text": "Anna left", "entities": [[0, 4, "PER"]]}\n{"text": "Bo", "entities": [[0, 9, "PER"]]}\n'},
         "train.jsonl", 2, "entities[0].end", "beyond the end of the text"),
    case("jsonl-overlapping-spans", SPANS, {**SPANS_FILES, "train.jsonl": '{"text": "New York City", "entities": [[0, 8, "LOC"], [4, 13, "LOC"]]}\n'},
         "train.jsonl", 1, "entities[1]", "overlaps entities[0]"),
    case("spans-offset-float", SPANS, {**SPANS_FILES, "dev.jsonl": '{"text": "Paris waits", "entities": [[0.0, 5, "LOC"]]}\n'},
         "dev.jsonl", 1, "entities[0].start", "must be an integer, got 0.0"),
    case("spans-offset-boolean", SPANS, {**SPANS_FILES, "dev.jsonl": '{"text": "Paris waits", "entities": [{"start": 0, "end": true, "label": "LOC"}]}\n'},
         "dev.jsonl", 1, "entities[0].end", "must be an integer, got true"),
    case("spans-offset-string", SPANS, {**SPANS_FILES, "dev.jsonl": '{"text": "Paris waits", "entities": [["0", 5, "LOC"]]}\n'},
         "dev.jsonl", 1, "entities[0].start", 'must be an integer, got "0"'),
    case("spans-offset-negative", SPANS, {**SPANS_FILES, "dev.jsonl": '{"text": "Paris waits", "entities": [[-1, 5, "LOC"]]}\n'},
         "dev.jsonl", 1, "entities[0].start", "must be >= 0, got -1"),
    case("spans-entities-not-a-list", SPANS, {**SPANS_FILES, "dev.jsonl": '{"text": "Paris waits", "entities": "LOC"}\n'},
         "dev.jsonl", 1, "entities", 'must be a list of spans, got "LOC"'),
    case("spans-lone-surrogate-in-label", SPANS, {**SPANS_FILES, "dev.jsonl": '{"text": "Paris waits", "entities": [[0, 5, "\\udc00"]]}\n'},
         "dev.jsonl", 1, "entities[0].label", "a lone surrogate"),
    case("spans-type-not-in-train", SPANS, {**SPANS_FILES, "dev.jsonl": '{"text": "EU waits", "entities": [[0, 2, "ORG"]]}\n'},
         "dev.jsonl", 1, "entities[0].label", "'ORG' is not in train's types"),
    case("spans-train-without-entities", SPANS,
         {**SPANS_FILES, "train.jsonl": jsonl('{"text": "it rains", "entities": []}', '{"text": "it pours", "entities": []}')},
         "train.jsonl", 1, "entities", "no training example holds an entity (every entities list is empty)"),
    # -- pretraining corpus files
    case("corpus-named-pipe", CORPUS, {**CORPUS_FILES, "corpus.txt": FIFO},
         "corpus.txt", None, CORPUS_KEY, "a named pipe"),
    case("corpus-folder", CORPUS, {**CORPUS_FILES, "corpus.txt": DIRECTORY},
         "corpus.txt", None, CORPUS_KEY, "not a regular file but a folder"),
    case("corpus-endless-device", with_corpus("[/dev/zero]"), CONLL_FILES,
         "zero", None, CORPUS_KEY, "a character device"),
    case("corpus-missing-file", with_corpus("[corpus.txt, missing.txt]"), CORPUS_FILES,
         "missing.txt", None, "pretrain.corpus.files[1]", "cannot read the file"),
    case("corpus-pattern-matches-nothing", with_corpus("[books/*.txt]"), CORPUS_FILES,
         "*.txt", None, CORPUS_KEY, "the pattern matches no file"),
    case("corpus-held-out-named-pipe", with_corpus("[corpus.txt]", "held_out: [held.txt]"), {**CORPUS_FILES, "held.txt": FIFO},
         "held.txt", None, "pretrain.corpus.held_out[0]", "a named pipe"),
    case("corpus-empty", CORPUS, {**CORPUS_FILES, "corpus.txt": " \n\n\t\n"},
         "corpus.txt", None, CORPUS_KEY, "the corpus file is empty"),
    case("corpus-binary", CORPUS, {**CORPUS_FILES, "corpus.txt": b"PK\x03\x04\x00\x00binary"},
         "corpus.txt", None, CORPUS_KEY, "binary file"),
    case("corpus-declared-utf8-is-latin1", edited(CORPUS, "held_out_fraction: 0.1", "held_out_fraction: 0.1\n    encoding: utf-8"),
         {**CORPUS_FILES, "corpus.txt": "fine\nalso fine\nC\xe6sar\n".encode("latin-1")},
         "corpus.txt", 3, "encoding", "byte 0xe6 is not valid utf-8"),
]
