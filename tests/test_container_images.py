"""The CPU image, built for real by the local Docker engine: it runs, it is sound, it leaks nothing.

The build is given an extra CA bundle (this machine's, where TLS is intercepted, plus a test CA
that nothing trusts) and tokens in the build's environment; no layer of the image may hold any
of them. Without an engine these tests skip, except under CI (CI set), where they fail: CI's
machine is set up to have one (.ci/run).
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import docker
from nlpstd.errors import NlpstdError
from pipelines import stack
from pipelines.images import BuildSettings, build_images, images

# A self-signed certificate made for this test (its key was thrown away): it must reach pip in
# the builder stage and no layer of the final image.
TEST_CA = """-----BEGIN CERTIFICATE-----
MIIByDCCAW2gAwIBAgIUWA0eZCvpI26SYxkiZ85OFcz6YJEwCgYIKoZIzj0EAwIw
ODE2MDQGA1UEAwwtbmxwc3RkIHRlc3QgYnVpbGQgQ0EgKG5ldmVyIHRydXN0ZWQg
YW55d2hlcmUpMCAXDTI2MTIwNjEwMDM0NVoYDzIxMjYxMTEyMTAwMzQ1WjA4MTYw
NAYDVQQDDC1ubHBzdGQgdGVzdCBidWlsZCBDQSAobmV2ZXIgdHJ1c3RlZCBhbnl3
aGVyZSkwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQhXcv1GEKbMc3ZiPwCWIJ1
ahUt4bSOQrhQuVdEUnj+X8VJfkSFt2Bd1nkD1IGPEpbcTf05mRVBguFO7BCRhVUe
o1MwUTAdBgNVHQ4EFgQUoxgzox71dP1gLRcZHfmTu9zBxj4wHwYDVR0jBBgwFoAU
oxgzox71dP1gLRcZHfmTu9zBxj4wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD
AgNJADBGAiEAu6iLY0/g2l/vZcVpxdKpEi786tP9Xe9L+011yaY5THcCIQDgJyMd
0V2JRklRw/ZpsBHK2sLYbQBDNcVnJm2yE7NmCA==
-----END CERTIFICATE-----
"""

# Credentials a build machine may hold in its environment; none may reach the image.
TOKENS = {
    "KFP_TOKEN": "kfp-token-5b1e0c9d7a",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-0e6f2b8c4d",
    "HF_TOKEN": "hf_token_9c3a7e1f5b",
}

PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\n(.+?)\n-----END CERTIFICATE-----", re.S)
CHUNK = 64 << 20


def _engine_or_skip() -> docker.DockerClient:
    """A live engine; without one, a skip that says why, or under CI a failure."""
    if stack.engine_answers():
        return docker.from_env(timeout=600)
    reason = "no Docker engine answers (start one: make docker-engine, as root; or set DOCKER_HOST)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = _engine_or_skip()
    yield client
    client.close()


def _settings(engine: docker.DockerClient) -> BuildSettings:
    """The environment's settings; where none are set and the engine holds the Debian base image, the local ones."""
    if not os.environ.get("NLPSTD_BASE_IMAGE") and stack.has_image(engine, stack.BASE_IMAGE):
        return BuildSettings.from_env({**os.environ, **stack.local_build_env()})
    return BuildSettings.from_env()


