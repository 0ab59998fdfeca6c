"""Pipeline images: their tags, and what building and pushing them asks of a Docker engine.

The engine is a small HTTP server speaking the part of the Docker Engine API that the SDK uses
to build and push; it records each request so the tests can check what an engine would receive.
"""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

import docker
from nlpstd.errors import NlpstdError
from pipelines.images import REPO_ROOT, BuildSettings, Images, build_images, image_tag, images

API_VERSION = "1.45"
IMAGE_ID = "sha256:" + "ab12" * 16


@dataclass
class Build:
    params: dict[str, str]
    members: list[str]
    context_bytes: int


@dataclass
class Push:
    repository: str
    tag: str


@dataclass
class Engine:
    """What the test engine was asked to do, and how it answers."""

    client: docker.DockerClient
    builds: list[Build] = field(default_factory=list)
    pushes: list[Push] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    push_error: str | None = None
    build_error: str | None = None


class _EngineHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # streamed answers are chunked, as the SDK expects of an engine
    disable_nagle_algorithm = True  # headers and body go out in separate writes; no 40 ms delayed-ACK stalls
    engine: Engine  # set on a subclass per server

    def do_GET(self) -> None:
        path = _unversioned(urlsplit(self.path).path)
        if path == "/version":
            self._json({"ApiVersion": API_VERSION, "Version": "27.0.0", "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64"})
        elif path == "/_ping":
            self._send(200, b"OK", "text/plain")
        elif (name := _between(path, "/images/", "/json")) is not None:
            if name == IMAGE_ID or name in self.engine.tags:
                self._json({"Id": IMAGE_ID, "RepoTags": self.engine.tags, "Size": 1_234_000_000})
            else:
                self._json({"message": f"No such image: {name}"}, status=404)
        else:
            self._json({"message": f"page not found: {path}"}, status=404)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        path, query = _unversioned(url.path), dict(parse_qsl(url.query))
        body = self._body()
        if path == "/build":
            with tarfile.open(fileobj=io.BytesIO(body)) as context:
                members = context.getnames()
            self.engine.builds.append(Build(params=query, members=members, context_bytes=len(body)))
            if self.engine.build_error:
                error = self.engine.build_error
                self._stream([{"stream": "Step 1/9 : FROM python:3.11-slim\n"}, {"error": error, "errorDetail": {"message": error}}])
            else:
                self._stream([
                    {"stream": "Step 1/9 : FROM python:3.11-slim\n"},
                    {"stream": " ---> 0123456789ab\n"},
                    {"aux": {"ID": IMAGE_ID}},
                    {"stream": f"Successfully built {IMAGE_ID[7:19]}\n"},
                ])
        elif _between(path, "/images/", "/tag") is not None:
            self.engine.tags.append(f"{query['repo']}:{query['tag']}")
            self._send(201, b"", "text/plain")
        elif (repository := _between(path, "/images/", "/push")) is not None:
            self.engine.pushes.append(Push(repository=repository, tag=query.get("tag", "")))
            lines = [{"status": f"The push refers to repository [{repository}]"}, {"status": "Pushed", "progressDetail": {}, "id": "5f70bf18a086"}]
            if self.engine.push_error:
                lines.append({"errorDetail": {"message": self.engine.push_error}, "error": self.engine.push_error})
            else:
                digest = "sha256:" + "cd34" * 16
                lines += [{"status": f"{query.get('tag')}: digest: {digest} size: 1234"},
                          {"aux": {"Tag": query.get("tag"), "Digest": digest, "Size": 1234}}]
            self._stream(lines)
        else:
            self._json({"message": f"page not found: {path}"}, status=404)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json(self, value: object, status: int = 200) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, lines: list[dict]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line in lines:
            data = (json.dumps(line) + "\r\n").encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
        pass


def _unversioned(path: str) -> str:
    return re.sub(r"^/v[0-9.]+(?=/)", "", unquote(path))


