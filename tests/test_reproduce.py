"""nlpstd reproduce: rerun a tracked run's standard on the same data and code, and compare its metrics.
Against a real MLflow server (artifacts in S3) on loopback, with the tiny model."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from nlpstd.cli import main
from nlpstd.reproduce import FORCED_TAG, REPRODUCES_TAG, Difference, MetricDelta, ReproduceRefused, compare, headline, reproduce
from nlpstd.runner import run_standard
from tests.conftest import conll_text

pytest_plugins = ["tests.servers"]


@pytest.fixture
def tracked_run(ner_standard: Path, mlflow_server, tmp_path: Path) -> str:
    """The tiny NER standard, under a name of its own (the server lives for the whole session), run once, tracked."""
    ner_standard.write_text(ner_standard.read_text().replace("name: tiny-ner", f"name: tiny-ner-{uuid.uuid4().hex[:8]}"))
    return run_standard(ner_standard, tmp_path / "original")["mlflow_run_id"]


def row(text: str, name: str) -> list[str]:
    """The printed table's row for one metric, split into its columns."""
    (line,) = [line for line in text.splitlines() if line.startswith(f"{name} ")]
    return line.split()


def test_reproduce_gives_the_same_dev_metric_and_loss_on_cpu(tracked_run: str, tmp_path: Path, capsys):
    from mlflow import MlflowClient

    capsys.readouterr()
    assert main(["reproduce", tracked_run, "--out", str(tmp_path / "again")]) == 0
    out = capsys.readouterr().out
    assert row(out, "evaluate/validation_f1")[-1] == "=", "the dev metric comes back exactly, same seed, same CPU"
    assert row(out, "finetune/loss")[-1] == "=", "so does the last training loss, to the last bit"
    assert not any(line.startswith("export/") for line in out.splitlines()), "export is not rerun"
    new_run_id = out.split(" reproduced as run ")[1].split()[0]
    client = MlflowClient()
    new = client.get_run(new_run_id)
    assert new.data.tags[REPRODUCES_TAG] == tracked_run and FORCED_TAG not in new.data.tags
    children = client.search_runs([new.info.experiment_id], f"tags.mlflow.parentRunId = '{new_run_id}'")
    assert sorted(run.data.tags["nlpstd.stage"] for run in children) == ["data-prep", "evaluate", "finetune"]


def test_changed_data_refuses_naming_the_fingerprint_and_force_goes_ahead(tracked_run: str, ner_standard: Path, tmp_path: Path):
    (ner_standard.parent / "dev.txt").write_text(conll_text(25, offset=500))  # one sentence more
    with pytest.raises(ReproduceRefused, match=r"data fingerprint: the run has [0-9a-f]{12}, now [0-9a-f]{12}") as refused:
        reproduce(tracked_run, tmp_path / "again")
    assert "--force" in str(refused.value)
    assert not (tmp_path / "again").exists(), "a refusal writes nothing"

    result = reproduce(tracked_run, tmp_path / "again", force=True)
    assert [d.what for d in result.differences] == ["data fingerprint"]
    examples = next(r for r in result.metrics if r.name == "data-prep/validation_examples")
    assert (examples.old, examples.new) == (24, 25)
    from mlflow import MlflowClient

    assert "data fingerprint" in MlflowClient().get_run(result.new_run_id).data.tags[FORCED_TAG]


@pytest.mark.parametrize(("tag", "what", "value"), [("nlpstd.git_commit", "git commit", "0" * 40),
                                                    ("nlpstd.version", "nlpstd version", "0.0.1")])
def test_a_different_code_version_refuses(tracked_run: str, tmp_path: Path, tag: str, what: str, value: str):
    """As if the run had been made by other code: the tag it carries differs from this checkout's."""
    from mlflow import MlflowClient

    MlflowClient().set_tag(tracked_run, tag, value)
    with pytest.raises(ReproduceRefused, match=f"{what}: the run has {value[:12]}, now "):
        reproduce(tracked_run, tmp_path / "again")


def test_an_unknown_run_id_says_where_it_looked(mlflow_server):
    from nlpstd.errors import NlpstdError

    with pytest.raises(NlpstdError, match=f"no MLflow run 0123456789abcdef in {mlflow_server.uri}"):
        reproduce("0123456789abcdef")


# -- the comparisons themselves, without a server


def test_a_missing_fingerprint_counts_as_a_difference_but_a_missing_commit_does_not():
    recorded = {"git commit": "unknown", "nlpstd version": "", "spec hash": "a" * 64, "data fingerprint": ""}
    current = {"git commit": "b" * 40, "nlpstd version": "0.1.0", "spec hash": "a" * 64, "data fingerprint": "c" * 64}
    assert compare(recorded, current) == [Difference("data fingerprint", "none recorded", "c" * 12)]


def test_headline_names_the_model_metrics_that_moved_not_the_timings():
    rows = [MetricDelta("evaluate/validation_f1", 0.9, 0.9), MetricDelta("finetune/loss", 0.5, 0.51),
            MetricDelta("finetune/samples_per_s", 100.0, 120.0)]
    assert headline(rows) == "1 of 3 metrics reproduced exactly; beyond timings, these differ: finetune/loss"
    assert headline(rows[::2]) == "1 of 2 metrics reproduced exactly; the others are timings"
    assert headline([*rows[:1], MetricDelta("gate_passed", 1.0, None)]) == "1 of 1 metrics reproduced exactly; 1 logged by one run only"
