"""The champion history: every promote and keep lands in the registry, and rollback walks the alias back along it.

Against the real MLflow server (tests/servers.py). The first two tests run the stages; the rest
register versions through export's own `_register` with scores chosen by the test, which is the
code path a run takes after evaluation, without training a model each time.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest

from nlpstd.cli import main
from nlpstd.errors import GateFailed
from nlpstd.registry import ALIAS, MlflowRegistry, decide, history_entry
from nlpstd.runner import run_standard
from nlpstd.spec import Standard, load_standard
from nlpstd.stages import export

pytest_plugins = ["tests.servers"]


def unique(standard: Path) -> str:
    """A fresh standard (and registered model) name: the server lives for the whole test session."""
    name = f"tiny-ner-{uuid.uuid4().hex[:8]}"
    standard.write_text(standard.read_text().replace("name: tiny-ner", f"name: {name}"))
    return name


def champion_version(name: str) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient().get_model_version_by_alias(name, ALIAS).version)


@pytest.fixture
def std(ner_standard: Path, mlflow_server) -> Standard:
    unique(ner_standard)
    return load_standard(ner_standard)


def exported(std: Standard, candidate: float, champion: tuple[str, float] | None = None) -> dict:
    """Export's registration of a candidate that evaluation scored `candidate` (f1 on test), against
    `champion` (version, score) if any: a new version, promoted when it beats the champion."""
    from mlflow import MlflowClient

    from nlpstd.tracking import MlflowTracker

    registry = MlflowRegistry()  # first: it points the client at the test's server
    run_id = MlflowClient().create_run("0").info.run_id
    version, score = champion or (None, None)
    decision = decide("f1", "test", candidate, minimum=0.0, min_delta=0.01, champion=score, champion_version=version)
    return export._register(std, decision.to_dict(), "fp-test", MlflowTracker(run_id), registry)


def promoted_chain(std: Standard, scores: list[float]) -> None:
    """One promotion per score (each must beat the one before): v1, v2, ... each the champion in turn."""
    champion = None
    for score in scores:
        result = exported(std, score, champion)
        assert result["promoted"], result["promotion_reason"]
        champion = (result["registered_version"], score)


def test_promote_then_keep_are_both_in_the_history_with_their_scores(ner_standard: Path, mlflow_server, tmp_path: Path):
    name = unique(ner_standard)
    good = ner_standard.read_text()
    first = run_standard(ner_standard, tmp_path / "run1")["stages"]
    ner_standard.write_text(good.replace("epochs: 3", "max_steps: 2"))  # a crippled recipe: kept out
    second = run_standard(ner_standard, tmp_path / "run2")["stages"]

    promote, keep = MlflowRegistry().history(name)
    assert (promote["action"], promote["candidate_version"], promote["champion_version"]) == ("promote", "1", None)
    assert promote["candidate_score"] == pytest.approx(first["evaluate"]["metrics"]["test_f1"])
    assert promote["champion_after"] == "1" and promote["run_id"]
    assert (keep["action"], keep["candidate_version"], keep["champion_version"], keep["champion_after"]) == ("keep", "2", "1", "1")
    assert keep["candidate_score"] == pytest.approx(second["evaluate"]["metrics"]["test_f1"])
    assert keep["champion_score"] == pytest.approx(first["evaluate"]["metrics"]["test_f1"])
    assert (keep["metric"], keep["split"]) == ("f1", "test")
    assert keep["data_fingerprint"] == promote["data_fingerprint"] and len(keep["data_fingerprint"]) > 8
    assert "does not beat champion v1" in keep["reason"]
    assert promote["time"] < keep["time"] and keep["time"].endswith("Z")


def test_with_promote_set_a_candidate_its_interval_does_not_clear_keeps_the_champion_and_says_the_interval(
        ner_standard: Path, mlflow_server, tmp_path: Path):
    name = unique(ner_standard)
    ner_standard.write_text(ner_standard.read_text().replace("gate: {metric: f1, min: 0.0}",
                                                             "gate: {metric: f1, min: 0.0, promote: {confidence: 0.95}}"))
    run_standard(ner_standard, tmp_path / "run1")
    ner_standard.write_text(ner_standard.read_text().replace("epochs: 3", "max_steps: 3"))
    second = run_standard(ner_standard, tmp_path / "run2")["stages"]

    promote, keep = MlflowRegistry().history(name)
    assert promote["action"] == "promote" and keep["action"] == "keep"
    assert "95% interval [" in keep["reason"] and "does not lie above min_delta" in keep["reason"], keep["reason"]
    decision = json.loads((tmp_path / "run2" / "evaluate" / "champion.json").read_text())
    low, high = decision["interval"]
    assert low <= second["evaluate"]["metrics"]["test_f1"] - decision["champion"] <= high and decision["confidence"] == 0.95
    report = (tmp_path / "run2" / "evaluate" / "report.md").read_text()
    assert "95% interval [" in report and "In brackets: the 95% interval of each figure" in report


def test_a_failed_gate_is_recorded_as_keep_by_evaluate(ner_standard: Path, mlflow_server, tmp_path: Path):
    name = unique(ner_standard)
    ner_standard.write_text(ner_standard.read_text().replace("epochs: 3", "max_steps: 2").replace("min: 0.0", "min: 0.99"))
    with pytest.raises(GateFailed):
        run_standard(ner_standard, tmp_path / "run")
    (entry,) = MlflowRegistry().history(name)
    assert (entry["action"], entry["candidate_version"], entry["champion_after"]) == ("keep", None, None)
    assert "below min 0.9900" in entry["reason"] and entry["candidate_score"] < 0.99


def test_a_candidate_that_lost_the_race_is_recorded_as_keep(std: Standard):
    promoted_chain(std, [0.5])
    late = exported(std, 0.6)  # scored when there was no champion yet; v1 took the alias meanwhile
    assert not late["promoted"]
    last = MlflowRegistry().history(std.name)[-1]
    assert (last["action"], last["candidate_version"], last["champion_after"]) == ("keep", "2", "1")
    assert "the champion changed during this run" in last["reason"] and last["candidate_score"] == 0.6


def test_rollback_moves_the_alias_back_and_is_recorded(std: Standard, capsys):
    promoted_chain(std, [0.5, 0.6])
    assert main(["champion", "rollback", std.name, "--reason", "bad outputs in production"]) == 0
    assert champion_version(std.name) == "1"
    assert "the champion is v1 again" in capsys.readouterr().out
    last = MlflowRegistry().history(std.name)[-1]
    assert (last["action"], last["candidate_version"], last["champion_version"], last["champion_after"]) == ("rollback", "1", "2", "1")
    assert last["reason"] == "rollback from v2 to v1: bad outputs in production" and last["by"]


def test_rolling_back_twice_goes_two_promotions_back(std: Standard):
    promoted_chain(std, [0.5, 0.6, 0.7])
    registry = MlflowRegistry()
    registry.rollback(std.name)
    assert champion_version(std.name) == "2"
    registry.rollback(std.name)
    assert champion_version(std.name) == "1"


def test_rollback_after_a_new_promotion_undoes_that_promotion(std: Standard):
    promoted_chain(std, [0.5, 0.6, 0.7])
    registry = MlflowRegistry()
    registry.rollback(std.name)  # v3 -> v2
    assert exported(std, 0.8, ("2", 0.6))["promoted"]  # v4 replaces v2
    registry.rollback(std.name)
    assert champion_version(std.name) == "2"


def test_rollback_without_a_previous_champion_is_a_clear_error(std: Standard, capsys):
    promoted_chain(std, [0.5])
    assert not exported(std, 0.4, ("1", 0.5))["promoted"]  # v2 never held the alias: not a champion to return to
    assert main(["champion", "rollback", std.name]) == 2
    assert f"{std.name}: v1 is the first champion in its history; there is no previous champion" in capsys.readouterr().err
    assert champion_version(std.name) == "1"
    assert [e["action"] for e in MlflowRegistry().history(std.name)] == ["promote", "keep"]


def test_rollback_refuses_an_alias_moved_outside_the_history(std: Standard):
    from mlflow import MlflowClient

    from nlpstd.errors import NlpstdError

    promoted_chain(std, [0.5, 0.6])
    MlflowClient().set_registered_model_alias(std.name, ALIAS, "1")  # by hand, unrecorded
    with pytest.raises(NlpstdError, match="the alias was moved outside nlpstd"):
        MlflowRegistry().rollback(std.name)
    assert champion_version(std.name) == "1"


def test_history_command_prints_every_entry_oldest_first(std: Standard, capsys):
    promoted_chain(std, [0.5])
    exported(std, 0.45, ("1", 0.5))
    capsys.readouterr()  # what export printed
    assert main(["champion", "history", std.name]) == 0
    header, promote, keep = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["time", "(UTC)", "action", "candidate"]
    assert promote.split()[2:8] == ["promote", "v1", "-", "v1", "0.5000", "-"]
    assert keep.split()[2:8] == ["keep", "v2", "v1", "v1", "0.4500", "0.5000"]

    assert main(["champion", "history", std.name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == MlflowRegistry().history(std.name)


def test_history_of_an_unknown_model_names_what_to_check(mlflow_server, capsys):
    assert main(["champion", "history", "no-such-model"]) == 2
    assert "no registered model 'no-such-model'" in capsys.readouterr().err


def test_simultaneous_records_all_survive(std: Standard):
    """Two writers at once: each entry is its own tag, so neither overwrites the other."""
    registry = MlflowRegistry()  # the registered model exists before the writers start
    registry.record(std.name, history_entry("keep", {}, run_id="first", candidate_version=None, data_fingerprint=None))

    def write(writer: int) -> None:
        mine = MlflowRegistry()
        for i in range(5):
            mine.record(std.name, history_entry("keep", {}, run_id=f"w{writer}-{i}", candidate_version=None, data_fingerprint=None))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    written = [e["run_id"] for e in registry.history(std.name)]
    assert written[0] == "first" and sorted(written[1:]) == sorted(f"w{n}-{i}" for n in range(2) for i in range(5))
