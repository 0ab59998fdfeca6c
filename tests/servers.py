"""Real servers on loopback for tests: an S3 (moto) and an MLflow tracking server storing its
artifacts in that S3. Use from a test module with `pytest_plugins = ["tests.servers"]`.

Nothing here reaches outside 127.0.0.1, and both servers run as subprocesses of the test
session, so the code under test talks HTTP to them exactly as it would to the real services.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd: list[str], log: Path, ready_url: str, timeout: float, **kwargs) -> subprocess.Popen:
    """Start `cmd` in its own process group and wait until `ready_url` answers HTTP."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(ready_url, timeout=1):
                return proc
        except urllib.error.HTTPError:
            return proc  # it answers, if only with an error status
        except OSError:
            time.sleep(0.05)
    _stop(proc)
    tail = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"{cmd[0]} did not answer {ready_url} within {timeout:.0f} s (exit code {proc.poll()}); its log:\n{tail}")


def _stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate the process group we started, then kill it if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue


class _Proxy:
    """Forwards a loopback port to another. Stopping it refuses connections, and cuts open ones,
    as an S3 outage would, while the server behind keeps its state (moto keeps objects only in
    memory, so restarting moto itself would also wipe every bucket)."""

    def __init__(self, port: int, target: int):
        self.port, self.target = port, target
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self) -> None:
        if self._listener is None:
            self._listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: same port again
            self._listener.settimeout(0.05)
            self._thread = threading.Thread(target=self._accept, args=(self._listener,), daemon=True)
            self._thread.start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            self._thread.join()
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            _close(conn)

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        """Copy one direction; when either side closes, close both (HTTP needs no half-close)."""
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._conns -= {src, dst}
        _close(src)
        _close(dst)


def _close(sock: socket.socket) -> None:
    """Close a socket, waking any thread blocked reading it (close alone may not, on Linux)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@dataclass
class S3Server:
    """A moto S3 behind `endpoint`; `stop()`/`start()` take the endpoint down and back up on
    the same port, keeping the stored objects."""

    endpoint: str
    proxy: _Proxy
    process: subprocess.Popen
    startup_s: float

    def stop(self) -> None:
        self.proxy.stop()

    def start(self) -> None:
        self.proxy.start()

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """moto_server on a free loopback port, with boto3's environment pointing at it."""
    port, moto_port = free_port(), free_port()
    began = time.monotonic()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = _start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], log,
                  f"http://127.0.0.1:{moto_port}/moto-api/", timeout=30)
    proxy = _Proxy(port, moto_port)
    proxy.start()
    server = S3Server(f"http://127.0.0.1:{port}", proxy, proc, time.monotonic() - began)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", str(log.parent / "no-aws-config"))  # a user's ~/.aws stays out
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(log.parent / "no-aws-credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_ENDPOINT_URL", server.endpoint)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        try:
            yield server
        finally:
            proxy.stop()
            _stop(proc)


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[str]:
    """A fresh, empty bucket; the endpoint is up before and after the test."""
    s3_server.start()
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    yield name
    s3_server.start()


@dataclass
class MlflowServer:
    uri: str
    bucket: str
    artifact_root: str
    startup_s: float


@pytest.fixture(scope="session")
def _mlflow_process(s3_server: S3Server, tmp_path_factory) -> Iterator[MlflowServer]:
    tmp = tmp_path_factory.mktemp("mlflow")
    bucket = f"mlflow-{uuid.uuid4().hex[:12]}"
    s3_server.start()
    s3_server.client().create_bucket(Bucket=bucket)
    port = free_port()
    root = f"s3://{bucket}/mlartifacts"
    # --no-serve-artifacts: clients read and write s3://… directly, the server only hands out the location.
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
           "--default-artifact-root", root, "--no-serve-artifacts",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3_server.endpoint}
    env.pop("MLFLOW_TRACKING_URI", None)
    began = time.monotonic()
    proc = _start(cmd, tmp / "server.log", f"http://127.0.0.1:{port}/health", timeout=120, env=env, cwd=tmp)
    try:
        yield MlflowServer(f"http://127.0.0.1:{port}", bucket, root, time.monotonic() - began)
    finally:
        _stop(proc)


@pytest.fixture
def mlflow_server(_mlflow_process: MlflowServer, s3_server: S3Server, monkeypatch) -> MlflowServer:
    """An MLflow tracking server (SQLite backend, artifacts in the moto S3); MLFLOW_TRACKING_URI
    and MLFLOW_S3_ENDPOINT_URL point at it for the test."""
    s3_server.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _mlflow_process.uri)
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3_server.endpoint)
    return _mlflow_process
