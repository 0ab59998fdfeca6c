"""Data paths and export destinations on S3 (`s3://bucket/key`), next to plain local paths.

A folder on S3 is published by writing its `MANIFEST.json` last (every file with its size and
SHA-256): a reader treats a folder without one as absent, so a crashed or half-finished upload is
never mistaken for a model. Single files are fetched into a local cache keyed by ETag, so a data
set is downloaded once and again only when the object changes.

The endpoint and credentials come from the usual boto3 sources (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, profiles, instance roles); error messages name the object and what to
check, never a credential.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import urlsplit

import boto3
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
)
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber
from s3transfer.utils import ChunksizeAdjuster

from nlpstd import jsonio
from nlpstd.errors import NlpstdError
from nlpstd.fsutil import atomic_file
from nlpstd.hashing import sha256_file

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.json"
MB = 1024 * 1024
# botocore's retries after a request's first attempt, with its jittered backoff (0.05 s doubling,
# 3 s expected in all): a restarting endpoint or a dropped connection is ridden out in one place.
RETRIES = 7
_TRANSIENT = (ConnectionError, HTTPClientError, IncompleteReadError, RetriesExceededError)
_FAILURES = (*_TRANSIENT, ClientError, BotoCoreError, S3UploadFailedError)


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for `s3://` URIs, the only remote scheme nlpstd reads and writes."""
    return str(path).startswith("s3://")


def client() -> Any:
    """An S3 client from the environment (boto3 itself reads `AWS_ENDPOINT_URL`), with
    botocore's standard retries and timeouts short enough that an outage fails in seconds."""
    config = Config(retries={"max_attempts": RETRIES, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    return boto3.client("s3", config=config)


def fetch(uri: str, cache_dir: Path | None = None) -> Path:
    """A local path for `uri`: local paths as they are; an S3 object downloaded into the cache,
    or the cached copy when the object's ETag is unchanged (one HEAD request to find out).

    The cache keeps at most `cache.s3_cache_bytes()`: after a download, the least recently used
    objects go until the rest fits, never the one just fetched. A corpus larger than that budget
    is then read an object at a time, never whole on the local disk."""
    if not is_remote(uri):
        return Path(uri)
    bucket, key = _split(uri)
    from nlpstd import cache

    root = cache_dir if cache_dir is not None else cache.cache_dir() / "s3"
    s3 = client()
    with _located(uri):
        head = _head(s3, bucket, key)
        if head is None:
            raise NlpstdError(f"{uri}: no such object: check the key")
        path = root.joinpath(bucket, head["ETag"].strip('"'), *_safe_parts(key))
        if path.is_file():
            os.utime(path)  # recently used: evicted last
            return path
        with atomic_file(path) as out:
            _stream(s3, bucket, key, out, head["ContentLength"], head["ETag"])
        log.info("downloaded %s (%d bytes)", uri, head["ContentLength"])
    evict(root, cache.s3_cache_bytes(), keep=path)
    return path


def evict(root: Path, budget: int, keep: Path) -> None:
    """Remove the least recently used files under `root` until the rest holds at most `budget`
    bytes; `keep` and downloads still in progress (atomic_file's hidden .tmp names) stay. A file
    removed while a reader has it open stays readable to that reader."""
    files = []
    for path in root.rglob("*"):
        try:
            info = path.stat()
        except FileNotFoundError:  # another process evicted it meanwhile
            continue
        if path.is_file() and path != keep and not path.name.endswith(".tmp"):
            files.append((info.st_mtime, info.st_size, path))
    total = sum(size for _, size, _ in files) + (keep.stat().st_size if keep.is_file() else 0)
    for _, size, path in sorted(files):
        if total <= budget:
            break
        path.unlink(missing_ok=True)
        total -= size


def list_objects(uri: str) -> list[str]:
    """The s3:// URI of every object under the prefix `uri`, at any depth, in key order; the empty
    "folder" objects some tools write (keys ending in `/`) are left out."""
    bucket, prefix = _split(uri)
    found = []
    with _located(uri):
        for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found += [f"s3://{bucket}/{item['Key']}" for item in page.get("Contents", []) if not item["Key"].endswith("/")]
    return sorted(found)


def upload_folder(folder: Path, uri: str, multipart_threshold: int = 64 * MB) -> dict[str, Any]:
    """Upload every file under `folder` to the prefix `uri`, verify each by SHA-256, then write
    `MANIFEST.json` last. Returns the manifest.

    An earlier manifest at `uri` is deleted first, so readers see the folder as absent until the
    new one is complete. Files of `multipart_threshold` bytes or more go up in parts.
    """
    bucket, prefix, folder = *_split(uri), Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if any(p.relative_to(folder).as_posix() == MANIFEST for p in files):
        raise NlpstdError(f"{folder}: a file named {MANIFEST} would be overwritten by the upload's manifest")
    s3 = client()
    transfer = TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=multipart_threshold,
                              preferred_transfer_client="classic")  # its part sizes are the ones _digest assumes
    manifest_key = _join(prefix, MANIFEST)
    with _located(f"s3://{bucket}/{manifest_key}"):
        s3.delete_object(Bucket=bucket, Key=manifest_key)
    entries = {}
    for path in files:
        rel, size = path.relative_to(folder).as_posix(), path.stat().st_size
        part = ChunksizeAdjuster().adjust_chunksize(multipart_threshold, size) if size >= multipart_threshold else None
        digest, key = _digest(path, part), _join(prefix, rel)
        with _located(f"s3://{bucket}/{key}"):
            _upload(s3, path, bucket, key, digest, transfer)
        entries[rel] = {"size": size, "sha256": digest.hex}
    manifest = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "files": entries}
    body = jsonio.dumps(manifest, indent=2).encode("utf-8")  # file names as written, for whoever lists the bucket
    with _located(f"s3://{bucket}/{manifest_key}"):
        s3.put_object(Bucket=bucket, Key=manifest_key, Body=body, ChecksumAlgorithm="SHA256")
    return manifest