def _between(path: str, prefix: str, suffix: str) -> str | None:
    return path[len(prefix) : -len(suffix)] if path.startswith(prefix) and path.endswith(suffix) else None


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A Docker Engine API server on 127.0.0.1, with a client connected to it."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # no proxies or credentials from the user's config
    for name in ("NLPSTD_REGISTRY", "NLPSTD_BASE_IMAGE", "NLPSTD_WHEELHOUSE", "NLPSTD_NO_INDEX", "NLPSTD_CA_BUNDLE",
                 "NLPSTD_TORCH_INDEX", "NLPSTD_BUILD_NETWORK"):
        monkeypatch.delenv(name, raising=False)
    handler = type("Handler", (_EngineHandler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    client = docker.DockerClient(base_url=f"tcp://127.0.0.1:{server.server_address[1]}")
    handler.engine = Engine(client=client)
    yield handler.engine
    client.close()
    server.shutdown()
    server.server_close()


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A committed project at version 1.2.3."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "nlpstd"\nversion = "1.2.3"\n')
    _git(root, "init", "-q")
    _git(root, "add", "pyproject.toml")
    _git(root, "commit", "-q", "-m", "start")
    return root


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Tags


def test_tag_is_the_package_version_and_the_short_commit(project: Path):
    assert image_tag(project) == f"1.2.3-{_git(project, 'rev-parse', 'HEAD')[:12]}"


def test_tag_is_marked_dirty_when_tracked_files_have_uncommitted_changes(project: Path):
    (project / "pyproject.toml").write_text('[project]\nname = "nlpstd"\nversion = "1.2.3"\n# edited\n')
    assert image_tag(project).endswith("-dirty")


def test_untracked_files_leave_the_tag_clean(project: Path):
    (project / "notes.txt").write_text("scratch")
    assert not image_tag(project).endswith("-dirty")


def test_tag_says_nogit_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "pyproject.toml").write_text('[project]\nname = "nlpstd"\nversion = "1.2.3"\n')
    assert image_tag(tmp_path / "plain") == "1.2.3-nogit"


def test_tag_of_this_checkout_names_its_version_and_head():
    head = _git(REPO_ROOT, "rev-parse", "HEAD")[:12]
    assert re.fullmatch(rf"\d+\.\d+\.\d+[^-]*-{head}(-dirty)?", image_tag())


# Image references


def test_images_are_named_under_the_registry_given(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NLPSTD_REGISTRY", "elsewhere.example.com")
    tag = image_tag()
    assert images("registry.example.com:5000/ml/") == Images(
        cpu=f"registry.example.com:5000/ml/nlpstd:{tag}", gpu=f"registry.example.com:5000/ml/nlpstd-gpu:{tag}"
    )


def test_registry_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NLPSTD_REGISTRY", "registry.example.com/ml/")
    assert images().cpu == f"registry.example.com/ml/nlpstd:{image_tag()}"


def test_without_a_registry_images_have_local_names(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NLPSTD_REGISTRY", raising=False)
    assert images() == Images(cpu=f"nlpstd:{image_tag()}", gpu=f"nlpstd-gpu:{image_tag()}")


# Building


def test_each_image_is_built_from_its_dockerfile_with_its_tag_and_build_args(engine: Engine):
    refs = build_images(push=False, client=engine.client, verify=False, progress=lambda line: None)
    version = re.search(r'^version = "([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.M).group(1)
    requests = {b.params["dockerfile"]: b.params for b in engine.builds}
    assert set(requests) == {"docker/Dockerfile", "docker/Dockerfile.gpu"}
    assert engine.tags == [refs.cpu, refs.gpu]
    for params in requests.values():
        assert json.loads(params["buildargs"]) == {"VERSION": version, "REVISION": _git(REPO_ROOT, "rev-parse", "HEAD")}


def test_only_the_flavours_asked_for_are_built(engine: Engine):
    build_images(push=False, client=engine.client, which=("gpu",), verify=False, progress=lambda line: None)
    assert [b.params["dockerfile"] for b in engine.builds] == ["docker/Dockerfile.gpu"]


def test_build_context_honours_dockerignore(engine: Engine):
    build_images(push=False, client=engine.client, which=("cpu",), verify=False, progress=lambda line: None)
    members = set(engine.builds[0].members)
    assert {"pyproject.toml", "README.md", "src/nlpstd/__init__.py", "docker/Dockerfile", "docker/Dockerfile.gpu"} <= members
    left_out = (".venv", ".git", "runs", "build", "mlruns", "mlflow.db", "tests", "benchmarks", "pipelines", ".pytest_cache")
    assert not [m for m in members if m.split("/")[0] in left_out]
    assert not [m for m in members if "__pycache__" in m.split("/") or m.endswith(".pyc") or ".egg-info" in m]


def test_build_context_is_small_and_quick_to_send(engine: Engine):
    started = time.perf_counter()
    build_images(push=False, client=engine.client, which=("cpu",), verify=False, progress=lambda line: None)
    assert engine.builds[0].context_bytes < 5_000_000
    assert time.perf_counter() - started < 5


def test_build_log_is_passed_on_line_by_line(engine: Engine):
    lines: list[str] = []
    refs = build_images(push=False, client=engine.client, which=("cpu",), verify=False, progress=lines.append)
    assert "Step 1/9 : FROM python:3.11-slim" in lines
    assert lines[-1].startswith(f"built {refs.cpu} (")


def test_a_failed_build_raises_naming_the_image(engine: Engine):
    engine.build_error = "The command '/bin/sh -c pip install .' returned a non-zero code: 1"
    with pytest.raises(NlpstdError, match=r"building nlpstd:\S+ failed: The command .* returned a non-zero code: 1"):
        build_images(push=False, client=engine.client, which=("cpu",), verify=False, progress=lambda line: None)


def test_a_failed_build_tags_nothing(engine: Engine):
    engine.build_error = "The command '/bin/sh -c pip install .' returned a non-zero code: 1"
    with pytest.raises(NlpstdError):
        build_images(push=False, client=engine.client, which=("cpu",), verify=False, progress=lambda line: None)
    assert engine.tags == []


def test_a_base_image_that_cannot_be_pulled_says_how_to_make_one(engine: Engine):
    engine.build_error = "pull access denied for python, repository does not exist or may require 'docker login'"
    with pytest.raises(NlpstdError, match=r"could not be pulled: .*make base-image"):
        build_images(push=False, client=engine.client, which=("cpu",), verify=False, progress=lambda line: None)


# Build settings


def test_settings_become_build_args_and_the_build_network(engine: Engine):
    settings = BuildSettings(base_image="nlpstd-base:bookworm", torch_index="", network="host")
    build_images(push=False, client=engine.client, which=("cpu",), settings=settings, verify=False, progress=lambda line: None)
    params = engine.builds[0].params
    assert {k: v for k, v in json.loads(params["buildargs"]).items() if k not in ("VERSION", "REVISION")} == {
        "BASE_IMAGE": "nlpstd-base:bookworm", "TORCH_INDEX_URL": ""}
    assert params["networkmode"] == "host"


def test_ca_bundle_and_wheelhouse_travel_in_the_context_under_docker_extras(engine: Engine, tmp_path: Path):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "demo-1.0-py3-none-any.whl").write_bytes(b"PK")
    settings = BuildSettings(ca_bundle=tmp_path / "ca.pem", wheelhouse=tmp_path / "wheels")
    build_images(push=False, client=engine.client, which=("cpu",), settings=settings, verify=False, progress=lambda line: None)
    assert {"docker/extras/ca.crt", "docker/extras/wheelhouse/demo-1.0-py3-none-any.whl"} <= set(engine.builds[0].members)


def test_a_missing_ca_bundle_fails_before_any_build(engine: Engine, tmp_path: Path):
    with pytest.raises(NlpstdError, match="NLPSTD_CA_BUNDLE=.*no such file"):
        build_images(push=False, client=engine.client, settings=BuildSettings(ca_bundle=tmp_path / "absent.pem"), verify=False,
                     progress=lambda line: None)
    assert engine.builds == []


def test_settings_are_read_from_the_environment():
    env = {"NLPSTD_BASE_IMAGE": "base:1", "NLPSTD_WHEELHOUSE": "/w", "NLPSTD_CA_BUNDLE": "/ca.pem", "NLPSTD_TORCH_INDEX": "",
           "NLPSTD_BUILD_NETWORK": "host"}
    assert BuildSettings.from_env(env) == BuildSettings(
        base_image="base:1", wheelhouse=Path("/w"), ca_bundle=Path("/ca.pem"), torch_index="", network="host")


def test_without_settings_only_version_and_revision_are_build_args():
    assert BuildSettings.from_env({}).buildargs() == {}


# Pushing


def test_push_sends_each_image_to_the_registry_repository_with_its_tag(engine: Engine):
    refs = build_images(push=True, registry="registry.example.com:5000/ml", client=engine.client, verify=False, progress=lambda line: None)
    tag = image_tag()
    assert refs.cpu == f"registry.example.com:5000/ml/nlpstd:{tag}"
    assert engine.pushes == [Push("registry.example.com:5000/ml/nlpstd", tag), Push("registry.example.com:5000/ml/nlpstd-gpu", tag)]


def test_a_push_error_in_the_stream_raises_naming_the_image(engine: Engine):
    engine.push_error = "denied: requested access to the resource is denied"
    with pytest.raises(NlpstdError, match=r"pushing registry\.example\.com/ml/nlpstd:\S+ failed: denied: requested access"):
        build_images(push=True, registry="registry.example.com/ml", client=engine.client, which=("cpu",), verify=False, progress=lambda line: None)


def test_push_without_a_registry_fails_before_any_build(engine: Engine):
    with pytest.raises(NlpstdError, match="set NLPSTD_REGISTRY"):
        build_images(push=True, client=engine.client, verify=False, progress=lambda line: None)
    assert engine.builds == []


# No engine


def test_without_an_engine_the_error_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    host = f"tcp://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(NlpstdError) as raised:
        build_images(push=False, verify=False, progress=lambda line: None)
    message = str(raised.value)
    assert message.startswith(f"no Docker engine reachable (DOCKER_HOST={host})")
    assert "set DOCKER_HOST" in message
    assert "\n" not in message


# Dockerfiles


@pytest.mark.parametrize("dockerfile", ["docker/Dockerfile", "docker/Dockerfile.gpu"])
def test_dockerfiles_install_the_torch_that_pyproject_pins(dockerfile: str):
    pin = re.search(r'"(torch==[^"]+)"', (REPO_ROOT / "pyproject.toml").read_text()).group(1)
    installs = re.findall(r"pip install [^\n]*?(torch==\S+)", (REPO_ROOT / dockerfile).read_text())
    assert installs == [pin]
