"""What makes an `s3://bucket/key` well formed, checked before any request is made.

S3 accepts keys that a folder cannot mirror (`a//b`, `../x`) and answers a malformed bucket name
with an error that names neither the bucket nor the rule. nlpstd mirrors keys as local paths (the
download cache, export folders), so it takes only what both sides can hold, and says which rule a
URI breaks while the standard is read. No boto3 here: loading a standard stays fast.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# S3's rules for bucket names (general purpose buckets): 3-63 characters of lowercase letters,
# digits, dots and hyphens, starting and ending with a letter or digit, and not an IP address.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
MAX_KEY_BYTES = 1024


def problem(uri: str, object_key: bool) -> str | None:
    """Why `uri` is not a usable S3 location, or None. `object_key`: it must name an object (a data
    file), not only a bucket or a prefix (an export destination)."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        return "not an s3://bucket/key URI"
    if parts.query or parts.fragment:
        return "has a '?' or '#', which S3 keys here may not hold"
    bucket, key = parts.netloc, parts.path[1:]  # the one slash after the bucket; any more is an empty segment
    if not _BUCKET.match(bucket) or ".." in bucket or _IP.match(bucket):
        return (f"bucket name {bucket!r} breaks S3's rules: 3 to 63 lowercase letters, digits, dots and hyphens, "
                "starting and ending with a letter or digit")
    if object_key and (not key or key.endswith("/")):
        return f"names no object: give the file's key after the bucket (s3://{bucket}/path/to/file)"
    segments = key.rstrip("/").split("/") if key.rstrip("/") else []
    if any(segment in ("", ".", "..") for segment in segments):
        return "has an empty, '.' or '..' path segment; write the key as it is stored"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return f"the key is longer than S3's {MAX_KEY_BYTES} bytes"
    return None
