"""A stand-in for the Kubeflow Pipelines v2beta1 REST API, to drive `kfp.Client` end to end in tests.

`FakeKfp` serves, on 127.0.0.1 and a free port, the endpoints that submitting and scheduling use:
healthz, experiments, pipelines (list, upload, upload_version, list versions), runs and recurring runs.
It answers with the JSON the real API server sends (proto field names, the list of recurring runs under
"recurringRuns"), keeps what it creates so that a later call finds it, and records every request, so a
test can assert on the exact traffic. Any other endpoint is answered 404, so an unexpected call fails.

Seed state with `add_experiment`, `add_pipeline` and `add_recurring_run`; set `token` to make every
request need `Authorization: Bearer <token>`. The `kfp_api` fixture runs one for a test, with kfp's
client isolated from the user's ~/.config/kfp and KF_PIPELINES_* settings.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

API = "/apis/v2beta1"

# Settings kfp.Client reads from the environment; a test must not pick up the developer's.
KFP_CLIENT_ENV = (
    "KF_PIPELINES_ENDPOINT",
    "KF_PIPELINES_UI_ENDPOINT",
    "KF_PIPELINES_IAP_OAUTH2_CLIENT_ID",
    "KF_PIPELINES_APP_OAUTH2_CLIENT_ID",
    "KF_PIPELINES_APP_OAUTH2_CLIENT_SECRET",
)


@dataclass(frozen=True)
class Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Request:
    """One request as the server saw it. Header names are lower-cased; a query keeps the last value of a key."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    parts: dict[str, Part] = field(default_factory=dict)

    @property
    def call(self) -> str:
        return f"{self.method} {self.path}"


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_id() -> str:
    return str(uuid.uuid4())


