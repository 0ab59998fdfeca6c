"""Submitting and scheduling a compiled pipeline: the exact requests kfp.Client makes, against a fake KFP API."""

import json
from pathlib import Path

import pytest
from kfp import compiler, dsl

pytest.register_assert_rewrite("tests.kfp_api")  # before its import: its asserts then explain themselves

from nlpstd.errors import NlpstdError  # noqa: E402
from pipelines.cluster import Connection, client, connection_from_env, schedule, submit, upload  # noqa: E402
from tests.kfp_api import FakeKfp  # noqa: E402

pytest_plugins = ["tests.kfp_api"]  # the kfp_api fixture

API = "/apis/v2beta1"
PARAMS = {"greeting": "hello", "repeat": 2}
NEW_EVERYTHING = [
    f"GET {API}/healthz",
    f"GET {API}/experiments",
    f"POST {API}/experiments",
    f"GET {API}/pipelines",
    f"POST {API}/pipelines/upload",
    f"POST {API}/pipelines/upload_version",
]


# No `from __future__ import annotations` in this module: kfp reads a component's annotations as types.
@dsl.component(base_image="python:3.11-slim")
def say(greeting: str, repeat: int) -> str:
    return greeting * repeat


@dsl.pipeline(name="hello")
def hello(greeting: str = "hi", repeat: int = 1):
    say(greeting=greeting, repeat=repeat)


@pytest.fixture(autouse=True)
def _no_kfp_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KFP_HOST", "KFP_TOKEN", "KFP_TOKEN_FILE", "KFP_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def package(tmp_path: Path) -> Path:
    path = tmp_path / "hello.yaml"
    compiler.Compiler().compile(hello, str(path))
    return path


def _submit(conn: Connection, package: Path, **overrides) -> str:
    args = dict(pipeline_name="hello", version_name="v1", experiment="nightly", run_name="hello-run", params=PARAMS)
    return submit(conn, package, **{**args, **overrides})


def _schedule(conn: Connection, package: Path, **overrides) -> str:
    args = dict(pipeline_name="hello", version_name="v1", experiment="nightly", job_name="hello-nightly",
                cron="0 0 3 * * *", params=PARAMS)
    return schedule(conn, package, **{**args, **overrides})


def _name_filter(request, name: str) -> None:
    predicates = json.loads(request.query["filter"])["predicates"]
    assert [(p["key"], p["stringValue"]) for p in predicates] == [("display_name", name)]


# -- connection ------------------------------------------------------------------------------------


def test_connection_reads_host_token_and_namespace_from_env(monkeypatch):
    monkeypatch.setenv("KFP_HOST", "https://kfp.example.com/pipeline/")
    monkeypatch.setenv("KFP_TOKEN", "s3cret")
    monkeypatch.setenv("KFP_NAMESPACE", "team-nlp")
    assert connection_from_env() == Connection("https://kfp.example.com/pipeline", "s3cret", "team-nlp")


def test_connection_arguments_take_precedence_over_env(monkeypatch):
    monkeypatch.setenv("KFP_HOST", "https://from-env")
    monkeypatch.setenv("KFP_NAMESPACE", "from-env")
    conn = connection_from_env("http://127.0.0.1:8888", namespace="team-nlp")
    assert (conn.host, conn.namespace) == ("http://127.0.0.1:8888", "team-nlp")


def test_connection_without_token_or_namespace_has_none():
    assert connection_from_env("http://127.0.0.1:8888") == Connection("http://127.0.0.1:8888", None, None)


def test_missing_host_is_a_clear_error():
    with pytest.raises(NlpstdError, match="no KFP host: pass one or set KFP_HOST"):
        connection_from_env()


def test_host_without_scheme_is_a_clear_error():
    with pytest.raises(NlpstdError, match="must start with http:// or https://"):
        connection_from_env("kfp.example.com")


def test_token_is_read_from_the_token_file_when_kfp_token_is_unset(monkeypatch, tmp_path):
    (tmp_path / "token").write_text("from-file\n")
    monkeypatch.setenv("KFP_TOKEN_FILE", str(tmp_path / "token"))
    assert connection_from_env("http://h").token == "from-file"


def test_kfp_token_wins_over_the_token_file(monkeypatch, tmp_path):
    monkeypatch.setenv("KFP_TOKEN", "from-env")
    monkeypatch.setenv("KFP_TOKEN_FILE", str(tmp_path / "missing"))
    assert connection_from_env("http://h").token == "from-env"


