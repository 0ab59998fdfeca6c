"""Container images for the pipeline: built from this checkout and pushed with the Docker SDK.

Every image is tagged `<package version>-<commit>` (`-dirty` when tracked files have
uncommitted changes), so a compiled pipeline names exactly the code its steps run.

    python -m pipelines images                # build nlpstd:TAG and nlpstd-gpu:TAG
    NLPSTD_REGISTRY=registry.example.com/ml python -m pipelines images --push
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
from docker.utils import parse_repository_tag

from nlpstd.errors import NlpstdError

REPO_ROOT = Path(__file__).resolve().parents[1]
REGISTRY_ENV = "NLPSTD_REGISTRY"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

# Image name and Dockerfile (relative to the build context, the repository root) of each flavour.
FLAVOURS: Mapping[str, tuple[str, str]] = {
    "cpu": ("nlpstd", "docker/Dockerfile"),
    "gpu": ("nlpstd-gpu", "docker/Dockerfile.gpu"),
}

# Seconds the build may go without a line of output: pip prints nothing while it downloads
# a multi-GB CUDA wheel, so the SDK's default of 60 s would abort healthy builds.
BUILD_READ_TIMEOUT_S = 30 * 60

Progress = Callable[[str], object]


@dataclass(frozen=True)
class Images:
    """Full references of the pipeline's images, e.g. `registry.example.com/ml/nlpstd:0.1.0-1a2b3c4d5e6f`."""

    cpu: str
    gpu: str


def image_tag(root: Path = REPO_ROOT) -> str:
    """`<version>-<commit, 12 hex digits>`, plus `-dirty` when tracked files differ from the commit.

    Untracked files do not count, so a scratch file does not mark every build dirty; a new,
    uncommitted module under src/ does go into the image, so commit before pushing. Without git
    the commit reads `nogit`.
    """
    commit, dirty = _git_state(root)
    tag = f"{_version(root)}-{commit[:12] if commit else 'nogit'}{'-dirty' if dirty else ''}"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", tag)  # a local version's "+" is not allowed in a tag


def images(registry: str | None = None) -> Images:
    """The references this checkout's images get, under `registry` (default: $NLPSTD_REGISTRY, else local names)."""
    prefix, tag = _registry(registry), image_tag()
    return Images(**{flavour: f"{prefix}/{name}:{tag}" if prefix else f"{name}:{tag}" for flavour, (name, _) in FLAVOURS.items()})


def build_images(
    *,
    push: bool,
    registry: str | None = None,
    client: docker.DockerClient | None = None,
    which: Iterable[str] = ("cpu", "gpu"),
    progress: Progress = print,
) -> Images:
    """Build the images named in `which` from this checkout and, with `push`, push them to `registry`.

    The engine is `client`, else the one the environment names (DOCKER_HOST, or the default
    socket), as the docker CLI would pick it. The build log goes to `progress` line by line as
    the engine writes it. Returns the references of both flavours, built or not.
    """
    wanted = _flavours(which)
    if push and not _registry(registry):
        raise NlpstdError(f"pushing images needs a registry: set {REGISTRY_ENV} (e.g. registry.example.com/ml) or pass --registry")
    refs = images(registry)
    version, (commit, _) = _version(REPO_ROOT), _git_state(REPO_ROOT)
    engine = client or _connect()
    try:
        _ping(engine)
        for flavour in wanted:
            _build(engine, getattr(refs, flavour), FLAVOURS[flavour][1], {"VERSION": version, "REVISION": commit or "unknown"}, progress)
        if push:
            for flavour in wanted:
                _push(engine, getattr(refs, flavour), progress)
    finally:
        if client is None:
            engine.close()
    return refs


