"""The stages end to end on a tiny model: outputs, reproducibility, LoRA, gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from nlpstd.cli import main
from nlpstd.runner import run_standard


def test_run_writes_every_stage_output(ner_standard: Path, tmp_path: Path):
    out = tmp_path / "out"
    run_standard(ner_standard, out, tracking=False)
    for stage in ("data-prep", "finetune", "evaluate", "export"):
        assert (out / stage / "metrics.json").is_file(), stage
    assert (out / "export" / "model" / "model.safetensors").is_file()
    assert (out / "evaluate" / "report.md").read_text().startswith("# Evaluation of tiny-ner")
    assert (out / "evaluate" / "plots" / "per_type_f1_test.png").is_file()
    assert not list(out.glob(".*.partial")), "no partial folder is left after a complete run"
    assert not (out / "finetune" / "checkpoints").exists(), "checkpoints are dropped once the stage completes"


def test_tiny_ner_model_learns_the_entities(ner_standard: Path, tmp_path: Path):
    summary = run_standard(ner_standard, tmp_path / "out", tracking=False)
    assert summary["stages"]["evaluate"]["metrics"]["validation_f1"] > 0.5


def test_same_seed_gives_identical_weights(ner_standard: Path, tmp_path: Path):
    for name in ("a", "b"):
        run_standard(ner_standard, tmp_path / name, stages=["data-prep", "finetune"], tracking=False)
    first = load_file(tmp_path / "a" / "finetune" / "model" / "model.safetensors")
    second = load_file(tmp_path / "b" / "finetune" / "model" / "model.safetensors")
    assert first.keys() == second.keys()
    assert all((first[k] == second[k]).all() for k in first)


def test_sequence_classification_reports_accuracy_and_confusion(cls_standard: Path, tmp_path: Path):
    out = tmp_path / "out"
    summary = run_standard(cls_standard, out, tracking=False)
    evaluation = json.loads((out / "evaluate" / "metrics.json").read_text())
    assert evaluation["scores"]["validation"]["confusion_matrix"]
    assert summary["stages"]["evaluate"]["metrics"]["validation_accuracy"] > 0.8
    assert (out / "evaluate" / "plots" / "confusion_validation.png").is_file()


def test_lora_export_is_a_plain_merged_model(ner_standard: Path, tmp_path: Path):
    text = ner_standard.read_text().replace("finetune: {", "finetune: {method: lora, lora: {r: 4, alpha: 8}, ")
    ner_standard.write_text(text)
    out = tmp_path / "out"
    summary = run_standard(ner_standard, out, tracking=False)
    finetune = summary["stages"]["finetune"]["metrics"]
    assert finetune["trainable_parameters"] < finetune["parameters"] / 2
    assert (out / "finetune" / "adapter" / "adapter_config.json").is_file()
    weights = load_file(out / "export" / "model" / "model.safetensors")
    assert not any("lora" in key for key in weights), "LoRA weights are merged into the base weights"


def test_failed_gate_skips_export_and_exits_3(ner_standard: Path, tmp_path: Path, capsys):
    ner_standard.write_text(ner_standard.read_text().replace("min: 0.0", "min: 1.01"))
    out = tmp_path / "out"
    code = main(["run", str(ner_standard), "--out", str(out), "--no-tracking"])
    assert code == 3
    assert "gate failed" in capsys.readouterr().err
    assert (out / "evaluate" / "metrics.json").is_file()
    assert not (out / "export").exists()


def test_later_stage_alone_needs_earlier_outputs(ner_standard: Path, tmp_path: Path, capsys):
    code = main(["run", str(ner_standard), "--out", str(tmp_path / "out"), "--stages", "evaluate", "--no-tracking"])
    assert code == 2
    assert "run data-prep first" in capsys.readouterr().err


@pytest.mark.parametrize("stages", ["finetune,bogus"])
def test_unknown_stage_is_an_error(ner_standard: Path, tmp_path: Path, capsys, stages: str):
    assert main(["run", str(ner_standard), "--stages", stages, "--no-tracking"]) == 2
    assert "unknown stage 'bogus'" in capsys.readouterr().err
