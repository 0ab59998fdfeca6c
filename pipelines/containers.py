"""Run the pipeline on this machine with every task in its container image (kfp.local's DockerRunner).

The same DAG as `make pipeline-local` and as a cluster, but each task starts from the CPU image
built from this checkout, as the image's non-root user, and sees only what a pod would see:

- inputs: every local path the standard names (data files, corpus, a base model folder) is
  mounted read-only at the same path, as a read-only data volume would be (s3:// inputs need no
  mount: the tasks get this environment's S3 endpoint and credentials);
- checkpoints: OUT/checkpoints is mounted at the path a cluster mounts `runtime.checkpoint_volume`
  (a PersistentVolumeClaim), so a killed training task resumes on rerun;
- outputs: kfp.local mounts OUT/pipeline (the pipeline root) read-write at the same path;
- MLflow and S3: servers on this machine's loopback (`python -m pipelines.stack up`), reached
  over the host network; the engine here has no bridge network.

The GPU image is not used: training tasks run in the CPU image too.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlpstd import locks, storage
from nlpstd.errors import NlpstdError
from nlpstd.preflight import preflight
from nlpstd.spec import Standard
from pipelines.local import Execution, LocalRun, _run
from pipelines.pipeline import WORK_MOUNT

IMAGE_UID = 1000  # the image's user (docker/Dockerfile: useradd --uid 1000)
RUNNER = "kfp.local+docker"
# On every task container, to find a run's tasks (`docker ps --filter label=io.nlpstd.out=/abs/OUT`):
LABEL = "io.nlpstd.standard"  # the standard's name
OUT_LABEL = "io.nlpstd.out"  # the run's output folder

# What the tasks take from this process's environment: where MLflow and S3 are, and their credentials.
# Passed by name, never logged; anything else on this machine stays out of the containers.
PASSED_ENV = (
    "MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION", "HF_HUB_OFFLINE", "NLPSTD_DATA",
)


@dataclass(frozen=True)
class Mount:
    """A folder of this machine at the same path in the container (the engine wants the link-free path)."""

    path: str
    read_only: bool

    def spec(self) -> Any:
        import docker.types

        return docker.types.Mount(target=self.path, source=os.path.realpath(self.path), type="bind", read_only=self.read_only)


def run_docker(standard_file: str | Path, out: str | Path | None = None, tracking: bool = True,
               image: str | None = None, build: bool = True) -> LocalRun:
    """Validate the standard, make sure an engine and the CPU image are there, and run the pipeline
    with every task in that image. `image` defaults to this checkout's CPU image, built when missing."""
    from pipelines.stack import require_engine

    std, files = preflight(standard_file)
    if tracking:
        _check_tracking_server(os.environ.get("MLFLOW_TRACKING_URI", ""))
    require_engine().close()
    image = image or ensure_image(build)
    out = Path(out or Path("runs") / std.name).resolve()
    with locks.exclusive(out, "output folder"):
        return _run(std, files, out, tracking, docker_execution(std, out, image))


def docker_execution(std: Standard, out: Path, image: str) -> Execution:
    """kfp.local's DockerRunner with host networking, the inputs and the checkpoint volume mounted,
    and folders the image's user may write to."""
    from kfp import local

    checkpoints = out / "checkpoints"
    for folder in (out / "pipeline", checkpoints):
        folder.mkdir(parents=True, exist_ok=True)
    user = container_user(out / "pipeline", checkpoints)
    inputs = input_mounts(std)
    if os.getuid() == 0:  # the tasks run as uid 1000, which reads what "others" may read
        check_readable_by_others(std, inputs)
    mounts = [m.spec() for m in inputs] + [_volume(checkpoints, WORK_MOUNT)]
    environment = {name: os.environ[name] for name in PASSED_ENV if os.environ.get(name)}
    environment |= {"PYTHONUNBUFFERED": "1", "HOME": "/tmp"} if user else {"PYTHONUNBUFFERED": "1"}
    runner = local.DockerRunner(
        network_mode="host",  # the engine runs without a bridge; the servers listen on loopback
        shm_size=memory_bytes(std.runtime.shm_size),  # docker's default /dev/shm is 64 MB: too small for data loaders
        mounts=mounts, environment=environment, labels={LABEL: std.name, OUT_LABEL: str(out)},
        **({"user": user} if user else {}),
    )
    ignored = [f"images: every task runs in the CPU image {image}; the GPU image is not used",
               f"runtime.shm_size: {std.runtime.shm_size} memory-backed /dev/shm for training: every task's container gets it"]
    if std.runtime.checkpoint_volume:
        ignored.append(f"runtime.checkpoint_volume: PersistentVolumeClaim {std.runtime.checkpoint_volume}: "
                       f"{checkpoints} is mounted at {WORK_MOUNT} instead")
    return Execution(runner=runner, name=RUNNER, cpu_image=image, gpu_image=image, work_dir=WORK_MOUNT, ignored=ignored)