class FakeKfp:
    """The fake API server and its state: plain dicts shaped like the API's JSON objects, keyed by id."""

    def __init__(self, *, multi_user: bool = False, token: str | None = None):
        self.multi_user = multi_user
        self.token = token
        self.requests: list[Request] = []
        self.experiments: dict[str, dict[str, Any]] = {}
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.recurring_runs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., dict[str, Any]]]] = [
            ("GET", re.compile(rf"{API}/healthz"), self._healthz),
            ("GET", re.compile(rf"{API}/experiments"), self._list_experiments),
            ("POST", re.compile(rf"{API}/experiments"), self._create_experiment),
            ("GET", re.compile(rf"{API}/pipelines"), self._list_pipelines),
            ("POST", re.compile(rf"{API}/pipelines/upload"), self._upload_pipeline),
            ("POST", re.compile(rf"{API}/pipelines/upload_version"), self._upload_version),
            ("GET", re.compile(rf"{API}/pipelines/(?P<pipeline_id>[^/]+)/versions"), self._list_versions),
            ("POST", re.compile(rf"{API}/runs"), self._create_run),
            ("GET", re.compile(rf"{API}/recurringruns"), self._list_recurring_runs),
            ("POST", re.compile(rf"{API}/recurringruns"), self._create_recurring_run),
        ]

    # -- life cycle --------------------------------------------------------------------------------

    def start(self) -> FakeKfp:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.01,), name="fake-kfp-api", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeKfp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- seeding -----------------------------------------------------------------------------------

    def add_experiment(self, name: str, namespace: str | None = None) -> str:
        experiment = {"experiment_id": _new_id(), "display_name": name, "namespace": namespace or "",
                      "created_at": _now(), "storage_state": "AVAILABLE"}
        self.experiments[experiment["experiment_id"]] = experiment
        return experiment["experiment_id"]

    def add_pipeline(self, name: str, namespace: str | None = None) -> str:
        """A pipeline with its first version named after it, as an upload makes it."""
        pipeline = {"pipeline_id": _new_id(), "name": name, "display_name": name, "namespace": namespace or "",
                    "created_at": _now()}
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        self._add_version(pipeline["pipeline_id"], name)
        return pipeline["pipeline_id"]

    def add_recurring_run(self, name: str, experiment_id: str, *, enabled: bool = True) -> str:
        recurring_run = {"recurring_run_id": _new_id(), "display_name": name, "experiment_id": experiment_id,
                         "mode": "ENABLE" if enabled else "DISABLE", "status": "ENABLED" if enabled else "DISABLED",
                         "trigger": {"cron_schedule": {"cron": "0 0 3 * * *"}}, "max_concurrency": "1",
                         "created_at": _now()}
        self.recurring_runs[recurring_run["recurring_run_id"]] = recurring_run
        return recurring_run["recurring_run_id"]

    def _add_version(self, pipeline_id: str, name: str) -> dict[str, Any]:
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": _new_id(), "name": name, "display_name": name,
                   "created_at": _now()}
        self.versions[version["pipeline_version_id"]] = version
        return version

    # -- what a test reads -------------------------------------------------------------------------

    @property
    def calls(self) -> list[str]:
        """Every request so far as "METHOD /path", in order."""
        return [r.call for r in self.requests]

    def requests_to(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def request(self, method: str, path: str) -> Request:
        """The one request to `method path`; fails the test if there were none or several."""
        found = self.requests_to(method, path)
        assert len(found) == 1, f"expected one {method} {path}, got {len(found)}: {self.calls}"
        return found[0]

    # -- HTTP --------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        headers = {key.lower(): value for key, value in handler.headers.items()}
        body = handler.rfile.read(int(headers.get("content-length") or 0))
        content_type = headers.get("content-type", "")
        payload, parts = None, {}
        if content_type.startswith("multipart/form-data"):
            parts = _parse_multipart(content_type, body)
        elif body:
            payload = json.loads(body)
        request = Request(handler.command, url.path, query, headers, payload, parts)
        with self._lock:
            self.requests.append(request)
            try:
                status, answer = 200, self._dispatch(request)
            except ApiError as error:
                status = error.status
                answer = {"error": error.message, "code": _GRPC_CODES.get(status, 2), "message": error.message,
                          "details": []}
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _dispatch(self, request: Request) -> dict[str, Any]:
        if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthenticated: missing or invalid bearer token")
        for method, pattern, answer in self._routes:
            match = pattern.fullmatch(request.path)
            if method == request.method and match:
                return answer(request, **match.groupdict())
        raise ApiError(404, f"the fake KFP API does not serve {request.call}")

    # -- endpoints ---------------------------------------------------------------------------------

    def _healthz(self, request: Request) -> dict[str, Any]:
        return {"multi_user": self.multi_user, "pipeline_store": "database"}

    def _list_experiments(self, request: Request) -> dict[str, Any]:
        return _page(request, _matching(self.experiments.values(), request), "experiments")

    def _create_experiment(self, request: Request) -> dict[str, Any]:
        body = request.json or {}
        if not body.get("display_name"):
            raise ApiError(400, "experiment display_name is required")
        experiment_id = self.add_experiment(body["display_name"], body.get("namespace"))
        self.experiments[experiment_id]["description"] = body.get("description") or ""
        return self.experiments[experiment_id]

    def _list_pipelines(self, request: Request) -> dict[str, Any]:
        return _page(request, _matching(self.pipelines.values(), request), "pipelines")

    def _upload_pipeline(self, request: Request) -> dict[str, Any]:
        upload = request.parts.get("uploadfile")
        if upload is None:
            raise ApiError(400, "Failed to read pipeline from file")
        name = request.query.get("name") or request.query.get("display_name") or Path(upload.filename or "").stem
        namespace = request.query.get("namespace", "")
        if any(p["name"] == name and p["namespace"] == namespace for p in self.pipelines.values()):
            raise ApiError(409, "Failed to create a pipeline and a pipeline version")
        return self.pipelines[self.add_pipeline(name, namespace)]

    def _upload_version(self, request: Request) -> dict[str, Any]:
        upload, pipeline_id = request.parts.get("uploadfile"), request.query.get("pipelineid", "")
        if upload is None or not pipeline_id:
            raise ApiError(400, "Failed to create a pipeline version")
        if pipeline_id not in self.pipelines:
            raise ApiError(400, "Failed to create a pipeline version")  # the server's answer to an unknown id
        name = request.query.get("name") or request.query.get("display_name") or Path(upload.filename or "").stem
        if any(v["pipeline_id"] == pipeline_id and v["name"] == name for v in self.versions.values()):
            raise ApiError(409, "Failed to create a pipeline version")
        return self._add_version(pipeline_id, name)

    def _list_versions(self, request: Request, pipeline_id: str) -> dict[str, Any]:
        if pipeline_id not in self.pipelines:
            raise ApiError(404, f"pipeline {pipeline_id} not found")
        versions = [v for v in self.versions.values() if v["pipeline_id"] == pipeline_id]
        return _page(request, _matching(versions, request), "pipeline_versions")

    def _create_run(self, request: Request) -> dict[str, Any]:
        body = request.json or {}
        namespace = self._check_references(body)
        run = {**body, "run_id": _new_id(), "state": "PENDING", "storage_state": "AVAILABLE", "created_at": _now()}
        if namespace:
            run["namespace"] = namespace
        self.runs[run["run_id"]] = run
        return run

    def _list_recurring_runs(self, request: Request) -> dict[str, Any]:
        found = _matching(self.recurring_runs.values(), request)
        if "experiment_id" in request.query:
            found = [r for r in found if r.get("experiment_id") == request.query["experiment_id"]]
        return _page(request, found, "recurringRuns")

    def _create_recurring_run(self, request: Request) -> dict[str, Any]:
        body = request.json or {}
        namespace = self._check_references(body)
        schedule = body.get("trigger") or {}
        if not (schedule.get("cron_schedule", {}).get("cron") or schedule.get("periodic_schedule")):
            raise ApiError(400, "a recurring run needs a cron or a periodic schedule")
        enabled = body.get("mode") == "ENABLE"
        recurring_run = {**body, "recurring_run_id": _new_id(), "status": "ENABLED" if enabled else "DISABLED",
                         "namespace": namespace, "created_at": _now(), "updated_at": _now()}
        recurring_run["max_concurrency"] = str(body.get("max_concurrency", "1"))  # int64: a string in proto JSON
        self.recurring_runs[recurring_run["recurring_run_id"]] = recurring_run
        return recurring_run

    def _check_references(self, body: dict[str, Any]) -> str:
        """Check a run's experiment and pipeline version exist, and return the experiment's namespace."""
        experiment = self.experiments.get(body.get("experiment_id", ""))
        if body.get("experiment_id") and experiment is None:
            raise ApiError(404, f"experiment {body['experiment_id']} not found")
        reference = body.get("pipeline_version_reference")
        if reference:
            version = self.versions.get(reference.get("pipeline_version_id", ""))
            if version is None or version["pipeline_id"] != reference.get("pipeline_id"):
                raise ApiError(404, f"pipeline version {reference} not found")
        elif not body.get("pipeline_spec"):
            raise ApiError(400, "a run needs a pipeline_version_reference or a pipeline_spec")
        if not body.get("display_name"):
            raise ApiError(400, "display_name is required")
        return experiment["namespace"] if experiment else ""


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Part]:
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP
    )
    parts = {}
    for item in message.iter_parts():  # type: ignore[attr-defined]
        name = item.get_param("name", header="content-disposition")
        parts[name] = Part(name, item.get_filename(), item.get_content_type(), item.get_payload(decode=True))
    return parts


