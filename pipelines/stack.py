"""A Docker engine and a base image on a machine that has neither, for building the images locally.

Where Docker Hub cannot be reached, `python:3.11-slim` cannot be pulled: the base image is made
from Debian's own packages instead (debootstrap, then `docker import`). On a fresh CI machine no
engine runs either: as root, one is started with the settings that work without a bridge network.

    python -m pipelines.stack check        say whether an engine answers (exit 1 if not)
    python -m pipelines.stack engine       start dockerd as root when none answers
    python -m pipelines.stack base-image   make nlpstd-base:bookworm unless the engine has it
    python -m pipelines.stack env          `export` lines that build the images on this machine
    python -m pipelines.stack up           start the S3 endpoint and MLflow server that task containers
                                           reach (both on 127.0.0.1), print their `export` lines
    python -m pipelines.stack down         stop them

`up` keeps its state in runs/docker-stack (NLPSTD_STACK_DIR): the MLflow store (SQLite), the logs
and the process ids. The S3 endpoint is moto, which holds objects in memory: MLflow's artifacts
last until `down`, its runs and metrics (SQLite) beyond.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import requests

import docker
from nlpstd.errors import NlpstdError

BASE_IMAGE = "nlpstd-base:bookworm"
SUITE = "bookworm"  # Debian 12: Python 3.11, as python:3.11-slim
BASE_PACKAGES = "python3,python3-venv,ca-certificates"

# Where `engine` starts dockerd: the default socket, so every client finds it without DOCKER_HOST.
SOCKET = "/var/run/docker.sock"
DATA_ROOT = "/var/lib/docker"
EXEC_ROOT = "/var/run/docker"
ENGINE_LOG = "/var/log/dockerd.log"
ENGINE_START_S = 60


def engine_answers() -> bool:
    """Whether the engine the environment names (DOCKER_HOST, else the default socket) answers a ping."""
    try:
        client = docker.from_env(timeout=10)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return False
    finally:
        client.close()


def require_engine() -> docker.DockerClient:
    """A client for a live engine, or an error naming what to do: tests and builds fail on that line."""
    if not engine_answers():
        host = os.environ.get("DOCKER_HOST") or f"unix://{SOCKET}"
        raise NlpstdError(
            f"no Docker engine answers at {host}: start one (as root: python -m pipelines.stack engine), or set DOCKER_HOST"
        )
    return docker.from_env(timeout=600)


def start_engine() -> None:
    """Start dockerd in the background when no engine answers, and wait until it does.

    This machine has no iptables rules to spare and no docker0 bridge, so the engine runs with
    neither; containers and builds then use `--network host` (or none). Idempotent: a running
    engine is left alone.
    """
    if engine_answers():
        return
    if os.geteuid() != 0:
        raise NlpstdError("starting dockerd needs root: run as root, or start Docker another way")
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise NlpstdError("dockerd not found: apt-get install docker.io")
    for folder in (DATA_ROOT, EXEC_ROOT, str(Path(ENGINE_LOG).parent)):
        os.makedirs(folder, exist_ok=True)
    command = [
        dockerd, "--iptables=false", "--ip-masq=false", "--bridge=none", "--storage-driver", "overlay2",
        "--data-root", DATA_ROOT, "--exec-root", EXEC_ROOT, "-H", f"unix://{SOCKET}",
    ]
    with open(ENGINE_LOG, "ab") as log:
        subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + ENGINE_START_S
    while time.monotonic() < deadline:
        if engine_answers():
            return
        time.sleep(0.5)
    raise NlpstdError(f"dockerd did not answer within {ENGINE_START_S} s: see {ENGINE_LOG}")


def has_image(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_base_image(name: str = BASE_IMAGE, *, mirror: str | None = None) -> bool:
    """Make `name` from Debian's packages unless the engine has it; True when it was built.

    debootstrap needs root and reaches the Debian mirror over plain HTTP, which works where Docker
    Hub does not. The root file system is imported as one layer; the Dockerfiles add the rest.
    """
    client = require_engine()
    try:
        if has_image(client, name):
            return False
        if os.geteuid() != 0:
            raise NlpstdError(f"building {name} with debootstrap needs root")
        if shutil.which("debootstrap") is None:
            raise NlpstdError("debootstrap not found: apt-get install debootstrap")
        with tempfile.TemporaryDirectory(prefix="nlpstd-base-") as scratch:
            root, archive = Path(scratch) / "root", Path(scratch) / "root.tar"
            command = ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE, str(root), *([mirror] if mirror else [])]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise NlpstdError(f"debootstrap {SUITE} failed: {' '.join(done.stdout.splitlines()[-3:] + done.stderr.splitlines()[-3:])}")
            shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
            subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
            repository, _, tag = name.partition(":")
            client.api.import_image_from_file(str(archive), repository=repository, tag=tag or "latest")
        return True
    finally:
        client.close()


STACK_DIR = Path(os.environ.get("NLPSTD_STACK_DIR", "runs/docker-stack"))
S3_PORT = int(os.environ.get("NLPSTD_S3_PORT", "9005"))
MLFLOW_PORT = int(os.environ.get("NLPSTD_MLFLOW_PORT", "5005"))
ARTIFACT_BUCKET = "mlflow"
SERVER_START_S = 120
# moto accepts any credentials; these keep a user's real ones out of every request it serves.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class Servers:
    """The S3 endpoint and the MLflow server on loopback, which host-network containers reach as this machine does."""

    s3: str
    mlflow: str

    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.mlflow, "MLFLOW_S3_ENDPOINT_URL": self.s3, "AWS_ENDPOINT_URL": self.s3,
                **S3_CREDENTIALS}


def start_servers(folder: Path = STACK_DIR, s3_port: int = S3_PORT, mlflow_port: int = MLFLOW_PORT) -> Servers:
    """moto as the S3 endpoint and an MLflow server (SQLite store, artifacts in S3), unless they answer
    already; idempotent, so `make pipeline-docker` may call it every time."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    servers = Servers(f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{mlflow_port}")
    env = {**os.environ, **servers.env()}
    env.pop("MLFLOW_TRACKING_URI")
    binaries = Path(sys.executable).parent
    if not _answers(f"{servers.s3}/moto-api/"):
        retired = retire_store(folder)  # its runs' and models' files lived in the S3 endpoint that is gone
        if retired:
            print(f"stack: a new S3 endpoint holds none of the old MLflow store's files; the store is set aside as {retired}",
                  file=sys.stderr)
        deadline = time.monotonic() + 15
        while _answers(f"{servers.mlflow}/health") and time.monotonic() < deadline:  # the stopped server winds down
            time.sleep(0.2)
        _spawn(folder, "s3", [str(binaries / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], env,
               f"{servers.s3}/moto-api/")
    _create_bucket(servers.s3, ARTIFACT_BUCKET)  # again after a moto restart, which forgets every bucket
    if not _answers(f"{servers.mlflow}/health"):
        command = [str(binaries / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
                   "--default-artifact-root", f"s3://{ARTIFACT_BUCKET}/artifacts", "--no-serve-artifacts",
                   "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"]
        _spawn(folder, "mlflow", command, env, f"{servers.mlflow}/health")
    return servers


def retire_store(folder: Path) -> Path | None:
    """Set the MLflow store aside (stopping its server) when the S3 endpoint holding its artifacts is
    gone: moto keeps objects in memory, so a store that outlived it names models nobody can
    download, and evaluation would fail fetching the champion. Returns where it went, if anywhere."""
    store = folder / "mlflow.db"
    _stop(folder, "mlflow")
    if not store.exists():
        return None
    retired = folder / "retired" / f"mlflow-{time.strftime('%Y%m%dT%H%M%S')}.db"
    retired.parent.mkdir(parents=True, exist_ok=True)
    store.rename(retired)
    return retired


def _stop(folder: Path, name: str) -> bool:
    """Stop the server `name` started from `folder` (its recorded process group); whether it ran."""
    pid_file = folder / f"{name}.pid"
    if not pid_file.exists():
        return False
    try:
        os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        running = True
    except ProcessLookupError:
        running = False
    pid_file.unlink()
    return running


def stop_servers(folder: Path = STACK_DIR) -> list[str]:
    """Stop the servers `start_servers` started from `folder` (by their recorded process groups); their names."""
    return [pid_file.stem for pid_file in sorted(folder.glob("*.pid")) if _stop(folder, pid_file.stem)]


def _spawn(folder: Path, name: str, command: list[str], env: dict[str, str], ready_url: str) -> None:
    with open(folder / f"{name}.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=folder, start_new_session=True)
    (folder / f"{name}.pid").write_text(str(process.pid))
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline and process.poll() is None:
        if _answers(ready_url):
            return
        time.sleep(0.2)
    raise NlpstdError(f"{name} server did not answer {ready_url} (exit code {process.poll()}): see {folder / name}.log")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answers, if only with an error status
    except OSError:
        return False


def _create_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=bucket)


def local_build_env() -> dict[str, str]:
    """The build settings that work on a machine without Docker Hub: this file's base image, the
    host network, and pip's own CA bundle and find-links folder (where TLS is intercepted and
    torch's CPU wheel lies on disk)."""
    env = {"NLPSTD_BASE_IMAGE": BASE_IMAGE, "NLPSTD_BUILD_NETWORK": "host"}
    cert = os.environ.get("PIP_CERT") or _pip_config("global.cert") or os.environ.get("SSL_CERT_FILE")
    find_links = os.environ.get("PIP_FIND_LINKS") or _pip_config("global.find-links")
    if cert and Path(cert).is_file():
        env["NLPSTD_CA_BUNDLE"] = cert
    if find_links and Path(find_links).is_dir():
        env["NLPSTD_WHEELHOUSE"] = find_links
        env["NLPSTD_TORCH_INDEX"] = ""  # the wheelhouse's torch, with its dependencies from the index
    return env


def _pip_config(key: str) -> str | None:
    done = subprocess.run([sys.executable, "-m", "pip", "config", "get", key], capture_output=True, text=True)
    value = done.stdout.strip().split()
    return value[0] if done.returncode == 0 and value else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["check", "engine", "base-image", "env", "up", "down"])
    parser.add_argument("--mirror", help="Debian mirror for base-image (default: debootstrap's)")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            require_engine().close()
            print("engine answers")
        elif args.command == "engine":
            start_engine()
            print(f"engine answers (dockerd log: {ENGINE_LOG})")
        elif args.command == "base-image":
            started = time.perf_counter()
            built = build_base_image(mirror=args.mirror)
            print(f"built {BASE_IMAGE} in {time.perf_counter() - started:.0f} s" if built else f"{BASE_IMAGE} already there")
        elif args.command == "up":
            servers = start_servers()
            print(f"S3 endpoint {servers.s3}, MLflow server {servers.mlflow} (state: {STACK_DIR})", file=sys.stderr)
            for key, value in servers.env().items():
                print(f"export {key}={shlex.quote(value)}")
        elif args.command == "down":
            print(f"stopped: {', '.join(stop_servers()) or 'nothing was running'}")
        else:
            for key, value in local_build_env().items():
                print(f"export {key}={shlex.quote(value)}")
    except NlpstdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
