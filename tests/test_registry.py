"""The champion rule: every model that passes the gate is registered; only one that beats the champion takes the alias."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlpstd.registry import ALIAS, MlflowRegistry, decide
from nlpstd.runner import run_standard


def test_first_model_meeting_the_minimum_becomes_champion():
    decision = decide("f1", "test", candidate=0.8, minimum=0.5, min_delta=0.01)
    assert decision.promote and "no champion yet" in decision.reason


def test_candidate_below_the_minimum_is_kept_out():
    assert not decide("f1", "test", candidate=0.4, minimum=0.5, min_delta=0.0).promote


def test_candidate_must_beat_the_champion_by_min_delta():
    assert not decide("f1", "test", 0.805, 0.5, 0.01, champion=0.80, champion_version="3").promote
    assert decide("f1", "test", 0.81, 0.5, 0.01, champion=0.80, champion_version="3").promote


def test_a_candidate_that_only_ties_the_champion_keeps_the_champion():
    decision = decide("f1", "test", 0.8, 0.5, 0.0, champion=0.8, champion_version="1")
    assert not decision.promote and "only ties champion v1" in decision.reason


def test_a_tie_takes_the_alias_when_the_standard_says_ties_promote():
    decision = decide("f1", "test", 0.8, 0.5, 0.0, champion=0.8, champion_version="1", promote_ties=True)
    assert decision.promote and "by +0.0000 >= min_delta 0.0000" in decision.reason


def test_the_smallest_margin_above_a_tie_promotes_when_min_delta_is_zero():
    assert decide("f1", "test", 0.8001, 0.5, 0.0, champion=0.8, champion_version="1").promote


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # artifacts of the local store land beside it
    return uri


def ties_promote(standard: str) -> str:
    return standard.replace("gate: {metric: f1, min: 0.0}", "gate: {metric: f1, min: 0.0, promote_ties: true}")


def champion_version(name: str) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient().get_model_version_by_alias(name, ALIAS).version)


def test_champion_moves_only_to_a_model_that_beats_it(ner_standard: Path, tmp_path: Path, store: str):
    good = ner_standard.read_text()
    run_standard(ner_standard, tmp_path / "run1")
    assert champion_version("tiny-ner") == "1"

    ner_standard.write_text(good.replace("epochs: 3", "max_steps: 2"))  # a crippled recipe
    second = run_standard(ner_standard, tmp_path / "run2")
    export = second["stages"]["export"]["metrics"]
    assert (export["registered_version"], export["promoted"]) == ("2", False)
    assert champion_version("tiny-ner") == "1"
    decision = json.loads((tmp_path / "run2" / "evaluate" / "champion.json").read_text())
    assert decision["champion_version"] == "1" and decision["champion"] > decision["candidate"]
    assert "**Champion: KEEP**" in (tmp_path / "run2" / "evaluate" / "report.md").read_text()

    ner_standard.write_text(good)  # run 1 again: the same score, a tie
    third = run_standard(ner_standard, tmp_path / "run3")
    assert third["stages"]["export"]["metrics"]["promoted"] is False
    assert champion_version("tiny-ner") == "1"

    ner_standard.write_text(ties_promote(good))  # as good as run 1, and this standard lets ties promote
    fourth = run_standard(ner_standard, tmp_path / "run4")
    assert fourth["stages"]["export"]["metrics"]["promoted"] is True
    assert champion_version("tiny-ner") == "4"


def test_decision_is_recorded_on_the_runs_and_the_version(ner_standard: Path, tmp_path: Path, store: str):
    from mlflow import MlflowClient

    summary = run_standard(ner_standard, tmp_path / "run1")
    client = MlflowClient()
    children = client.search_runs([client.get_run(summary["mlflow_run_id"]).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{summary['mlflow_run_id']}'")
    by_stage = {run.data.tags["nlpstd.stage"]: run for run in children}
    evaluate_tags = by_stage["evaluate"].data.tags
    assert evaluate_tags["nlpstd.champion_decision"] == "promote"
    assert float(evaluate_tags["nlpstd.candidate_score"]) == pytest.approx(summary["stages"]["evaluate"]["metrics"]["test_f1"])
    assert by_stage["export"].data.tags["nlpstd.promoted"] == "true"
    version = client.get_model_version("tiny-ner", "1")
    assert version.tags["nlpstd.champion_decision"] == "promote"
    assert version.run_id == by_stage["export"].info.run_id


def test_alias_does_not_move_when_another_run_won_meanwhile(ner_standard: Path, tmp_path: Path, store: str):
    ner_standard.write_text(ties_promote(ner_standard.read_text()))  # reruns of one recipe score the same
    run_standard(ner_standard, tmp_path / "run1")
    registry = MlflowRegistry()
    assert registry.champion("tiny-ner", tmp_path / "downloads").version == "1"
    # run 2 is scored against v1, but before it exports, run 3 takes the alias
    run_standard(ner_standard, tmp_path / "run2", stages=["data-prep", "finetune", "evaluate"])
    run_standard(ner_standard, tmp_path / "run3")
    assert champion_version("tiny-ner") == "2"  # run 3's export registered v2 and took the alias (a tie, ties promote)
    late = run_standard(ner_standard, tmp_path / "run2", stages=["export"])["stages"]["export"]["metrics"]
    assert late["promoted"] is False and "the champion changed during this run" in late["promotion_reason"]
    assert champion_version("tiny-ner") == "2"


def test_a_failed_run_leaves_the_alias_alone(ner_standard: Path, tmp_path: Path, store: str):
    from nlpstd.errors import NlpstdError

    run_standard(ner_standard, tmp_path / "run1")
    broken = tmp_path / "broken.yaml"
    broken.write_text(ner_standard.read_text().replace("train: train.txt", "train: missing.txt"))
    with pytest.raises(NlpstdError):
        run_standard(broken, tmp_path / "run2")
    assert champion_version("tiny-ner") == "1"