def download_folder(uri: str, dest: Path) -> Path:
    """Download the folder published at `uri` into `dest` (replacing it), verifying every file
    against the manifest. The folder appears at `dest` complete or not at all."""
    bucket, prefix = _split(uri)
    key, s3 = _join(prefix, MANIFEST), client()
    with _located(f"s3://{bucket}/{key}"):
        if _head(s3, bucket, key) is None:
            raise NlpstdError(f"{uri} has no {MANIFEST}: absent or incomplete upload")
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for rel, entry in manifest["files"].items():
            key, target = _join(prefix, rel), tmp.joinpath(*_safe_parts(rel))
            with _located(f"s3://{bucket}/{key}"):
                _download(s3, bucket, key, target, entry)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def folder_exists(uri: str) -> bool:
    """True when a complete folder is published at `uri` (its manifest is there)."""
    bucket, prefix = _split(uri)
    key = _join(prefix, MANIFEST)
    with _located(f"s3://{bucket}/{key}"):
        return _head(client(), bucket, key) is not None


def list_names(uri: str) -> list[str]:
    """The names directly under the prefix `uri`, as a folder listing shows them (sub-prefixes once each)."""
    bucket, prefix = _split(uri)
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    names, pages = set(), client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
    with _located(uri):
        for page in pages:
            names.update(item["Prefix"][len(prefix):].rstrip("/") for item in page.get("CommonPrefixes", []))
            names.update(item["Key"][len(prefix):] for item in page.get("Contents", []))
    return sorted(name for name in names if name)


def read_text(uri: str) -> str | None:
    """A small object's text, or None when there is no such object."""
    bucket, key = _split(uri)
    with _located(uri):
        try:
            return client().get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        except ClientError as exc:
            if _code(exc) in {"NoSuchKey", "404"}:
                return None
            raise


def write_text(uri: str, text: str) -> None:
    """One small object, replaced whole (S3 writes an object atomically)."""
    bucket, key = _split(uri)
    with _located(uri):
        client().put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"), ChecksumAlgorithm="SHA256")


# -- internals ---------------------------------------------------------------------------------


class _Digest(NamedTuple):
    """A file's SHA-256 (hex and base64) and, when it goes up in `parts` parts, the composite
    checksum S3 keeps for it: base64 of the SHA-256 over the parts' SHA-256 digests."""

    size: int
    hex: str
    b64: str
    parts: int
    composite: str


def _digest(path: Path, part_size: int | None) -> _Digest:
    full, part, parts, filled = hashlib.sha256(), hashlib.sha256(), [], 0
    with path.open("rb") as f:
        while block := f.read(min(MB, part_size - filled) if part_size else MB):
            full.update(block)
            if part_size:
                part.update(block)
                filled += len(block)
                if filled == part_size:
                    parts.append(part.digest())
                    part, filled = hashlib.sha256(), 0
    if part_size and (filled or not parts):
        parts.append(part.digest())
    composite = hashlib.sha256(b"".join(parts)).digest()
    return _Digest(path.stat().st_size, full.hexdigest(), _b64(full.digest()), len(parts), _b64(composite))


