"""Bad S3 locations in a standard: buckets, keys and traversal, refused while the standard is read,
before any request (the endpoint below is never reachable, so a case that got as far as a request
would fail differently)."""

from __future__ import annotations

from tests.bad_input.case import CONLL, CONLL_FILES, Case, edited, run_standard

NO_ENDPOINT = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "nlpstd-test", "AWS_SECRET_ACCESS_KEY": "nlpstd-test"}


def data(id: str, uri: str, field: str, message: str) -> Case:
    """`data.train` (line 5 of the baseline) pointed at `uri`."""
    standard = edited(CONLL, "train: train.txt", f"train: '{uri}'")
    return Case(id, **run_standard(standard, CONLL_FILES, file="standard.yaml", line=5, field=field, message=message),
                env=NO_ENDPOINT)


def destination(id: str, uri: str, message: str) -> Case:
    """`export.destination` (line 15, appended to the baseline) pointed at `uri`."""
    standard = CONLL + f"export: {{destination: '{uri}'}}\n"
    return Case(id, **run_standard(standard, CONLL_FILES, file="standard.yaml", line=15, field="export.destination",
                                   message=message), env=NO_ENDPOINT)


CASES = [
    data("s3-no-bucket", "s3://", "data.train.path", "not an s3://bucket/key URI"),
    data("s3-empty-bucket", "s3:///train.txt", "data.train.path", "not an s3://bucket/key URI"),
    data("s3-bucket-only", "s3://nlpstd-data", "data.train.path", "names no object"),
    data("s3-prefix-not-object", "s3://nlpstd-data/conll/", "data.train.path", "names no object"),
    data("s3-parent-segment", "s3://nlpstd-data/../secrets/train.txt", "data.train.path", "'..' path segment"),
    data("s3-dot-segment", "s3://nlpstd-data/./train.txt", "data.train.path", "'.' or '..' path segment"),
    data("s3-empty-segment", "s3://nlpstd-data/conll//train.txt", "data.train.path", "an empty, '.' or '..' path segment"),
    data("s3-bucket-uppercase", "s3://Nlpstd_Data/train.txt", "data.train.path", "bucket name 'Nlpstd_Data' breaks S3's rules"),
    data("s3-bucket-too-short", "s3://ab/train.txt", "data.train.path", "bucket name 'ab' breaks S3's rules"),
    data("s3-bucket-too-long", f"s3://{'b' * 64}/train.txt", "data.train.path", "breaks S3's rules"),
    data("s3-bucket-ip-address", "s3://192.168.0.1/train.txt", "data.train.path", "breaks S3's rules"),
    data("s3-bucket-double-dot", "s3://nlpstd..data/train.txt", "data.train.path", "breaks S3's rules"),
    data("s3-bucket-ends-with-hyphen", "s3://nlpstd-data-/train.txt", "data.train.path", "breaks S3's rules"),
    data("s3-query-in-key", "s3://nlpstd-data/train.txt?versionId=3", "data.train.path", "'?' or '#'"),
    data("s3-key-too-long", f"s3://nlpstd-data/{'k' * 1100}.txt", "data.train.path", "longer than S3's 1024 bytes"),
    data("s3-other-scheme", "gs://nlpstd-data/train.txt", "data.train.path", "s3:// is the only remote scheme"),
    destination("s3-destination-bad-bucket", "s3://Models/conll", "breaks S3's rules"),
    destination("s3-destination-parent-segment", "s3://nlpstd-models/conll/../other", "'..' path segment"),
    destination("s3-destination-empty-segment", "s3://nlpstd-models//conll", "an empty, '.' or '..' path segment"),
    destination("s3-destination-no-bucket", "s3:///conll", "not an s3://bucket/key URI"),
]
