"""nlpstd.storage against a real S3 API (moto_server on loopback): caching, publishing folders
behind a manifest, integrity checks, outages and the errors a user sees."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from nlpstd import storage
from nlpstd.errors import NlpstdError

pytest_plugins = ["tests.servers"]


def on(monkeypatch: pytest.MonkeyPatch, event: str, handler: Callable[..., None]) -> None:
    """Register a botocore event handler on every client nlpstd.storage creates."""
    make = storage.client

    def hooked():
        s3 = make()
        s3.meta.events.register(event, handler)
        return s3

    monkeypatch.setattr(storage, "client", hooked)


@pytest.fixture
def requests(monkeypatch) -> list[tuple[str, str]]:
    """The S3 requests nlpstd.storage makes, as (operation, key), one per API call."""
    seen: list[tuple[str, str]] = []
    on(monkeypatch, "before-parameter-build.s3", lambda params, model, **_: seen.append((model.name, params.get("Key", ""))))
    return seen


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A small exported-model-like folder: a config, a nested tokenizer file, some weights."""
    folder = tmp_path / "model"
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "config.json").write_text('{"hidden_size": 64}')
    (folder / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\n" * 200)
    (folder / "weights.bin").write_bytes(os.urandom(4096))
    return folder


def same_tree(a: Path, b: Path) -> bool:
    files = lambda root: {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}  # noqa: E731
    return files(a) == files(b)


def head_or_none(s3, bucket: str, key: str):
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return None


def test_local_paths_are_not_remote_and_fetch_returns_them_unchanged(tmp_path):
    assert storage.is_remote("s3://bucket/key") and not storage.is_remote(str(tmp_path))
    assert storage.fetch(str(tmp_path / "train.txt")) == tmp_path / "train.txt"


def test_fetch_downloads_once_and_serves_the_cache_while_the_etag_is_unchanged(s3_server, bucket, tmp_path, requests):
    s3_server.client().put_object(Bucket=bucket, Key="data/train.txt", Body=b"EU rejects German call\n")

    first = storage.fetch(f"s3://{bucket}/data/train.txt", cache_dir=tmp_path / "cache")
    second = storage.fetch(f"s3://{bucket}/data/train.txt", cache_dir=tmp_path / "cache")

    assert first == second and first.name == "train.txt" and first.read_bytes() == b"EU rejects German call\n"
    assert [op for op, _ in requests] == ["HeadObject", "GetObject", "HeadObject"]


def test_fetch_caches_under_nlpstd_cache_by_default(s3_server, bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("NLPSTD_CACHE", str(tmp_path))
    s3_server.client().put_object(Bucket=bucket, Key="train.txt", Body=b"x")

    assert storage.fetch(f"s3://{bucket}/train.txt").is_relative_to(tmp_path / "s3" / bucket)


def test_fetch_downloads_again_when_the_object_changes(s3_server, bucket, tmp_path, requests):
    s3 = s3_server.client()
    s3.put_object(Bucket=bucket, Key="train.txt", Body=b"old")
    old = storage.fetch(f"s3://{bucket}/train.txt", cache_dir=tmp_path)
    s3.put_object(Bucket=bucket, Key="train.txt", Body=b"new")

    new = storage.fetch(f"s3://{bucket}/train.txt", cache_dir=tmp_path)

    assert new != old and new.read_bytes() == b"new"
    assert [op for op, _ in requests].count("GetObject") == 2


def test_a_folder_round_trips_with_every_file_verified_including_multipart_ones(s3_server, bucket, model_dir, tmp_path, requests):
    (model_dir / "big.bin").write_bytes(os.urandom(11 * storage.MB))  # 3 parts of 5 MiB, S3's smallest

    manifest = storage.upload_folder(model_dir, f"s3://{bucket}/models/ner", multipart_threshold=1024)
    back = storage.download_folder(f"s3://{bucket}/models/ner", tmp_path / "back")

    assert same_tree(model_dir, back)
    big = (model_dir / "big.bin").read_bytes()
    assert manifest["files"]["big.bin"] == {"size": len(big), "sha256": hashlib.sha256(big).hexdigest()}
    multipart = {key.rpartition("/")[2] for op, key in requests if op == "CreateMultipartUpload"}
    assert multipart == {"big.bin", "vocab.txt", "weights.bin"}  # config.json is under the 1 KiB threshold
    # uploads were verified by the checksums S3 keeps (HEAD), not by reading them back:
    # the only reads are the download's, the manifest and the four files
    assert [op for op, _ in requests].count("GetObject") == 5
    assert s3_server.client().head_object(Bucket=bucket, Key="models/ner/big.bin")["ETag"].endswith('-3"')
    stored = json.loads(s3_server.client().get_object(Bucket=bucket, Key="models/ner/MANIFEST.json")["Body"].read())
    assert stored == manifest and storage.folder_exists(f"s3://{bucket}/models/ner")


def test_the_manifest_is_written_last_and_an_old_one_is_removed_before_any_file(s3_server, bucket, model_dir, monkeypatch,
                                                                                requests):
    s3, uri = s3_server.client(), f"s3://{bucket}/models/ner"
    storage.upload_folder(model_dir, uri)
    manifest_seen = []

    def check(params, model, **_):
        if not params["Key"].endswith("MANIFEST.json"):
            manifest_seen.append(head_or_none(s3, bucket, "models/ner/MANIFEST.json") is not None)

    on(monkeypatch, "before-parameter-build.s3.PutObject", check)
    requests.clear()
    storage.upload_folder(model_dir, uri)

    writes = [key for op, key in requests if op in ("PutObject", "CreateMultipartUpload")]
    assert writes[-1] == "models/ner/MANIFEST.json" and len(writes) == 4
    assert manifest_seen == [False, False, False]


def test_a_folder_without_its_manifest_is_absent(s3_server, bucket, tmp_path):
    s3_server.client().put_object(Bucket=bucket, Key="models/ner/config.json", Body=b"{}")

    assert not storage.folder_exists(f"s3://{bucket}/models/ner")
    with pytest.raises(NlpstdError, match=rf"^s3://{bucket}/models/ner has no MANIFEST.json: absent or incomplete upload$"):
        storage.download_folder(f"s3://{bucket}/models/ner", tmp_path / "back")
    assert not (tmp_path / "back").exists()


def test_a_corrupted_object_is_detected_on_download_and_nothing_is_left_behind(s3_server, bucket, model_dir, tmp_path):
    storage.upload_folder(model_dir, f"s3://{bucket}/m")
    s3_server.client().put_object(Bucket=bucket, Key="m/weights.bin", Body=os.urandom(4096))  # same size, other bytes

    with pytest.raises(NlpstdError, match=rf"^s3://{bucket}/m/weights.bin: corrupted: "):
        storage.download_folder(f"s3://{bucket}/m", tmp_path / "out" / "back")
    assert list((tmp_path / "out").iterdir()) == []  # no partial folder, no temp files


@pytest.mark.parametrize(("threshold", "sha256_kept"), [(64 * storage.MB, True), (1024, True), (64 * storage.MB, False)],
                         ids=["single-put", "multipart", "server-keeps-no-sha256"])
def test_an_object_that_differs_from_the_local_file_after_upload_is_detected(s3_server, bucket, model_dir, monkeypatch,
                                                                              threshold, sha256_kept):
    s3 = s3_server.client()

    def tamper(params, **_):  # right before the verifying HEAD: a concurrent writer, or bytes corrupted at rest
        if params["Key"].endswith("weights.bin"):  # same size, uploaded the same way, other bytes
            s3.upload_fileobj(io.BytesIO(os.urandom(4096)), bucket, params["Key"],
                              Config=TransferConfig(multipart_threshold=threshold),
                              ExtraArgs={"ChecksumAlgorithm": "SHA256"} if sha256_kept else None)

    on(monkeypatch, "before-parameter-build.s3.HeadObject", tamper)
    with pytest.raises(NlpstdError, match=rf"^s3://{bucket}/m/weights.bin: the stored object does not match the local file"):
        storage.upload_folder(model_dir, f"s3://{bucket}/m", multipart_threshold=threshold)
    assert head_or_none(s3, bucket, "m/MANIFEST.json") is None


def test_an_outage_during_upload_is_retried_then_fails_naming_the_object_and_publishes_nothing(s3_server, bucket, model_dir,
                                                                                                 monkeypatch):
    attempts = []

    def outage(request, **_):  # every attempt, retries included: the endpoint goes down just before the second file
        if request.url.endswith("tokenizer/vocab.txt"):
            attempts.append(request.url)
            s3_server.stop()

    on(monkeypatch, "before-send.s3.PutObject", outage)
    with pytest.raises(NlpstdError, match=rf"^s3://{bucket}/m/tokenizer/vocab.txt: cannot reach .* check AWS_ENDPOINT_URL"):
        storage.upload_folder(model_dir, f"s3://{bucket}/m")

    assert len(attempts) == 1 + storage.RETRIES  # botocore's retries, and no second layer around them
    s3_server.start()
    assert head_or_none(s3_server.client(), bucket, "m/config.json") is not None  # the server kept its state
    assert head_or_none(s3_server.client(), bucket, "m/MANIFEST.json") is None
    assert not storage.folder_exists(f"s3://{bucket}/m")


def test_a_short_outage_is_ridden_out(s3_server, bucket, model_dir, tmp_path, monkeypatch):
    attempts = []

    def outage(request, **_):  # down for three attempts of one request, back up for the fourth: botocore retries it
        if request.url.endswith("tokenizer/vocab.txt"):
            attempts.append(request.url)
            if len(attempts) == 1:
                s3_server.stop()
            elif len(attempts) == 4:
                s3_server.start()

    on(monkeypatch, "before-send.s3.PutObject", outage)
    storage.upload_folder(model_dir, f"s3://{bucket}/m")

    assert len(attempts) == 4
    assert same_tree(model_dir, storage.download_folder(f"s3://{bucket}/m", tmp_path / "back"))


def test_a_body_that_breaks_off_halfway_is_downloaded_again(s3_server, bucket, tmp_path, monkeypatch):
    from botocore.exceptions import ResponseStreamingError

    s3_server.client().put_object(Bucket=bucket, Key="data/train.txt", Body=b"EU rejects German call\n" * 1000)
    broken = []

    class BreaksOff:  # the first response's body breaks off at its first read, as a dropped connection would
        def __init__(self, body):
            self.body = body

        def read(self, *args):
            broken.append(True)
            raise ResponseStreamingError(error="connection reset mid-body")

        def __getattr__(self, name):
            return getattr(self.body, name)

    def cut(parsed, **_):
        if not broken and "Body" in parsed:
            parsed["Body"] = BreaksOff(parsed["Body"])

    on(monkeypatch, "after-call.s3.GetObject", cut)
    path = storage.fetch(f"s3://{bucket}/data/train.txt", cache_dir=tmp_path / "cache")

    assert broken and path.read_bytes() == b"EU rejects German call\n" * 1000


def test_a_missing_object_is_named_in_the_error(bucket, tmp_path):
    with pytest.raises(NlpstdError, match=rf"^s3://{bucket}/data/nope.txt: no such object: check the key$"):
        storage.fetch(f"s3://{bucket}/data/nope.txt", cache_dir=tmp_path)


@pytest.mark.parametrize("call", ["fetch", "folder_exists", "download_folder", "upload_folder"])
def test_a_missing_bucket_is_named_in_the_error(s3_server, model_dir, tmp_path, call):
    uri = "s3://no-such-bucket-4711/models/ner"
    run = {"fetch": lambda: storage.fetch(uri, cache_dir=tmp_path), "folder_exists": lambda: storage.folder_exists(uri),
           "download_folder": lambda: storage.download_folder(uri, tmp_path / "back"),
           "upload_folder": lambda: storage.upload_folder(model_dir, uri)}[call]
    with pytest.raises(NlpstdError, match=r"^s3://no-such-bucket-4711/models/ner\S*: the bucket does not exist"):
        run()


def test_an_address_that_is_not_an_s3_uri_is_refused():
    with pytest.raises(NlpstdError, match="not an s3://bucket/key URI"):
        storage.folder_exists("s3:///models/ner")


def test_no_credential_appears_in_any_error_message(s3_server, bucket, model_dir, tmp_path, monkeypatch, caplog):
    key_id, secret = "AKIAEXAMPLEKEYID4711", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRET4711"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    storage.upload_folder(model_dir, f"s3://{bucket}/m")
    s3_server.client().put_object(Bucket=bucket, Key="m/config.json", Body=b"{}")
    failures = [lambda: storage.fetch(f"s3://{bucket}/nope", cache_dir=tmp_path),
                lambda: storage.fetch("s3://no-such-bucket-4711/x", cache_dir=tmp_path),
                lambda: storage.download_folder(f"s3://{bucket}/m", tmp_path / "back"),
                lambda: (s3_server.stop(), storage.fetch(f"s3://{bucket}/m/config.json", cache_dir=tmp_path))]
    messages = []
    for fail in failures:
        with pytest.raises(NlpstdError) as caught:
            fail()
        messages += [str(caught.value), str(caught.value.__cause__)]
    s3_server.start()

    assert len(messages) == 8 and "cannot reach" in messages[-2]
    for text in [*messages, caplog.text]:
        assert secret not in text and key_id not in text
