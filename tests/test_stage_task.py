"""A stage run as a pipeline task runs it: the standard as text, checkpoints in a work folder, one stage per process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlpstd.cli import main
from nlpstd.spec import load_standard
from nlpstd.stages.output import staged
from nlpstd.stages.task import stage_task, training_work_dir
from nlpstd.tracking import numeric


def test_staged_with_a_work_dir_publishes_into_the_output_folder(tmp_path: Path):
    work, out = tmp_path / "work" / "finetune", tmp_path / "task" / "model"
    with staged(out, keep_on_error=True, work_dir=work) as tmp:
        assert tmp == work
        (tmp / "weights").write_text("w")
    assert (out / "weights").read_text() == "w"
    assert not work.exists()


def test_staged_with_a_work_dir_keeps_it_when_the_stage_fails(tmp_path: Path):
    work, out = tmp_path / "work", tmp_path / "out"
    with pytest.raises(RuntimeError), staged(out, keep_on_error=True, work_dir=work) as tmp:
        (tmp / "checkpoint").write_text("c")
        raise RuntimeError("killed")
    assert (work / "checkpoint").is_file(), "the next run resumes from it"
    assert not out.exists()


def test_work_dir_is_per_recipe_and_stage(ner_standard: Path, tmp_path: Path):
    std = load_standard(ner_standard)
    assert training_work_dir("", std, "finetune") is None
    path = training_work_dir(str(tmp_path), std, "finetune")
    assert path == tmp_path / f"tiny-ner-{std.spec_hash()[:12]}" / "finetune"


def test_stage_task_reads_the_standard_from_text(ner_standard: Path):
    text = json.dumps(load_standard(ner_standard).to_dict())
    with stage_task(text, "data-prep") as (std, _):
        assert std.spec_hash() == load_standard(ner_standard).spec_hash()


def test_numeric_keeps_plain_numbers_only():
    assert numeric({"f1": 0.5, "steps": 3, "passed": True, "device": "cpu", "scores": {}}) == {"f1": 0.5, "steps": 3.0}


def test_stage_command_runs_one_stage_over_given_folders(ner_standard: Path, tmp_path: Path):
    data, model, evaluation = tmp_path / "data", tmp_path / "model", tmp_path / "evaluation"
    assert main(["stage", "data-prep", str(ner_standard), "--out", str(data)]) == 0
    assert main(["stage", "finetune", str(ner_standard), "--data", str(data), "--out", str(model),
                 "--work", str(tmp_path / "work")]) == 0
    assert main(["stage", "evaluate", str(ner_standard), "--data", str(data), "--model", str(model), "--out", str(evaluation)]) == 0
    assert json.loads((evaluation / "gate.json").read_text())["passed"]


def test_stage_command_names_the_missing_folder(ner_standard: Path, tmp_path: Path, capsys):
    assert main(["stage", "finetune", str(ner_standard), "--out", str(tmp_path / "m")]) == 2
    assert "stage finetune: --data is required" in capsys.readouterr().err
