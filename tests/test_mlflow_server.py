"""An MLflow tracking server as a team would run it: SQLite for runs, S3 for artifacts."""

from __future__ import annotations

import uuid

pytest_plugins = ["tests.servers"]


def test_a_run_logged_through_the_server_keeps_params_metrics_and_an_artifact_in_s3(mlflow_server, s3_server, tmp_path):
    import mlflow
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    assert mlflow.get_tracking_uri() == mlflow_server.uri
    report = tmp_path / "report.txt"
    report.write_text("f1 0.91\n")
    experiment = MlflowClient().create_experiment(f"smoke-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_param("learning_rate", "5e-05")
        mlflow.log_metric("f1", 0.91, step=3)
        mlflow.log_artifact(str(report), artifact_path="eval")

    stored = MlflowClient().get_run(run.info.run_id)
    assert stored.data.params == {"learning_rate": "5e-05"} and stored.data.metrics == {"f1": 0.91}
    assert stored.info.artifact_uri.startswith(mlflow_server.artifact_root)
    listed = s3_server.client().list_objects_v2(Bucket=mlflow_server.bucket, Prefix="mlartifacts/")
    assert [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith("/eval/report.txt")]
    back = download_artifacts(run_id=run.info.run_id, artifact_path="eval/report.txt", dst_path=str(tmp_path / "back"))
    assert open(back).read() == "f1 0.91\n"
