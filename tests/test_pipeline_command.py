"""`nlpstd pipeline ...` is `python -m pipelines ...`: the same commands, arguments and files, from a checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nlpstd import pipeline_command
from nlpstd.errors import NlpstdError

REPO = Path(__file__).resolve().parents[1]
STANDARD = REPO / "standards" / "conll2003-ner-quick.yaml"
COMMANDS = ("run", "compile", "sweep", "submit", "schedule", "images")


def _run(*argv: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_help_lists_the_six_commands_under_the_name_typed():
    done = _run("-m", "nlpstd.cli", "pipeline", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: nlpstd pipeline ")
    assert "python -m pipelines" not in done.stdout
    for command in COMMANDS:
        assert f"nlpstd pipeline {command}" in done.stdout or f"    {command} " in done.stdout, command
    assert "{run,compile,sweep,submit,schedule,images}" in done.stdout


def test_compile_writes_what_python_m_pipelines_writes(tmp_path):
    ours, theirs = tmp_path / "nlpstd", tmp_path / "pipelines"
    assert pipeline_command.main(["compile", str(STANDARD), "--out", str(ours)]) == 0
    done = _run("-m", "pipelines", "compile", str(STANDARD), "--out", str(theirs))
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in ours.iterdir())
    assert names == sorted(p.name for p in theirs.iterdir()) == ["nlpstd-conll2003-ner-quick.yaml"]
    ours_spec, theirs_spec = (next(yaml.safe_load_all((folder / names[0]).read_text())) for folder in (ours, theirs))
    assert ours_spec["pipelineInfo"]["name"] == theirs_spec["pipelineInfo"]["name"] == "nlpstd-conll2003-ner-quick"


def test_finds_the_checkout_from_the_installed_package_wherever_it_runs(tmp_path):
    assert pipeline_command.find_checkout(cwd=tmp_path) == REPO


def test_without_a_checkout_says_what_is_missing(tmp_path):
    with pytest.raises(NlpstdError, match=r"no pipelines/__main__\.py and components/.*runs from a checkout of nlpstd"):
        pipeline_command.main(["--help"], start=tmp_path / "site-packages" / "nlpstd", cwd=tmp_path)
