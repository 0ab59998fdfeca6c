"""Container images for the pipeline: built from this checkout and pushed with the Docker SDK.

Every image is tagged `<package version>-<commit>` (`-dirty` when tracked files have
uncommitted changes), so a compiled pipeline names exactly the code its steps run.

    python -m pipelines images                # build nlpstd:TAG and nlpstd-gpu:TAG
    NLPSTD_REGISTRY=registry.example.com/ml python -m pipelines images --push

An image is tagged only once it passes its checks: `nlpstd --help` runs in it, `pip check` finds
no broken requirements, and it runs as a user other than root.

Build settings come from the environment (all optional; unset, the Dockerfiles' defaults apply,
which need Docker Hub and the PyTorch wheel index):
    NLPSTD_BASE_IMAGE     base image of both flavours (e.g. nlpstd-base:bookworm, from `make base-image`)
    NLPSTD_WHEELHOUSE     a folder of wheels pip may install from (sent in the build context)
    NLPSTD_NO_INDEX       1: install from the wheelhouse alone (air-gapped)
    NLPSTD_CA_BUNDLE      a PEM bundle pip trusts during the build; it stays out of the final image
    NLPSTD_TORCH_INDEX    where torch comes from; empty: the regular index and the wheelhouse
    NLPSTD_BUILD_NETWORK  the network of build steps (`host` where the engine runs without a bridge)
`python -m pipelines.stack env` prints the settings that work on a machine without Docker Hub.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
import requests
from docker.utils import parse_repository_tag
from docker.utils.build import tar as context_tar

import docker
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

# Where the Dockerfiles look for optional build inputs; the builder stage alone reads them.
EXTRAS = "docker/extras"

# What each image must do before it is tagged: (what is checked, the command that must exit 0).
CHECKS: tuple[tuple[str, list[str]], ...] = (
    ("runs as non-root", ["sh", "-c", 'test "$(id -u)" != 0 && id -u']),
    ("nlpstd on PATH", ["nlpstd", "--help"]),
    ("pip check", ["pip", "check"]),
)


@dataclass(frozen=True)
class BuildSettings:
    """Where the images' inputs come from; None keeps the Dockerfiles' defaults (Docker Hub, PyPI)."""

    base_image: str | None = None
    wheelhouse: Path | None = None
    no_index: bool = False
    ca_bundle: Path | None = None
    torch_index: str | None = None
    network: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BuildSettings:
        """Settings from the NLPSTD_* variables (see the module docstring); empty ones count as unset, except NLPSTD_TORCH_INDEX."""
        env = os.environ if env is None else env
        path = lambda key: Path(env[key]).expanduser() if env.get(key) else None  # noqa: E731
        return cls(
            base_image=env.get("NLPSTD_BASE_IMAGE") or None,
            wheelhouse=path("NLPSTD_WHEELHOUSE"),
            no_index=env.get("NLPSTD_NO_INDEX", "") not in ("", "0"),
            ca_bundle=path("NLPSTD_CA_BUNDLE"),
            torch_index=env.get("NLPSTD_TORCH_INDEX"),
            network=env.get("NLPSTD_BUILD_NETWORK") or None,
        )

    def buildargs(self) -> dict[str, str]:
        """The build arguments these settings set; none of them is secret (history shows them)."""
        args = {"BASE_IMAGE": self.base_image, "TORCH_INDEX_URL": self.torch_index, "NO_INDEX": "1" if self.no_index else None}
        return {key: value for key, value in args.items() if value is not None}


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
    settings: BuildSettings | None = None,
    verify: bool = True,
    progress: Progress = print,
) -> Images:
    """Build the images named in `which` from this checkout and, with `push`, push them to `registry`.

    The engine is `client`, else the one the environment names (DOCKER_HOST, or the default
    socket), as the docker CLI would pick it. `settings` default to the environment's. With
    `verify`, each image is tagged only after it passes CHECKS. The build log goes to `progress`
    line by line as the engine writes it. Returns the references of both flavours, built or not.
    """
    wanted = _flavours(which)
    settings = BuildSettings.from_env() if settings is None else settings
    _check_inputs(settings)
    if push and not _registry(registry):
        raise NlpstdError(f"pushing images needs a registry: set {REGISTRY_ENV} (e.g. registry.example.com/ml) or pass --registry")
    refs = images(registry)
    version, (commit, _) = _version(REPO_ROOT), _git_state(REPO_ROOT)
    engine = client or _connect()
    try:
        _ping(engine)
        for flavour in wanted:
            buildargs = {**settings.buildargs(), "VERSION": version, "REVISION": commit or "unknown"}
            _build(engine, getattr(refs, flavour), FLAVOURS[flavour][1], buildargs, settings, verify, progress)
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


def _check_inputs(settings: BuildSettings) -> None:
    """Fail before any build on a wheelhouse or CA bundle that is not there."""
    if settings.wheelhouse is not None and not settings.wheelhouse.is_dir():
        raise NlpstdError(f"NLPSTD_WHEELHOUSE={settings.wheelhouse}: not a folder")
    if settings.ca_bundle is not None and not settings.ca_bundle.is_file():
        raise NlpstdError(f"NLPSTD_CA_BUNDLE={settings.ca_bundle}: no such file")
    if settings.no_index and settings.wheelhouse is None:
        raise NlpstdError("NLPSTD_NO_INDEX needs NLPSTD_WHEELHOUSE: with no index, every wheel must come from it")


def build_context(dockerfile: str, settings: BuildSettings) -> tempfile._TemporaryFileWrapper:
    """The repository root as .dockerignore filters it, plus the CA bundle and wheelhouse under EXTRAS.

    They are added to the archive rather than copied into the checkout, so a bundle or a token
    never lands in a working tree where it could be committed. Only the Dockerfiles' builder
    stage copies EXTRAS; the final stage copies the venv it built.
    """
    dockerignore = REPO_ROOT / ".dockerignore"
    lines = dockerignore.read_text().splitlines() if dockerignore.exists() else []
    exclude = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    # The SDK's helper closes its archive at the end; reopened in append mode, the extras go after it.
    context = context_tar(str(REPO_ROOT), exclude=exclude, dockerfile=(dockerfile, None), fileobj=tempfile.NamedTemporaryFile())
    context.seek(0)
    with tarfile.open(fileobj=context, mode="a") as archive:
        if settings.ca_bundle is not None:
            archive.add(settings.ca_bundle, arcname=f"{EXTRAS}/ca.crt")
        if settings.wheelhouse is not None:
            for wheel in sorted(settings.wheelhouse.glob("*.whl")):
                archive.add(wheel, arcname=f"{EXTRAS}/wheelhouse/{wheel.name}")
    context.seek(0)
    return context


def _build(
    engine: docker.DockerClient, ref: str, dockerfile: str, buildargs: dict[str, str], settings: BuildSettings, verify: bool, progress: Progress
) -> None:
    """Build `ref` from the repository root, check it, then tag it.

    The low-level call streams the log as it comes; `client.images.build` only returns once the
    build is over. `pull=False` keeps the base image the engine already has (it pulls one it lacks),
    so a rebuild without source changes is all cache hits.
    """
    progress(f"building {ref} from {dockerfile}")
    image_id = None
    with _engine_errors(f"building {ref}"), build_context(dockerfile, settings) as context:
        log = engine.api.build(
            fileobj=context,
            custom_context=True,
            dockerfile=dockerfile,
            buildargs=buildargs,
            network_mode=settings.network,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            timeout=BUILD_READ_TIMEOUT_S,
        )
        for chunk in log:
            _raise_on_error(chunk, f"building {ref}", base_image=buildargs.get("BASE_IMAGE"))
            _report(chunk, progress)
            image_id = chunk.get("aux", {}).get("ID", image_id)
        if image_id is None:
            raise NlpstdError(f"building {ref} failed: the engine named no image")
        if verify:
            for line in verify_image(engine, image_id):
                progress(line)
        repository, tag = parse_repository_tag(ref)
        engine.api.tag(image_id, repository, tag)
        image = engine.images.get(ref)
    progress(f"built {ref} ({image.short_id}, {image.attrs.get('Size', 0) / 1e9:.2f} GB)")


def verify_image(engine: docker.DockerClient, image: str) -> list[str]:
    """Run CHECKS in `image` (no network); one summary line each, or an error naming the failed check."""
    results = []
    for name, command in CHECKS:
        try:
            output = engine.containers.run(image, command, remove=True, network_mode="none", stdout=True, stderr=True)
        except docker.errors.ContainerError as err:
            detail = _one_line((err.stderr or b"").decode(errors="replace"))[:300]
            raise NlpstdError(f"image {image[:19]} fails its check '{name}' ({' '.join(command)} exited {err.exit_status}): {detail}") from err
        first = output.decode(errors="replace").strip().splitlines()[:1]
        results.append(f"check passed: {name}" + (f" ({first[0][:80]})" if first else ""))
    return results


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


def _raise_on_error(chunk: Mapping[str, Any], action: str, base_image: str | None = None) -> None:
    message = chunk.get("error") or chunk.get("errorDetail", {}).get("message")
    if message:
        hint = ""
        if any(word in message for word in ("pull access denied", "registry-1.docker.io", "manifest unknown")):
            hint = (f" (the base image {base_image or 'python:3.11-slim'} could not be pulled: where Docker Hub cannot be reached,"
                    " `make base-image` and NLPSTD_BASE_IMAGE=nlpstd-base:bookworm)")
        raise NlpstdError(f"{action} failed: {_one_line(message)}{hint}")


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
