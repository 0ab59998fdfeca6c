"""Bad input gets one line: exit code 2, `error: file:line: field: message`, no traceback, no hang,
and nothing written.

The cases live in tables by category under `tests/bad_input/` (standards, data files, model
folders, command-line flags, S3 keys); each starts from well-formed inputs (the baselines in
`tests/bad_input/case.py`, which `test_baselines_are_well_formed` proves clean) and breaks exactly
one thing. To add a case, add a row to its table. Every case runs through `nlpstd.cli.main` in this
process under a time limit; a handful also run as a real `python -m nlpstd.cli` process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nlpstd import cli
from nlpstd.data.prepare import prepare
from nlpstd.spec import load_standard
from tests.bad_input import (
    cli_flags,
    data_files,
    model_folders,
    s3_keys,
    sampling_hygiene,
    span_conll_layouts,
    standards,
    tabular_layouts,
)
from tests.bad_input.case import BASELINES, CONLL, CONLL_FILES, DIRECTORY, FIFO, Case

TABLES = {"standards": standards.CASES, "data files": data_files.CASES, "model folders": model_folders.CASES,
          "command-line flags": cli_flags.CASES, "S3 keys": s3_keys.CASES, "tabular layouts": tabular_layouts.CASES,
          "span and CoNLL layouts": span_conll_layouts.CASES, "sampling and hygiene": sampling_hygiene.CASES}
CASES = [case for table in TABLES.values() for case in table]
CASE_SECONDS = 60  # a case that takes longer hangs

# These also run as a real process: one spec fault, one environment fault, two data faults.
PROCESS_CASES = [c for c in CASES if c.id in {"spec-unknown-key", "spec-unset-env-var", "conll-not-utf8", "csv-label-not-in-train"}]


# ---------------------------------------------------------------------------------------
# Helpers


def write_inputs(tmp_path: Path, case: Case) -> tuple[Path, Path]:
    """The case's files in `tmp_path/inputs`; returns (inputs folder, an out folder in an empty `runs/`)."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    if case.standard is not None:
        (inputs / "standard.yaml").write_text(case.standard, encoding="utf-8")
    for name, content in case.files.items():
        path = inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is FIFO:
            os.mkfifo(path)
        elif content is DIRECTORY:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    if case.setup:
        case.setup(inputs)
    runs = tmp_path / "runs"
    runs.mkdir()
    return inputs, runs / "bad-input"


def argv_of(case: Case, inputs: Path, out: Path) -> list[str]:
    paths = {"standard": str(inputs / "standard.yaml"), "inputs": str(inputs), "out": str(out)}
    return [arg.format(**paths) for arg in case.argv]


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


_LOCATED = re.compile(r"error: (?P<path>[^:]+?)(?::(?P<line>\d+))?: (?P<rest>.*)")


def assert_one_error_line(stderr: str, case: Case) -> None:
    """Exactly one line on stderr, an `error:` line pointing where the case says."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    error = lines[0]
    assert error.startswith("error: "), error
    rest = error[len("error: "):]
    if case.file is not None:
        located = _LOCATED.fullmatch(error)
        assert located, f"no file in {error!r}"
        assert Path(located["path"]).name == case.file, error
        assert (int(located["line"]) if located["line"] else None) == case.line, error
        rest = located["rest"]
    if case.field is not None:
        assert rest.startswith(f"{case.field}:"), error
    assert case.message in rest, error


def run_in_process(argv: list[str]) -> int:
    """`nlpstd ARGV` in this process; a case that runs past CASE_SECONDS fails as a hang."""

    def hung(signum, frame):
        raise TimeoutError(f"nlpstd {' '.join(argv)} ran past {CASE_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(CASE_SECONDS)
    try:
        return cli.main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def process_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != standards.UNSET_VAR}
    return {**env, "HF_HUB_OFFLINE": "1"}


# ---------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_are_well_formed(tmp_path, name, offline):
    standard, files = BASELINES[name]
    inputs, _ = write_inputs(tmp_path, Case("baseline", (), None, None, None, "", standard=standard, files=files))
    prepared = prepare(load_standard(inputs / "standard.yaml"))
    assert prepared.splits["train"] and prepared.splits["validation"]


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input_is_refused_in_one_located_line_leaving_nothing_behind(tmp_path, capsys, monkeypatch, offline, case):
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    inputs, out = write_inputs(tmp_path, case)
    before = listing(inputs)
    code = run_in_process(argv_of(case, inputs, out))
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert_one_error_line(captured.err, case)
    assert not out.exists() and list(out.parent.iterdir()) == []
    assert listing(inputs) == before


@pytest.mark.parametrize("case", [c.param() for c in PROCESS_CASES])
def test_cli_process_refuses_bad_input_in_one_located_line(tmp_path, case):
    inputs, out = write_inputs(tmp_path, case)
    done = subprocess.run([sys.executable, "-m", "nlpstd.cli", *argv_of(case, inputs, out)],
                          capture_output=True, text=True, env=process_env(), cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert_one_error_line(done.stderr, case)
    assert not out.exists()


def test_validate_accepts_a_good_standard(tmp_path):
    inputs, _ = write_inputs(tmp_path, Case("good", (), None, None, None, "", standard=CONLL, files=CONLL_FILES))
    done = subprocess.run([sys.executable, "-m", "nlpstd.cli", "validate", str(inputs / "standard.yaml")],
                          capture_output=True, text=True, env=process_env(), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: bad-input (token-classification)")
    assert not done.stderr.strip()


def test_data_error_leaves_other_files_beside_the_out_folder_untouched(tmp_path, capsys, offline):
    case = Case("keep", ("run", "{standard}", "--out", "{out}", "--no-tracking"), None, None, None, "",
                standard=CONLL, files={**CONLL_FILES, "train.txt": "EU B-ORG\n\nPeter PER\n"})
    inputs, out = write_inputs(tmp_path, case)
    keep = out.parent / "earlier-run.txt"
    keep.write_text("results of an earlier run\n", encoding="utf-8")

    assert cli.main(argv_of(case, inputs, out)) == 2

    assert capsys.readouterr().err.startswith("error: ")
    assert not out.exists()
    assert list(out.parent.iterdir()) == [keep]
    assert keep.read_text(encoding="utf-8") == "results of an earlier run\n"