def _version(root: Path) -> str:
    """The version in `root`'s pyproject.toml: the one being built, which may be ahead of the installed one."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        return importlib.metadata.version("nlpstd")
    try:
        with open(root / "pyproject.toml", "rb") as handle:
            return tomllib.load(handle)["project"]["version"]
    except (OSError, KeyError):
        return importlib.metadata.version("nlpstd")


def _git_state(root: Path) -> tuple[str | None, bool]:
    """(HEAD commit, whether tracked files have uncommitted changes); (None, False) without git or a repository."""
    try:
        commit = _git(root, "rev-parse", "--verify", "HEAD")
        changes = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None, False
    return commit, bool(changes)


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


def _registry(registry: str | None) -> str | None:
    value = (registry if registry is not None else os.environ.get(REGISTRY_ENV, "")).strip().rstrip("/")
    return value or None


def _flavours(which: Iterable[str]) -> tuple[str, ...]:
    wanted = (which,) if isinstance(which, str) else tuple(dict.fromkeys(which))
    unknown = [name for name in wanted if name not in FLAVOURS]
    if unknown or not wanted:
        named = f"unknown image flavour {', '.join(map(repr, unknown))}" if unknown else "no image flavour given"
        raise NlpstdError(f"{named}: choose from {', '.join(FLAVOURS)}")
    return wanted


def _connect() -> docker.DockerClient:
    """A client for the engine the environment names; connecting asks the engine for its API version."""
    try:
        return docker.from_env()
    except docker.errors.DockerException as err:
        raise _unreachable(err) from err


def _ping(engine: docker.DockerClient) -> None:
    try:
        engine.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
        raise _unreachable(err, engine.api.base_url) from err


def _unreachable(err: Exception, base_url: str | None = None) -> NlpstdError:
    host = os.environ.get("DOCKER_HOST")
    if "paramiko" in str(err):  # docker-py speaks ssh:// only through paramiko, an optional extra
        return NlpstdError(f"DOCKER_HOST={host} needs the paramiko package: pip install paramiko")
    where = f"engine at {base_url}" if base_url else f"DOCKER_HOST={host}" if host else f"DOCKER_HOST=unset, default {DEFAULT_DOCKER_HOST}"
    return NlpstdError(
        f"no Docker engine reachable ({where}): start Docker, or set DOCKER_HOST to an engine (e.g. tcp://host:2375 or ssh://user@host)"
    )


def _build(engine: docker.DockerClient, ref: str, dockerfile: str, buildargs: dict[str, str], progress: Progress) -> None:
    """Build `ref` from the repository root.

    The low-level call streams the log as it comes; `client.images.build` only returns once the
    build is over. `pull=False` keeps the base image the engine already has (it pulls one it lacks),
    so a rebuild without source changes is all cache hits.
    """
    progress(f"building {ref} from {dockerfile}")
    image_id = None
    with _engine_errors(f"building {ref}"):
        log = engine.api.build(
            path=str(REPO_ROOT),
            dockerfile=dockerfile,
            tag=ref,
            buildargs=buildargs,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            timeout=BUILD_READ_TIMEOUT_S,
        )
        for chunk in log:
            _raise_on_error(chunk, f"building {ref}")
            _report(chunk, progress)
            image_id = chunk.get("aux", {}).get("ID", image_id)
        image = engine.images.get(image_id or ref)
    progress(f"built {ref} ({image.short_id}, {image.attrs.get('Size', 0) / 1e9:.2f} GB)")


def _push(engine: docker.DockerClient, ref: str, progress: Progress) -> None:
    """Push `ref` with the credentials of `docker login` (read from the docker config by the SDK)."""
    repository, tag = parse_repository_tag(ref)
    progress(f"pushing {ref}")
    digest = None
    with _engine_errors(f"pushing {ref}"):
        for chunk in engine.images.push(repository, tag=tag, stream=True, decode=True):
            _raise_on_error(chunk, f"pushing {ref}")
            _report(chunk, progress)
            digest = chunk.get("aux", {}).get("Digest", digest)
    progress(f"pushed {ref}" + (f" ({digest})" if digest else ""))


def _report(chunk: Mapping[str, Any], progress: Progress) -> None:
    """Pass on the build's own output and overall status lines; per-layer progress is left out."""
    if "stream" in chunk:
        for line in str(chunk["stream"]).splitlines():
            if line.strip():
                progress(line.rstrip())
    elif "status" in chunk and "id" not in chunk:
        progress(str(chunk["status"]))


def _raise_on_error(chunk: Mapping[str, Any], action: str) -> None:
    message = chunk.get("error") or chunk.get("errorDetail", {}).get("message")
    if message:
        raise NlpstdError(f"{action} failed: {_one_line(message)}")


@contextmanager
def _engine_errors(action: str) -> Iterator[None]:
    """Turn the engine's refusals and lost connections during `action` into one-line NlpstdErrors."""
    try:
        yield
    except docker.errors.APIError as err:
        raise NlpstdError(f"{action} failed: {_one_line(err.explanation or err)}") from err
    except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
        raise NlpstdError(f"{action} failed: {_one_line(err)}") from err


def _one_line(message: object) -> str:
    return " ".join(str(message).split())
