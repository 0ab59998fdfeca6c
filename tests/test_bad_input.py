"""Bad input stops `nlpstd run` before any training: one located error line, no output folder.

Every case starts from a well-formed standard and well-formed data (the baselines below, which
`test_baselines_are_well_formed` proves clean) and breaks exactly one thing. The table says
which file and line the error must point at, the field it must name, and a piece of the
message. All cases run through `nlpstd.cli.main` in this process (imports are slow, a few
seconds per process); a handful also run as a real `python -m nlpstd.cli` process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nlpstd import cli
from nlpstd.data.prepare import prepare
from nlpstd.spec import load_standard
from nlpstd.stages import finetune

UNSET_VAR = "NLPSTD_BAD_INPUT_NEVER_SET"

# ---------------------------------------------------------------------------------------
# Baselines: a standard per format and a few sentences of data each. Line numbers of the
# standard are fixed, so a table row's expected line can be read off this template.

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


def edited(text: str, old: str, new: str) -> str:
    """`text` with its one occurrence of `old` replaced (so a typo here cannot leave it intact)."""
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def case(id, standard, files, file, line, field, message):
    return pytest.param(standard, files, file, line, field, message, id=id)


# ---------------------------------------------------------------------------------------
# The table. `field` is what follows `file:line: ` in the error: the key path or data field,
# or, for YAML syntax errors, the start of the message.

CASES = [
    # -- the standard
    case("spec-unknown-key", edited(CONLL, "  epochs: 1", "  epoch: 1"), CONLL_FILES,
         "standard.yaml", 10, "finetune.epoch", "did you mean 'epochs'?"),
    case("spec-negative-lr", edited(CONLL, "lr: 1.0e-4", "lr: -1.0e-4"), CONLL_FILES,
         "standard.yaml", 11, "finetune.lr", "must be > 0"),
    case("spec-wrong-type", edited(CONLL, "epochs: 1", 'epochs: "three"'), CONLL_FILES,
         "standard.yaml", 10, "finetune.epochs", "'three'"),
    case("spec-negative-loader-workers", CONLL + "runtime:\n  loader_workers: -2\n", CONLL_FILES,
         "standard.yaml", 16, "runtime.loader_workers", "must be >= 0, got -2"),
    case("spec-loader-workers-neither-count-nor-auto", CONLL + "runtime:\n  loader_workers: many\n", CONLL_FILES,
         "standard.yaml", 16, "runtime.loader_workers", "should be 'auto', got 'many'"),
    case("spec-missing-task", edited(CONLL, f"task: {TOKEN}\n", ""), CONLL_FILES,
         "standard.yaml", 1, "task", "required key is missing"),
    case("spec-unknown-encoding", edited(CONLL, "  validation: dev.txt", "  validation: {path: dev.txt, encoding: latin-9x}"), CONLL_FILES,
         "standard.yaml", 6, "data.validation.encoding", "unknown text encoding 'latin-9x'"),
    case("spec-missing-nested-key", edited(CONLL, "  validation: dev.txt\n", ""), CONLL_FILES,
         "standard.yaml", 3, "data.validation", "required key is missing"),
    case("spec-bad-task", edited(CONLL, f"task: {TOKEN}", "task: ner"), CONLL_FILES,
         "standard.yaml", 2, "task", "'ner'"),
    case("spec-invalid-yaml", edited(CONLL, "format: conll", "format: conll: tsv"), CONLL_FILES,
         "standard.yaml", 4, "invalid YAML", "mapping values are not allowed"),
    case("spec-unset-env-var", edited(CONLL, "train: train.txt", f"train: ${{{UNSET_VAR}}}/train.txt"), CONLL_FILES,
         "standard.yaml", 5, "data.train", UNSET_VAR),
    case("spec-data-file-missing", edited(CONLL, "train: train.txt", "train: missing.txt"), CONLL_FILES,
         "standard.yaml", 5, "data.train", "missing.txt"),
    case("spec-gate-metric-unknown", edited(CONLL, "metric: f1", "metric: bleu"), CONLL_FILES,
         "standard.yaml", 14, "evaluate.gate.metric", "'bleu'"),
    case("spec-format-not-for-task", edited(TSV, f"task: {CLASS}", f"task: {TOKEN}"), TSV_FILES,
         "standard.yaml", 4, "data.format", "'tsv'"),
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

# These also run as a real process: one spec fault, one environment fault, two data faults.
PROCESS_CASES = [c for c in CASES if c.id in {"spec-unknown-key", "spec-unset-env-var", "conll-not-utf8", "csv-label-not-in-train"}]


# ---------------------------------------------------------------------------------------
# Helpers


def write_inputs(tmp_path: Path, standard: str, files: dict[str, str | bytes]) -> tuple[Path, Path]:
    """The standard and its data in `tmp_path/inputs`; returns (standard file, an out folder in an empty `runs/`)."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "standard.yaml").write_text(standard, encoding="utf-8")
    for name, content in files.items():
        if isinstance(content, bytes):
            (inputs / name).write_bytes(content)
        else:
            (inputs / name).write_text(content, encoding="utf-8", newline="")
    runs = tmp_path / "runs"
    runs.mkdir()
    return inputs / "standard.yaml", runs / "bad-input"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_located_error(stderr: str, file: str, line: int, field: str, message: str) -> None:
    """Exactly one `error: <path>:<line>: <field>: <message>` line, pointing where the table says."""
    errors = error_lines(stderr)
    assert len(errors) == 1, stderr
    located = re.fullmatch(r"error: (?P<path>.+?):(?P<line>\d+): (?P<rest>.*)", errors[0])
    assert located, f"no file:line in {errors[0]!r}"
    assert Path(located["path"]).name == file, errors[0]
    assert int(located["line"]) == line, errors[0]
    assert located["rest"].startswith(f"{field}:"), errors[0]
    assert message in located["rest"], errors[0]


