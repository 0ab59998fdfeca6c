"""One bad input, one expected error: the shape every table of the bad-input suite shares.

A case writes its inputs into an empty folder, runs `nlpstd ARGV` once in this process, and
expects exit code 2 and exactly one line on stderr:

    error: <file>:<line>: <field>: <message>     (a place in a file)
    error: <file>: <field>: <message>            (a file with no line: a model folder's config.json)
    error: <field>: <message>                    (no file: a command-line flag)

`file` is compared by name (the folder it lies in does not matter), `message` is a piece of
the text after the field. Nothing may be left behind: no out folder, nothing new beside the inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

import pytest

# Special file contents: `FIFO` makes a named pipe (reading it would block), `DIRECTORY` a folder.
FIFO = object()
DIRECTORY = object()


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    """`nlpstd` arguments; `{standard}`, `{inputs}` and `{out}` are replaced by paths."""
    file: str | None
    line: int | None
    field: str | None
    message: str
    standard: str | None = None
    """Written as `inputs/standard.yaml` when set."""
    files: Mapping[str, str | bytes | object] = dataclass_field(default_factory=dict)
    """Written under `inputs/` (text as UTF-8, bytes as they are, FIFO and DIRECTORY as such)."""
    setup: Callable[[Path], None] | None = None
    """Anything more to prepare in `inputs/` (a model folder, say); runs after `files` are written."""
    env: Mapping[str, str] = dataclass_field(default_factory=dict)

    def param(self):
        return pytest.param(self, id=self.id)


def run_standard(standard: str, files: Mapping[str, str | bytes | object], **expected) -> dict:
    """The keyword arguments of a `nlpstd run` case: the standard, its data, and the expected error."""
    return {"argv": ("run", "{standard}", "--out", "{out}", "--no-tracking"), "standard": standard, "files": files, **expected}


def edited(text: str, old: str, new: str) -> str:
    """`text` with its one occurrence of `old` replaced (so a typo here cannot leave it intact)."""
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


# ---------------------------------------------------------------------------------------
# Baselines: a standard per format and a few sentences of data each, all well formed
# (test_bad_input.py proves it). Line numbers of the standard are fixed, so a case's expected
# line can be read off this template.

STANDARD = """\
name: bad-input
task: {task}
data:
  format: {format}
  train: {train}
  validation: {validation}
model:
  base: minilm-l6
finetune:
  epochs: 1
  lr: 1.0e-4
evaluate:
  gate:
    metric: f1
"""
TOKEN, CLASS = "token-classification", "sequence-classification"

CONLL = STANDARD.format(task=TOKEN, format="conll", train="train.txt", validation="dev.txt")
CONLL_FILES = {
    "train.txt": "EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n\nPeter B-PER\nBlackburn I-PER\n",
    "dev.txt": "Peter B-PER\nspoke O\n\nEU B-ORG\n",
}

TSV = STANDARD.format(task=CLASS, format="tsv", train="train.tsv", validation="dev.tsv")
TSV_FILES = {
    "train.tsv": "text\tlabel\ngreat film\tpos\ndull plot\tneg\nloved it\tpos\n",
    "dev.tsv": "text\tlabel\nfine acting\tpos\nboring\tneg\n",
}

CSV = STANDARD.format(task=CLASS, format="csv", train="train.csv", validation="dev.csv")
CSV_FILES = {
    "train.csv": 'text,label\n"great, really",pos\ndull plot,neg\n',
    "dev.csv": "text,label\nfine acting,pos\nboring,neg\n",
}

CLASS_JSONL = STANDARD.format(task=CLASS, format="jsonl", train="train.jsonl", validation="dev.jsonl")
CLASS_JSONL_FILES = {
    "train.jsonl": '{"text": "great film", "label": "pos"}\n{"text": "dull plot", "label": "neg"}\n',
    "dev.jsonl": '{"text": "fine acting", "label": "pos"}\n{"text": "boring", "label": "neg"}\n',
}

SPANS = STANDARD.format(task=TOKEN, format="jsonl", train="train.jsonl", validation="dev.jsonl")
SPANS_FILES = {
    "train.jsonl": (
        '{"text": "Peter lives in Paris", "entities": [{"start": 0, "end": 5, "label": "PER"},'
        ' {"start": 15, "end": 20, "label": "LOC"}]}\n'
        '{"text": "Anna left", "entities": [{"start": 0, "end": 4, "label": "PER"}]}\n'
    ),
    "dev.jsonl": '{"text": "Paris waits", "entities": [{"start": 0, "end": 5, "label": "LOC"}]}\n',
}

BASELINES = {"conll": (CONLL, CONLL_FILES), "tsv": (TSV, TSV_FILES), "csv": (CSV, CSV_FILES),
             "class-jsonl": (CLASS_JSONL, CLASS_JSONL_FILES), "spans-jsonl": (SPANS, SPANS_FILES)}