@pytest.fixture(scope="module")
def ca_bundle(engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle the build trusts: the configured one (if any) followed by TEST_CA."""
    configured = _settings(engine).ca_bundle
    bundle = tmp_path_factory.mktemp("ca") / "build-ca.pem"
    bundle.write_bytes((configured.read_bytes() if configured else b"") + TEST_CA.encode())
    return bundle


@pytest.fixture(scope="module")
def cpu_image(engine: docker.DockerClient, ca_bundle: Path) -> str:
    """This checkout's CPU image, built with the extra CA and tokens in the environment (cached layers make a rebuild quick)."""
    settings = BuildSettings(**{**_settings(engine).__dict__, "ca_bundle": ca_bundle})
    lines: list[str] = []
    saved = {name: os.environ.get(name) for name in TOKENS}
    os.environ.update(TOKENS)
    try:
        build_images(push=False, client=engine, which=("cpu",), settings=settings, progress=lines.append)
    except NlpstdError as err:
        pytest.fail(f"{err}\n" + "\n".join(lines[-40:]), pytrace=False)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
    return images().cpu


def _run(engine: docker.DockerClient, image: str, *command: str) -> str:
    return engine.containers.run(image, list(command), remove=True, network_mode="none", stdout=True, stderr=True).decode()


def _pem_bodies(bundle: bytes) -> set[bytes]:
    return {body.replace(b"\r", b"") for body in PEM.findall(bundle.replace(b"\r\n", b"\n"))}


def _leaked(engine: docker.DockerClient, image: str, needles: dict[str, bytes]) -> dict[str, list[str]]:
    """Which needles occur in which member of `docker save IMAGE` (every layer tar, the config, the manifest)."""
    found: dict[str, list[str]] = {}
    stream = _IterStream(engine.images.get(image).save(chunk_size=CHUNK))
    overlap = max(len(n) for n in needles.values()) - 1
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            if not member.isfile():
                continue
            handle, tail = archive.extractfile(member), b""
            while block := handle.read(CHUNK):
                window, tail = tail + block, (tail + block)[-overlap:]
                for name, needle in needles.items():
                    if needle in window and member.name not in found.setdefault(name, []):
                        found[name].append(member.name)
    return {name: members for name, members in found.items() if members}


class _IterStream:
    """A read-only file over the SDK's chunk iterator, so `docker save` is scanned without a copy on disk."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buffer = iter(chunks), b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        size = len(self._buffer) if size < 0 else size
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


# Without an engine


def test_a_missing_engine_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set and no Docker engine answers"):
        _engine_or_skip()


def test_a_missing_engine_skips_outside_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Docker engine answers"):
        _engine_or_skip()


# The CPU image


@pytest.mark.slow
def test_cpu_image_runs_nlpstd_help_as_a_non_root_user(engine: docker.DockerClient, cpu_image: str):
    output = _run(engine, cpu_image, "sh", "-c", "id -u && nlpstd --help")
    uid, _, help_text = output.partition("\n")
    assert uid.strip() == "1000"
    assert "usage: nlpstd" in help_text


@pytest.mark.slow
def test_cpu_image_has_no_broken_requirements(engine: docker.DockerClient, cpu_image: str):
    assert "No broken requirements found" in _run(engine, cpu_image, "pip", "check")


@pytest.mark.slow
def test_cpu_image_holds_the_cpu_build_of_torch(engine: docker.DockerClient, cpu_image: str):
    assert _run(engine, cpu_image, "python", "-c", "import torch; print(torch.__version__)").strip() == "2.13.0+cpu"


@pytest.mark.slow
def test_no_layer_of_the_cpu_image_holds_a_ca_given_to_the_build(engine: docker.DockerClient, cpu_image: str, ca_bundle: Path):
    """Every certificate of the build's bundle that the image does not trust on its own must be absent from every layer."""
    own = _run(engine, cpu_image, "sh", "-c",
               "cat /etc/ssl/certs/ca-certificates.crt; cat $(python -c 'import certifi; print(certifi.where())' 2>/dev/null)")
    extra = _pem_bodies(ca_bundle.read_bytes()) - _pem_bodies(own.encode())
    assert _pem_bodies(TEST_CA.encode()) <= extra
    # Two lines of each certificate's base64 body: long enough to be unique, short enough to survive re-wrapping elsewhere.
    needles = {f"certificate {i}": body.split(b"\n")[2] + b"\n" + body.split(b"\n")[3] for i, body in enumerate(sorted(extra))}
    assert _leaked(engine, cpu_image, needles) == {}


@pytest.mark.slow
def test_no_layer_of_the_cpu_image_holds_a_token_from_the_build_environment(engine: docker.DockerClient, cpu_image: str):
    assert _leaked(engine, cpu_image, {name: value.encode() for name, value in TOKENS.items()}) == {}