def _matching(items: Any, request: Request) -> list[dict[str, Any]]:
    """The items that pass the request's `filter` (EQUALS on strings, as kfp sends) and `namespace`."""
    found = list(items)
    if "namespace" in request.query:
        found = [i for i in found if i.get("namespace", "") == request.query["namespace"]]
    if request.query.get("filter"):
        for predicate in json.loads(request.query["filter"]).get("predicates", []):
            if predicate.get("operation") not in ("EQUALS", 1):
                raise ApiError(400, f"the fake KFP API only filters with EQUALS, not {predicate}")
            key, value = predicate["key"], predicate.get("stringValue", predicate.get("string_value"))
            found = [i for i in found if i.get(key) == value]
    return found


def _page(request: Request, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """One page of `items` as the API lists them; empty lists are left out, as proto JSON does."""
    start = int(request.query.get("page_token") or 0)
    size = int(request.query.get("page_size") or 0) or len(items) or 1
    answer: dict[str, Any] = {"total_size": len(items)}
    if items[start:start + size]:
        answer[key] = items[start:start + size]
    if start + size < len(items):
        answer["next_page_token"] = str(start + size)
    return answer


@pytest.fixture
def kfp_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKfp]:
    """A running `FakeKfp`; kfp.Client reads no ~/.config/kfp/context.json and no KF_PIPELINES_* variable."""
    import kfp

    for name in KFP_CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    with FakeKfp() as api:
        yield api
