"""`nlpstd validate` refuses what `nlpstd run` refuses before training, in the same words, and says
what it read: every row of every split and every corpus file, with no tokenizer, weights or torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.bad_input import data_files
from tests.bad_input.case import CONLL, CONLL_FILES, TSV, TSV_FILES, Case, edited
from tests.test_bad_input import argv_of, listing, process_env, run_in_process, write_inputs


def validate(tmp_path: Path, standard: str, files: dict, capsys) -> tuple[int, str, str]:
    """`nlpstd validate` on `standard` and its files, in this process: (exit code, stdout, stderr)."""
    inputs, _ = write_inputs(tmp_path, Case("validate", (), None, None, None, "", standard=standard, files=files))
    code = run_in_process(["validate", str(inputs / "standard.yaml")])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", [c.param() for c in data_files.CASES])
def test_validate_refuses_every_bad_data_file_with_the_line_run_gives(tmp_path, capsys, offline, case):
    inputs, out = write_inputs(tmp_path, case)
    before = listing(inputs)

    refused = run_in_process(["validate", str(inputs / "standard.yaml")])
    validated = capsys.readouterr()
    ran = run_in_process(argv_of(case, inputs, out))
    run_err = capsys.readouterr().err

    assert (refused, ran) == (2, 2), validated.err + run_err
    assert validated.err.strip() and validated.err == run_err
    assert not validated.out.startswith("ok:")
    assert listing(inputs) == before and not out.exists()


def test_validate_of_a_good_standard_prints_what_it_read(tmp_path, capsys, offline):
    code, out, err = validate(tmp_path, CONLL, CONLL_FILES, capsys)
    assert code == 0 and not err
    assert out.startswith("ok: bad-input (token-classification), 2 data files, 2 train / 2 validation examples, 7 labels, spec hash ")


def test_validate_counts_a_cut_split_against_its_file(tmp_path, capsys, offline):
    code, out, _ = validate(tmp_path, edited(TSV, "model:\n", "  max_train_examples: 2\nmodel:\n"), TSV_FILES, capsys)
    assert code == 0
    assert "2 data files, 2 of 3 train / 2 validation examples, 2 labels" in out


def test_validate_decodes_and_counts_the_corpus(tmp_path, capsys, offline):
    code, out, _ = validate(tmp_path, data_files.CORPUS, data_files.CORPUS_FILES, capsys)
    assert code == 0
    assert "7 labels, corpus 1 file, 2 documents (31 characters), spec hash" in out


def test_validate_prints_a_data_check_warning_it_does_not_fail_on(tmp_path, capsys, offline):
    files = {**TSV_FILES, "dev.tsv": "text\tlabel\ngreat film\tpos\nboring\tneg\n"}
    code, out, err = validate(tmp_path, TSV, files, capsys)
    assert code == 0 and not err
    assert out.splitlines()[1] == ("warning: 1 of 2 validation examples (50.00%) also occur in train (1 verbatim), "
                                   "above data.checks.max_overlap 0.01 (data.checks.on_violation: warn)")


def test_validate_reads_every_row_without_importing_torch(tmp_path):
    inputs, _ = write_inputs(tmp_path, Case("good", (), None, None, None, "", standard=CONLL, files=CONLL_FILES))
    script = ("import sys; from nlpstd import cli; code = cli.main(['validate', sys.argv[1]]); "
              "heavy = sorted({'torch', 'transformers', 'numpy', 'boto3', 'mlflow'} & set(sys.modules)); "
              "print('heavy:', heavy); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script, str(inputs / "standard.yaml")],
                          capture_output=True, text=True, env=process_env(), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "heavy: []"
