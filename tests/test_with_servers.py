"""Against real servers on loopback: an MLflow tracking server (SQLite, artifacts on S3) and an S3 endpoint (moto)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from nlpstd import storage
from nlpstd.export import destination as publication
from nlpstd.registry import ALIAS
from nlpstd.runner import run_standard

pytest_plugins = ["tests.servers"]


def unique(standard: Path) -> str:
    """A fresh standard (and registered model) name: the servers live for the whole test session."""
    name = f"tiny-ner-{uuid.uuid4().hex[:8]}"
    standard.write_text(standard.read_text().replace("name: tiny-ner", f"name: {name}"))
    return name


def put_data(s3, bucket: str, folder: Path) -> None:
    for split in ("train", "dev", "test"):
        s3.upload_file(str(folder / f"{split}.txt"), bucket, f"conll/{split}.txt")


@pytest.fixture
def s3_standard(ner_standard: Path, s3_server, bucket: str) -> Path:
    """The tiny NER standard reading its data from S3 and exporting to S3."""
    put_data(s3_server.client(), bucket, ner_standard.parent)
    text = ner_standard.read_text()
    for split, name in (("train", "train"), ("validation", "dev"), ("test", "test")):
        text = text.replace(f"{split}: {name}.txt", f"{split}: s3://{bucket}/conll/{name}.txt")
    text += f"export: {{formats: [safetensors, onnx-int8], destination: s3://{bucket}/models/tiny-ner}}\n"
    ner_standard.write_text(text)
    return ner_standard


def test_data_from_s3_and_model_exported_to_s3(s3_standard: Path, bucket: str, mlflow_server, tmp_path: Path):
    from mlflow import MlflowClient
    from transformers import AutoModelForTokenClassification

    name = unique(s3_standard)
    run_standard(s3_standard, tmp_path / "out")
    destination = publication.current(f"s3://{bucket}/models/tiny-ner")["uri"]
    assert destination.startswith(f"s3://{bucket}/models/tiny-ner/")
    assert storage.folder_exists(destination)
    local = storage.download_folder(destination, tmp_path / "downloaded")
    model = AutoModelForTokenClassification.from_pretrained(local)
    assert model.config.id2label[0] == "O" or "O" in model.config.id2label.values()
    version = MlflowClient().get_model_version_by_alias(name, ALIAS)
    assert version.tags["nlpstd.destination"] == destination
    assert version.source.startswith(mlflow_server.artifact_root), "the registered model's files live in S3"


def test_the_kserve_manifest_points_at_the_uploaded_format(s3_standard: Path, bucket: str, tmp_path: Path):
    import yaml

    run_standard(s3_standard, tmp_path / "out", tracking=False)
    uploaded = publication.current(f"s3://{bucket}/models/tiny-ner")["uri"]
    local = storage.download_folder(uploaded, tmp_path / "downloaded")
    assert (local / "onnx-int8" / "model.onnx").is_file(), "the int8 graph was uploaded beside the Hugging Face folder"
    manifest = yaml.safe_load((local / "inferenceservice.yaml").read_text())
    assert manifest["spec"]["predictor"]["model"]["storageUri"] == uploaded


def test_a_parity_failure_uploads_nothing_to_s3(s3_standard: Path, bucket: str, s3_server, tmp_path: Path):
    from nlpstd.errors import ParityFailed

    strict = "formats: [safetensors, onnx-int8], parity: {max_abs_diff: 1.0e-12}"
    s3_standard.write_text(s3_standard.read_text().replace("formats: [safetensors, onnx-int8]", strict))
    with pytest.raises(ParityFailed, match="nothing uploaded"):
        run_standard(s3_standard, tmp_path / "out", tracking=False)
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="models/")
    assert listed.get("KeyCount", 0) == 0


def test_champion_scenario_through_the_pipeline(ner_standard: Path, mlflow_server, tmp_path: Path, monkeypatch):
    """Run 1 becomes champion; run 2 (crippled) is registered but does not take the alias; run 3, as good as
    run 1 under a standard that lets ties promote, takes it."""
    from mlflow import MlflowClient

    from pipelines.local import run_local

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = unique(ner_standard)
    good = ner_standard.read_text().replace("min: 0.0}", "min: 0.0, min_delta: 0.0}")
    crippled = good.replace("epochs: 3", "max_steps: 2")
    tie_promotes = good.replace("min_delta: 0.0}", "min_delta: 0.0, promote_ties: true}")
    results, champions = [], []
    for number, text in enumerate((good, crippled, tie_promotes), start=1):
        ner_standard.write_text(text)
        results.append(run_local(ner_standard, tmp_path / f"run{number}"))
        champions.append(str(MlflowClient().get_model_version_by_alias(name, ALIAS).version))
    exports = [result.stages["export"] for result in results]
    assert [e["registered_version"] for e in exports] == ["1", "2", "3"]
    assert [e["promoted"] for e in exports] == [True, False, True]
    assert champions == ["1", "1", "3"]
    second = results[1].stages["evaluate"]["champion"]
    assert second["champion_version"] == "1" and second["champion"] > second["candidate"]


def test_no_secret_reaches_params_tags_or_artifacts(ner_standard: Path, mlflow_server, s3_server, tmp_path: Path, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    secrets = {"AWS_ACCESS_KEY_ID": "AKIANLPSTD7F3A9C0E11", "AWS_SECRET_ACCESS_KEY": "nlpstd-secret-6b1d0f2e8a",
               "KFP_TOKEN": "nlpstd-token-93c4aa51"}
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    name = unique(ner_standard)
    summary = run_standard(ner_standard, tmp_path / "out")
    client = MlflowClient()
    parent = client.get_run(summary["mlflow_run_id"])
    runs = [parent, *client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")]
    logged = [json.dumps({"params": run.data.params, "tags": run.data.tags}) for run in runs]
    for run in runs:
        folder = Path(download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / run.info.run_id)))
        logged += [path.read_bytes().decode("utf-8", "replace") for path in folder.rglob("*") if path.is_file()]
    logged.append(json.dumps([dict(v.tags) for v in client.search_model_versions(f"name = '{name}'")]))
    assert len(logged) > 10
    for value in secrets.values():
        assert not any(value in text for text in logged), "a secret was logged"


def test_missing_s3_data_names_the_standard_line_and_object(s3_standard: Path, bucket: str, s3_server):
    from nlpstd.errors import StandardError
    from nlpstd.spec import check_files, load_standard

    s3_server.client().delete_object(Bucket=bucket, Key="conll/dev.txt")
    with pytest.raises(StandardError) as caught:
        check_files(load_standard(s3_standard), s3_standard)
    message = str(caught.value)
    assert f"standard.yaml:4: data.validation: s3://{bucket}/conll/dev.txt" in message and "\n" not in message
