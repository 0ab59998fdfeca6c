"""What a run leaves for a reader when it does not end well: summary.json says how far it got and
what became of the champion decision, the evaluation report never claims a promotion export did not
make, and an int8 parity failure names the way to ship without int8."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlpstd.cli import main
from nlpstd.evaluate.gate import GateResult
from nlpstd.evaluate.report import write_report
from nlpstd.export import parity
from nlpstd.runner import champion_outcome
from nlpstd.spec import load_standard
from pipelines.local import failed_summary
from pipelines.pipeline import pipeline_name


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def run(standard: Path, out: Path, *extra: str) -> int:
    return main(["run", str(standard), "--out", str(out), "--no-tracking", *extra])


def test_failed_gate_still_writes_summary_with_the_completed_stages_and_the_error(ner_standard: Path, tmp_path: Path, capsys):
    ner_standard.write_text(ner_standard.read_text().replace("min: 0.0", "min: 1.01"))  # no model reaches it
    out = tmp_path / "out"
    assert run(ner_standard, out) == 3
    summary = summary_of(out)
    assert summary["status"] == "failed"
    assert summary["failed"]["stage"] == "export"
    assert summary["failed"]["error"].startswith("export skipped: the gate failed (f1 ")
    assert "\n" not in summary["failed"]["error"]
    assert list(summary["stages"]) == ["data-prep", "finetune", "evaluate"]
    assert all(stage["seconds"] >= 0 and stage["metrics"] for stage in summary["stages"].values())
    assert "mlflow_run_id" in summary
    assert summary["champion"]["decision"] == "keep" and summary["champion"]["outcome"] == "kept"
    assert "**Champion: KEEP**" in (out / "evaluate" / "report.md").read_text(encoding="utf-8")
    assert "gate failed" in capsys.readouterr().err, "the error the CLI prints is unchanged"


@pytest.fixture
def parity_failed_run(ner_standard: Path, tmp_path: Path) -> Path:
    """A run whose export fails parity after evaluation decided to promote (untracked: any model past the gate)."""
    ner_standard.write_text(ner_standard.read_text() + "export: {formats: [safetensors, onnx], parity: {max_abs_diff: 1.0e-12}}\n")
    assert run(ner_standard, tmp_path / "out") == 2
    return tmp_path / "out"


def test_failed_export_writes_summary_saying_the_promotion_did_not_happen(parity_failed_run: Path):
    summary = summary_of(parity_failed_run)
    assert summary["status"] == "failed"
    assert summary["failed"]["stage"] == "export"
    assert summary["failed"]["error"].startswith("export stopped, nothing uploaded")
    assert list(summary["stages"]) == ["data-prep", "finetune", "evaluate"]
    assert summary["champion"]["decision"] == "promote"
    assert summary["champion"]["outcome"] == "not promoted"
    assert summary["champion"]["reason"].startswith("export failed: export stopped")


def test_report_words_a_promotion_as_conditional_on_export(parity_failed_run: Path):
    report = (parity_failed_run / "evaluate" / "report.md").read_text(encoding="utf-8")
    assert "**Champion decision: PROMOTE, if export succeeds**" in report
    assert "**Champion: PROMOTE**" not in report, "export failed: the report must not say the model was promoted"


def test_int8_parity_failure_names_the_fix_and_export_alone_reruns_on_the_same_model(parity_failed_run: Path, monkeypatch, capsys):
    standard = parity_failed_run.parent / "standard.yaml"
    weights = parity_failed_run / "finetune" / "model" / "model.safetensors"
    trained = weights.stat().st_mtime_ns
    standard.write_text(standard.read_text().replace("formats: [safetensors, onnx], parity: {max_abs_diff: 1.0e-12}",
                                                     "formats: [safetensors, onnx-int8]"))
    compare = parity.compare

    def int8_loses_a_lot(runs: dict, metric: str) -> dict:
        report = compare(runs, metric)
        report["onnx-int8"]["metric_drop"] = 0.5  # what a badly quantized model costs
        return report

    monkeypatch.setattr(parity, "compare", int8_loses_a_lot)
    assert run(standard, parity_failed_run, "--stages", "export") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: export stopped") and "onnx-int8: f1" in error
    assert error.endswith("; " + parity.INT8_FIX)

    # the fix, as the message gives it: int8 out of the formats, export alone again
    monkeypatch.setattr(parity, "compare", compare)
    standard.write_text(standard.read_text().replace("formats: [safetensors, onnx-int8]", "formats: [safetensors]"))
    assert run(standard, parity_failed_run, "--stages", "export") == 0
    assert weights.stat().st_mtime_ns == trained, "the fine-tuned model is reused, not trained again"
    summary = summary_of(parity_failed_run)
    assert summary["status"] == "completed" and list(summary["stages"]) == ["export"]
    assert summary["champion"] == {"decision": "promote", "outcome": "promoted", "reason": summary["champion"]["reason"]}
    export = json.loads((parity_failed_run / "export" / "metrics.json").read_text(encoding="utf-8"))
    assert export["champion_outcome"] == "promoted"


def test_int8_fix_is_offered_only_when_int8_alone_strays():
    int8 = "onnx-int8: f1 0.5000 is 0.4000 below torch's 0.9000 (export.parity.max_metric_drop 0.01)"
    fp32 = "onnx: max |Δlogit| 1.00e-02 > export.parity.max_abs_diff 0.001"
    assert parity.int8_fix([int8]) == parity.INT8_FIX
    assert parity.int8_fix([fp32, int8]) is None, "a stray fp32 graph is not fixed by dropping int8"
    assert parity.int8_fix([]) is None


def test_report_states_a_keep_as_final(tmp_path: Path):
    gate = GateResult(passed=True, metric="f1", split="test", value=0.8, threshold=0.5, reason="f1 0.8000 >= min 0.5000")
    path = write_report(tmp_path / "report.md", standard_name="s", task="sequence-classification", scores={}, gate=gate,
                        plots=[], decision={"promote": False, "reason": "the champion scores higher"})
    text = path.read_text(encoding="utf-8")
    assert "**Champion: KEEP**: the champion scores higher" in text and "if export succeeds" not in text


def test_champion_outcome_follows_export_not_evaluation():
    evaluation = {"gate": {"passed": True}, "champion": {"promote": True, "reason": "no champion yet"}}
    assert champion_outcome(None, None) is None
    assert champion_outcome(evaluation, None)["outcome"] == "pending"
    assert champion_outcome(evaluation, {"champion_outcome": "kept", "promotion_reason": "another run took the alias"}) == {
        "decision": "promote", "outcome": "kept", "reason": "another run took the alias"}
    assert champion_outcome(evaluation, None, {"stage": "export", "error": "upload failed"})["outcome"] == "not promoted"


def test_local_pipeline_failure_summary_names_the_failed_task_and_the_finished_stages(ner_standard: Path, tmp_path: Path):
    std = load_standard(ner_standard)
    run_dir = tmp_path / "pipeline" / f"{pipeline_name(std)}-2026-01-01-00-00-00-000000"
    for stage, output, metrics in (("finetune", "model", {"steps": 3}),
                                   ("evaluate", "evaluation", {"gate": {"passed": True}, "champion": {"promote": True}})):
        (run_dir / stage / output).mkdir(parents=True)
        (run_dir / stage / output / "metrics.json").write_text(json.dumps(metrics))
    error = ("pipeline x failed: Pipeline \x1b[96m'nlpstd-tiny-ner'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m. "
             "Inner task failed: \x1b[96m'export'\x1b[0m inside \x1b[96m'condition-1'\x1b[0m.")
    summary = failed_summary(std, tmp_path / "pipeline", 0.0, 12.3, None, error)
    assert summary["status"] == "failed" and summary["failed"]["stage"] == "export"
    assert "\x1b" not in summary["failed"]["error"]
    assert summary["run_dir"] == str(run_dir) and set(summary["stages"]) == {"finetune", "evaluate"}
    assert summary["champion"]["outcome"] == "not promoted"