def _upload(s3: Any, path: Path, bucket: str, key: str, local: _Digest, transfer: TransferConfig) -> None:
    """Upload one file and compare the stored object with it. AWS validates the SHA-256 that
    botocore sends and keeps it, so a HEAD suffices; when a server keeps none (some S3-compatible
    stores), or its parts differ from ours, the object is read back and hashed."""
    s3.upload_file(str(path), bucket, key, ExtraArgs={"ChecksumAlgorithm": "SHA256"}, Config=transfer)
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    parts = int(head["ETag"].strip('"').rpartition("-")[2]) if "-" in head["ETag"] else 0
    remote = (head.get("ChecksumSHA256") or "").split("-")[0]  # composite ones end in -<parts> on AWS
    if head["ContentLength"] != local.size:
        same = False
    elif remote and parts == local.parts:
        same = remote == (local.composite if parts else local.b64)
    else:
        body, sha = s3.get_object(Bucket=bucket, Key=key)["Body"], hashlib.sha256()
        while block := body.read(MB):
            sha.update(block)
        same = sha.hexdigest() == local.hex
    if not same:
        raise NlpstdError(f"s3://{bucket}/{key}: the stored object does not match the local file "
                          "(it changed during the upload, or the transfer was corrupted)")


class _Known(BaseSubscriber):
    """Tells the transfer what the caller's HEAD request already read (size, and the ETag, which then
    pins the GET: an object replaced meanwhile fails rather than mixing two versions)."""

    def __init__(self, size: int, etag: str | None):
        self.size, self.etag = size, etag

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self.size)
        if self.etag:
            future.meta.provide_object_etag(self.etag)


def _stream(s3: Any, bucket: str, key: str, out: BinaryIO, size: int, etag: str | None = None) -> None:
    """One object into `out`, through boto3's transfer manager: unlike a bare GET, it also retries a
    body that breaks off halfway (botocore retries only the request). One stream, written in order."""
    config = TransferConfig(max_concurrency=1, multipart_threshold=1 << 62)
    with TransferManager(s3, config) as manager:
        manager.download(bucket, key, out, subscribers=[_Known(size, etag)]).result()


def _download(s3: Any, bucket: str, key: str, target: Path, entry: dict[str, Any]) -> None:
    with atomic_file(target) as out:
        _stream(s3, bucket, key, out, entry["size"])
        out.flush()
        size, digest = Path(out.name).stat().st_size, sha256_file(out.name)
        if size != entry["size"] or digest != entry["sha256"]:
            raise NlpstdError(f"s3://{bucket}/{key}: corrupted: {size} bytes, sha256 {digest[:12]}…, "
                              f"but the manifest lists {entry['size']} bytes, sha256 {entry['sha256'][:12]}…")


def _head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """HEAD an object; None when it is missing. A 404 has no body, so ask the bucket whether
    the object or the whole bucket is missing."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _code(exc) != "404":
            raise
    s3.head_bucket(Bucket=bucket)  # raises (404 → "bucket does not exist") if the bucket is missing
    return None


@contextmanager
def _located(uri: str) -> Iterator[None]:
    """Any S3 failure inside (botocore has already retried what is transient) becomes a one-line
    NlpstdError naming `uri`."""
    try:
        yield
    except _FAILURES as exc:
        raise _error(uri, exc) from exc


def _error(uri: str, exc: BaseException) -> NlpstdError:
    """A message from the error's kind and code only: botocore's texts may carry the endpoint,
    and nothing here ever formats a credential."""
    if isinstance(exc, (S3UploadFailedError, RetriesExceededError)):  # wrappers: report the cause
        exc = getattr(exc, "last_exception", None) or exc.__context__ or exc
    if isinstance(exc, NoCredentialsError):
        why = "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
    elif isinstance(exc, _TRANSIENT):
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "").rpartition("@")[2] or "the S3 endpoint"  # never a user:password@
        why = f"cannot reach {endpoint} ({type(exc).__name__}): check AWS_ENDPOINT_URL and the network"
    elif isinstance(exc, ClientError):
        code = _code(exc)
        if code == "NoSuchBucket" or (code == "404" and exc.operation_name == "HeadBucket"):
            why = "the bucket does not exist: check the bucket name and the endpoint"
        elif code in ("NoSuchKey", "404"):
            why = "no such object: check the key"
        elif code == "PreconditionFailed":
            why = "the object changed while it was being downloaded: try again"
        elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            why = f"access denied ({code}): check the credentials and the bucket's policy"
        else:
            why = f"{code}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(": ")
    else:
        why = type(exc).__name__
    return NlpstdError(f"{uri}: {why}")


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _split(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise NlpstdError(f"{uri}: not an s3://bucket/key URI")
    return parts.netloc, parts.path.lstrip("/")


def _join(prefix: str, name: str) -> str:
    return f"{prefix.rstrip('/')}/{name}" if prefix.strip("/") else name


def _safe_parts(key: str) -> tuple[str, ...]:
    """A key's path segments, refusing any that would escape the destination folder."""
    parts = tuple(p for p in PurePosixPath(key).parts if p != "/")
    if not parts or ".." in parts:
        raise NlpstdError(f"{key}: not usable as a local path")
    return parts