def input_mounts(std: Standard) -> list[Mount]:
    """A read-only bind mount, at the same path, for every folder holding a local path the standard
    names; a local export destination is mounted writable. Nested folders collapse into the outer one."""
    destination = std.export.destination
    paths = {p for p in _strings(std.to_dict()) if os.path.isabs(p) and os.path.exists(p) and p != destination}
    folders = sorted({os.path.normpath(p if os.path.isdir(p) else os.path.dirname(p)) for p in paths})
    outer = [f for f in folders if not any(f.startswith(other.rstrip("/") + "/") for other in folders if other != f)]
    mounts = [Mount(folder, read_only=True) for folder in outer]
    if destination and not storage.is_remote(destination):
        Path(destination).mkdir(parents=True, exist_ok=True)
        mounts.append(Mount(os.path.normpath(destination), read_only=False))
    return mounts


def check_readable_by_others(std: Standard, mounts: list[Mount]) -> None:
    """Fail before any task starts when a mounted folder, an input the standard names, or a file in a
    named folder is not readable by a user other than its owner, as the tasks' user is: naming the
    files beats a PermissionError deep in data-prep's log."""
    named = [p for p in _strings(std.to_dict()) if os.path.isabs(p) and os.path.exists(p) and p != std.export.destination]
    closed = [m.path for m in mounts if m.read_only and _closed(Path(m.path))]
    for path in map(Path, named):
        for item in (path, *path.rglob("*")) if path.is_dir() else (path,):
            if _closed(item):
                closed.append(str(item))
    if closed:
        more = f" and {len(closed) - 3} more" if len(closed) > 3 else ""
        raise NlpstdError(f"the tasks run as uid {IMAGE_UID}, which cannot read {', '.join(closed[:3])}{more}: "
                          f"make the inputs readable (chmod -R a+rX FOLDER)")


def _closed(path: Path) -> bool:
    """Whether uid 1000, not the owner, can not read the file (or list and enter the folder)."""
    info = path.stat()
    wanted = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
    return info.st_uid != IMAGE_UID and info.st_mode & wanted != wanted


def container_user(*writable: Path) -> str | None:
    """Who the tasks run as, with the folders they write made theirs. As root here, the image's own
    user (uid 1000) gets the folders; as uid 1000, nothing changes; any other user runs the tasks
    under its own uid and gid (still not root), so every file the tasks write stays the user's."""
    uid = os.getuid()
    if uid == 0:
        for folder in writable:
            for path in (folder, *folder.rglob("*")):
                if path.stat().st_uid != IMAGE_UID:
                    os.chown(path, IMAGE_UID, IMAGE_UID, follow_symlinks=False)
        return None
    if uid == IMAGE_UID:
        return None
    return f"{uid}:{os.getgid()}"


def ensure_image(build: bool = True) -> str:
    """This checkout's CPU image reference; built when the engine lacks it, and rebuilt when the tree is
    dirty (the tag then names no fixed code; a rebuild with warm layers takes seconds)."""
    from pipelines import stack
    from pipelines.images import BuildSettings, build_images, images

    ref = images().cpu
    client = stack.require_engine()
    try:
        present = stack.has_image(client, ref)
        if present and (not build or not ref.endswith("-dirty")):
            return ref
        if not build:
            raise NlpstdError(f"image {ref} not found: build it (make images LOCAL=1 FLAVOURS=cpu)")
        env = dict(os.environ)
        if not env.get("NLPSTD_BASE_IMAGE") and stack.has_image(client, stack.BASE_IMAGE):
            env |= stack.local_build_env()  # no Docker Hub here: the Debian base, pip's CA bundle and wheels
        build_images(push=False, client=client, which=("cpu",), settings=BuildSettings.from_env(env), progress=_quiet)
    finally:
        client.close()
    return ref


def memory_bytes(quantity: str) -> int:
    """A memory quantity as the standard writes it (Kubernetes' `2Gi`, `512M`) in bytes, as the engine takes it."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
             "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
    for suffix, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(float(quantity))


def _check_tracking_server(uri: str) -> None:
    if not uri.startswith(("http://", "https://")):
        raise NlpstdError(
            f"MLFLOW_TRACKING_URI={uri or '(unset)'}: tasks in containers log to an MLflow server; start one with "
            '`eval "$(python -m pipelines.stack up)"` (make docker-stack), or run with --no-tracking'
        )


def _volume(source: Path, target: str) -> Any:
    import docker.types

    return docker.types.Mount(target=target, source=str(source), type="bind", read_only=False)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _quiet(line: str) -> None:
    if line.startswith(("building", "built", "check passed")):
        print(line, flush=True)