def assert_nothing_written(standard: Path, files: dict, out: Path) -> None:
    """No out folder (nor a `.partial` beside it), and nothing new next to the inputs."""
    assert not out.exists()
    assert list(out.parent.iterdir()) == []
    assert sorted(p.name for p in standard.parent.iterdir()) == sorted([standard.name, *files])


def run_args(standard: Path, out: Path) -> list[str]:
    return ["run", str(standard), "--out", str(out), "--no-tracking"]


@pytest.fixture
def offline(monkeypatch):
    """No network, no stray variable, and fine-tuning refuses to start should a case get that far."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(UNSET_VAR, raising=False)

    def no_training(*args, **kwargs):
        raise AssertionError("a malformed input reached fine-tuning")

    monkeypatch.setattr(finetune, "run", no_training)


def process_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != UNSET_VAR}
    return {**env, "HF_HUB_OFFLINE": "1"}


# ---------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_are_well_formed(tmp_path, name, offline):
    standard, files = BASELINES[name]
    path, _ = write_inputs(tmp_path, standard, files)
    prepared = prepare(load_standard(path))
    assert prepared.splits["train"] and prepared.splits["validation"]


@pytest.mark.parametrize("standard, files, file, line, field, message", CASES)
def test_run_rejects_malformed_input_with_one_located_error_and_no_output(
    tmp_path, capsys, offline, standard, files, file, line, field, message
):
    path, out = write_inputs(tmp_path, standard, files)
    code = cli.main(run_args(path, out))
    assert code == 2
    assert_located_error(capsys.readouterr().err, file, line, field, message)
    assert_nothing_written(path, files, out)


@pytest.mark.parametrize("standard, files, file, line, field, message", PROCESS_CASES)
def test_cli_process_rejects_malformed_input_with_one_located_error_and_no_output(
    tmp_path, standard, files, file, line, field, message
):
    path, out = write_inputs(tmp_path, standard, files)
    done = subprocess.run(
        [sys.executable, "-m", "nlpstd.cli", *run_args(path, out)],
        capture_output=True, text=True, env=process_env(), cwd=tmp_path, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert_located_error(done.stderr, file, line, field, message)
    assert_nothing_written(path, files, out)


def test_validate_accepts_a_good_standard(tmp_path):
    path, _ = write_inputs(tmp_path, *BASELINES["conll"])
    done = subprocess.run(
        [sys.executable, "-m", "nlpstd.cli", "validate", str(path)],
        capture_output=True, text=True, env=process_env(), cwd=tmp_path, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: bad-input (token-classification)")
    assert error_lines(done.stderr) == []


def test_data_error_leaves_other_files_beside_the_out_folder_untouched(tmp_path, capsys, offline):
    standard, files = CONLL, {**CONLL_FILES, "train.txt": "EU B-ORG\n\nPeter PER\n"}
    path, out = write_inputs(tmp_path, standard, files)
    keep = out.parent / "earlier-run.txt"
    keep.write_text("results of an earlier run\n", encoding="utf-8")

    assert cli.main(run_args(path, out)) == 2

    assert error_lines(capsys.readouterr().err) != []
    assert not out.exists()
    assert list(out.parent.iterdir()) == [keep]
    assert keep.read_text(encoding="utf-8") == "results of an earlier run\n"