def test_unreadable_token_file_is_an_error_naming_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("KFP_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(NlpstdError, match=f"KFP_TOKEN_FILE={tmp_path / 'missing'}: cannot read"):
        connection_from_env("http://h")


def test_empty_token_file_is_an_error_naming_the_file(monkeypatch, tmp_path):
    (tmp_path / "token").write_text("\n")
    monkeypatch.setenv("KFP_TOKEN_FILE", str(tmp_path / "token"))
    with pytest.raises(NlpstdError, match=f"KFP_TOKEN_FILE={tmp_path / 'token'}: the token file is empty"):
        connection_from_env("http://h")


def test_the_token_is_not_in_the_connection_repr():
    conn = Connection("http://h", "s3cret", None)
    assert "s3cret" not in repr(conn) and "s3cret" not in str(conn)


# -- client ----------------------------------------------------------------------------------------


def test_client_without_namespace_checks_healthz_only(kfp_api: FakeKfp):
    client(Connection(kfp_api.host, None, None))
    assert kfp_api.calls == [f"GET {API}/healthz"]


def test_client_with_namespace_makes_no_request(kfp_api: FakeKfp):
    client(Connection(kfp_api.host, None, "team-nlp"))
    assert kfp_api.calls == []


# -- submit ----------------------------------------------------------------------------------------


def test_submit_makes_these_requests_when_nothing_exists_yet(kfp_api: FakeKfp, package: Path):
    _submit(Connection(kfp_api.host, None, None), package)
    assert kfp_api.calls == [*NEW_EVERYTHING, f"POST {API}/runs"]


def test_submit_looks_the_experiment_up_by_name_then_creates_it(kfp_api: FakeKfp, package: Path):
    _submit(Connection(kfp_api.host, None, None), package)
    lookup = kfp_api.request("GET", f"{API}/experiments")
    assert set(lookup.query) == {"filter"}
    _name_filter(lookup, "nightly")
    assert kfp_api.request("POST", f"{API}/experiments").json == {"display_name": "nightly"}


def test_submit_reuses_an_existing_experiment(kfp_api: FakeKfp, package: Path):
    experiment_id = kfp_api.add_experiment("nightly")
    _submit(Connection(kfp_api.host, None, None), package)
    assert kfp_api.requests_to("POST", f"{API}/experiments") == []
    assert kfp_api.request("POST", f"{API}/runs").json["experiment_id"] == experiment_id


def test_submit_uploads_a_new_pipeline_as_a_multipart_file_with_its_name(kfp_api: FakeKfp, package: Path):
    _submit(Connection(kfp_api.host, None, None), package)
    lookup = kfp_api.request("GET", f"{API}/pipelines")
    assert lookup.query.keys() == {"page_token", "page_size", "sort_by", "filter"}
    _name_filter(lookup, "hello")
    upload_request = kfp_api.request("POST", f"{API}/pipelines/upload")
    assert upload_request.query == {"name": "hello"}
    assert upload_request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert list(upload_request.parts) == ["uploadfile"]
    assert upload_request.parts["uploadfile"].filename == "hello.yaml"
    assert upload_request.parts["uploadfile"].data == package.read_bytes()


def test_submit_uploads_the_version_name_as_a_version_of_the_new_pipeline(kfp_api: FakeKfp, package: Path):
    _submit(Connection(kfp_api.host, None, None), package)
    [pipeline_id] = kfp_api.pipelines
    version_request = kfp_api.request("POST", f"{API}/pipelines/upload_version")
    assert version_request.query == {"name": "v1", "pipelineid": pipeline_id}
    assert version_request.parts["uploadfile"].data == package.read_bytes()
    assert sorted(v["name"] for v in kfp_api.versions.values()) == ["hello", "v1"]


def test_submit_uploads_a_version_of_an_existing_pipeline(kfp_api: FakeKfp, package: Path):
    pipeline_id = kfp_api.add_pipeline("hello")
    _submit(Connection(kfp_api.host, None, None), package, version_name="v2")
    assert kfp_api.requests_to("POST", f"{API}/pipelines/upload") == []
    version_request = kfp_api.request("POST", f"{API}/pipelines/upload_version")
    assert version_request.query == {"name": "v2", "pipelineid": pipeline_id}


def test_a_version_named_like_a_new_pipeline_is_its_first_version(kfp_api: FakeKfp, package: Path):
    _submit(Connection(kfp_api.host, None, None), package, version_name="hello")
    [pipeline_id] = kfp_api.pipelines
    assert kfp_api.calls[-3:] == [f"POST {API}/pipelines/upload", f"GET {API}/pipelines/{pipeline_id}/versions",
                                  f"POST {API}/runs"]
    [version_id] = kfp_api.versions
    reference = kfp_api.request("POST", f"{API}/runs").json["pipeline_version_reference"]
    assert reference == {"pipeline_id": pipeline_id, "pipeline_version_id": version_id}


def test_an_existing_version_name_is_a_clear_error(kfp_api: FakeKfp, package: Path):
    kfp_api.add_pipeline("hello")
    with pytest.raises(NlpstdError, match="pipeline 'hello' already has a version named 'hello'"):
        _submit(Connection(kfp_api.host, None, None), package, version_name="hello")
    assert kfp_api.requests_to("POST", f"{API}/runs") == []


def test_submit_runs_the_uploaded_version_with_the_params(kfp_api: FakeKfp, package: Path):
    _submit(Connection(kfp_api.host, None, None), package)
    [experiment_id] = kfp_api.experiments
    [version] = [v for v in kfp_api.versions.values() if v["name"] == "v1"]
    run_request = kfp_api.request("POST", f"{API}/runs")
    assert run_request.query == {}
    assert run_request.json == {
        "experiment_id": experiment_id,
        "display_name": "hello-run",
        "pipeline_version_reference": {"pipeline_id": version["pipeline_id"],
                                       "pipeline_version_id": version["pipeline_version_id"]},
        "runtime_config": {"parameters": PARAMS},
    }  # no pipeline_spec: the run uses the uploaded version, with its caching settings untouched


def test_submit_returns_the_run_url(kfp_api: FakeKfp, package: Path):
    url = _submit(Connection(kfp_api.host, None, None), package)
    [run_id] = kfp_api.runs
    assert url == f"{kfp_api.host}/#/runs/details/{run_id}"


def test_submit_sends_the_bearer_token_from_kfp_token_on_every_request(kfp_api, package, monkeypatch):
    kfp_api.token = "s3cret"
    monkeypatch.setenv("KFP_TOKEN", "s3cret")
    _submit(connection_from_env(kfp_api.host), package)
    assert kfp_api.calls == [*NEW_EVERYTHING, f"POST {API}/runs"]
    assert {r.headers["authorization"] for r in kfp_api.requests} == {"Bearer s3cret"}


def test_submit_sends_the_bearer_token_from_kfp_token_file(kfp_api, package, monkeypatch, tmp_path):
    kfp_api.token = "from-file"
    (tmp_path / "token").write_text("from-file\n")
    monkeypatch.setenv("KFP_TOKEN_FILE", str(tmp_path / "token"))
    _submit(connection_from_env(kfp_api.host), package)
    assert {r.headers["authorization"] for r in kfp_api.requests} == {"Bearer from-file"}


def test_submit_without_a_token_sends_no_authorization_header(kfp_api: FakeKfp, package: Path):
    _submit(connection_from_env(kfp_api.host), package)
    assert all("authorization" not in r.headers for r in kfp_api.requests)


def test_a_rejected_token_is_a_clear_error_without_the_token(kfp_api: FakeKfp, package: Path):
    kfp_api.token = "right"
    with pytest.raises(NlpstdError, match="answered 401 Unauthorized.*check KFP_TOKEN or KFP_TOKEN_FILE") as error:
        # With a namespace: without one, kfp.Client retries a refused healthz 5 times, 5 s apart, then times out.
        _submit(Connection(kfp_api.host, "wrong", "team-nlp"), package)
    assert "wrong" not in str(error.value)


def test_submit_uses_the_namespace_for_the_experiment_and_the_pipeline(kfp_api: FakeKfp, package: Path):
    _submit(Connection(kfp_api.host, None, "team-nlp"), package)
    assert kfp_api.calls == NEW_EVERYTHING[1:] + [f"POST {API}/runs"]  # a namespace skips kfp's healthz check
    assert kfp_api.request("GET", f"{API}/experiments").query["namespace"] == "team-nlp"
    assert kfp_api.request("POST", f"{API}/experiments").json == {"display_name": "nightly", "namespace": "team-nlp"}
    assert kfp_api.request("GET", f"{API}/pipelines").query["namespace"] == "team-nlp"
    assert kfp_api.request("POST", f"{API}/pipelines/upload").query == {"name": "hello", "namespace": "team-nlp"}


def test_an_experiment_of_another_namespace_is_not_reused(kfp_api: FakeKfp, package: Path):
    kfp_api.add_experiment("nightly", namespace="someone-else")
    _submit(Connection(kfp_api.host, None, "team-nlp"), package)
    assert len(kfp_api.requests_to("POST", f"{API}/experiments")) == 1


def test_a_missing_package_is_an_error_before_any_request(kfp_api: FakeKfp, tmp_path: Path):
    with pytest.raises(NlpstdError, match="no compiled pipeline there"):
        _submit(Connection(kfp_api.host, None, None), tmp_path / "missing.yaml")
    assert kfp_api.calls == []


def test_an_unreachable_host_is_a_clear_error(package: Path):
    with FakeKfp() as gone:
        host = gone.host
    with pytest.raises(NlpstdError, match=f"cannot reach the KFP API at {host}"):
        _submit(Connection(host, None, "team-nlp"), package)


def test_upload_returns_the_pipeline_and_version_ids(kfp_api: FakeKfp, package: Path):
    pipeline_id = kfp_api.add_pipeline("hello")
    ids = upload(client(Connection(kfp_api.host, None, None)), package, "hello", "v2")
    [version] = [v for v in kfp_api.versions.values() if v["name"] == "v2"]
    assert ids == (pipeline_id, version["pipeline_version_id"])


# -- schedule --------------------------------------------------------------------------------------


def test_schedule_makes_these_requests_when_nothing_exists_yet(kfp_api: FakeKfp, package: Path):
    _schedule(Connection(kfp_api.host, None, None), package)
    assert kfp_api.calls == [*NEW_EVERYTHING[:3], f"GET {API}/recurringruns", *NEW_EVERYTHING[3:],
                             f"POST {API}/recurringruns"]


def test_schedule_looks_for_a_recurring_run_of_that_name_in_the_experiment(kfp_api: FakeKfp, package: Path):
    _schedule(Connection(kfp_api.host, None, None), package)
    [experiment_id] = kfp_api.experiments
    lookup = kfp_api.request("GET", f"{API}/recurringruns")
    assert {k: v for k, v in lookup.query.items() if k != "filter"} == {
        "page_token": "", "page_size": "100", "sort_by": "", "experiment_id": experiment_id}
    _name_filter(lookup, "hello-nightly")


def test_schedule_creates_an_enabled_cron_recurring_run_one_at_a_time_without_catchup(kfp_api, package):
    _schedule(Connection(kfp_api.host, None, None), package)
    [experiment_id] = kfp_api.experiments
    [version] = [v for v in kfp_api.versions.values() if v["name"] == "v1"]
    assert kfp_api.request("POST", f"{API}/recurringruns").json == {
        "display_name": "hello-nightly",
        "experiment_id": experiment_id,
        "pipeline_version_reference": {"pipeline_id": version["pipeline_id"],
                                       "pipeline_version_id": version["pipeline_version_id"]},
        "runtime_config": {"parameters": PARAMS},
        "trigger": {"cron_schedule": {"cron": "0 0 3 * * *"}},
        "max_concurrency": 1,
        "no_catchup": True,
        "mode": "ENABLE",
    }


def test_schedule_returns_the_recurring_run_url(kfp_api: FakeKfp, package: Path):
    url = _schedule(Connection(kfp_api.host, None, None), package)
    [recurring_run_id] = kfp_api.recurring_runs
    assert url == f"{kfp_api.host}/#/recurringrun/details/{recurring_run_id}"


def test_schedule_refuses_a_second_enabled_schedule_of_the_same_name(kfp_api: FakeKfp, package: Path):
    existing = kfp_api.add_recurring_run("hello-nightly", kfp_api.add_experiment("nightly"))
    with pytest.raises(NlpstdError, match=f"already has an enabled recurring run named 'hello-nightly'.*{existing}"
                                          ".*disable or delete it first"):
        _schedule(Connection(kfp_api.host, None, None), package)
    assert kfp_api.calls[-1] == f"GET {API}/recurringruns"  # nothing uploaded, nothing scheduled
    assert list(kfp_api.recurring_runs) == [existing]


def test_schedule_may_reuse_the_name_of_a_disabled_schedule(kfp_api: FakeKfp, package: Path):
    kfp_api.add_recurring_run("hello-nightly", kfp_api.add_experiment("nightly"), enabled=False)
    _schedule(Connection(kfp_api.host, None, None), package)
    assert len(kfp_api.recurring_runs) == 2


def test_schedule_ignores_a_schedule_of_the_same_name_in_another_experiment(kfp_api: FakeKfp, package: Path):
    kfp_api.add_recurring_run("hello-nightly", kfp_api.add_experiment("weekly"))
    _schedule(Connection(kfp_api.host, None, None), package)
    assert len(kfp_api.recurring_runs) == 2


def test_schedule_rejects_a_five_field_cron_before_any_request(kfp_api: FakeKfp, package: Path):
    with pytest.raises(NlpstdError, match="cron '0 3 \\* \\* \\*' has 5 fields; KFP wants 6, seconds first"):
        _schedule(Connection(kfp_api.host, None, None), package, cron="0 3 * * *")
    assert kfp_api.calls == []
