"""Path-escape attempts against the filesystem backend, through the front door.

S3 keys are opaque UTF-8 strings up to 1024 bytes ("Naming Amazon S3 objects", S3 user guide):
`../x` is a key like any other, not a path. So every attempt must (1) write nothing outside the
data directory, and (2) round-trip under exactly its key (PUT, GET, listing, DELETE)."""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from .conftest import start_proxy
from .front_helpers import expect_error, send, signed_headers


@pytest.fixture(scope="module")
def fs_site(tmp_path_factory):
    """A proxy on the fs backend whose data dir sits alone inside a directory we can watch."""
    outer = tmp_path_factory.mktemp("escape")
    data = outer / "data"
    data.mkdir()
    thread, endpoint = start_proxy(data, "fs", None)
    yield outer, endpoint
    thread.stop()


# the fs backend's layout (s3proxy/backends/fs.py docstring): names never come from keys or buckets
BACKEND_LAYOUT = re.compile(r"^(index\.sqlite3(-wal|-shm|-journal)?|blobs(/[0-9a-f]{2}(/[0-9a-f]{32})?)?|tmp(/[0-9a-f]+)?)$")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _outside_snapshot(outer: Path) -> set[str]:
    """Everything under the watched directory except the data dir's own contents."""
    return {p for p in _tree(outer) if not p.startswith("data/") and p != "data"}


# keys that would escape or collide if a key ever became a path (each row: why it is dangerous)
ESCAPES = [
    "../x",  # parent of the bucket directory
    "../../etc/passwd",  # a classic traversal to a system file
    "../../../../../../../../tmp/s3proxy-escaped",  # far past the root
    "/abs",  # an absolute path once the bucket prefix is stripped
    "//double/slash",  # empty path segments
    "a/../../b",  # traversal hidden behind a normal segment
    "./x",  # current-directory segment
    "..",  # the parent directory itself
    ".",  # the directory itself
    "a/./b/../c",  # a path that normalises to a/c
    "..\\..\\windows",  # backslash traversal
    "index.sqlite3",  # the backend's own index file name
    "../index.sqlite3",  # the index file, one level up from a bucket
    "blobs/00/x",  # the backend's blob directory layout
    "tmp/x",  # the backend's temp directory
    "credentials.toml",  # the proxy's own files in the data dir
    "%2e%2e/x",  # a literal percent-encoded traversal (the key contains '%')
]


@pytest.mark.parametrize("key", ESCAPES)
def test_escaping_key_stays_inside_and_round_trips(fs_site, key):
    outer, proxy = fs_site
    s3 = proxy.client()
    bucket = "escape-" + hashlib.sha1(key.encode()).hexdigest()[:12]
    s3.create_bucket(Bucket=bucket)
    before = _outside_snapshot(outer)
    passwd = Path("/etc/passwd").read_bytes() if Path("/etc/passwd").exists() else None
    body = b"payload for " + key.encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    assert _outside_snapshot(outer) == before
    assert not Path("/tmp/s3proxy-escaped").exists()
    if passwd is not None:
        assert Path("/etc/passwd").read_bytes() == passwd
    # inside, only the fs backend's documented layout exists: no file is named after a key
    assert {p for p in _tree(outer / "data" / "objects") if not BACKEND_LAYOUT.match(p)} == set()
    s3.delete_object(Bucket=bucket, Key=key)
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key=key)
    s3.delete_bucket(Bucket=bucket)


def test_raw_dot_segments_on_the_wire_are_part_of_the_key(fs_site):
    # S3 does not normalise the request path: /bucket/a/../b addresses the key "a/../b"
    outer, proxy = fs_site
    s3 = proxy.client()
    s3.create_bucket(Bucket="raw-dots")
    before = _outside_snapshot(outer)
    for raw in ("/raw-dots/../outside", "/raw-dots/a/../../b"):
        headers = signed_headers(proxy.url, "PUT", raw, headers={"Content-Length": "3"})
        resp = send(proxy.url, "PUT", raw, headers, b"raw")
        key = raw[len("/raw-dots/"):]
        assert resp.status == 200, (raw, resp.status, resp.body)
        assert s3.get_object(Bucket="raw-dots", Key=key)["Body"].read() == b"raw"
    assert _outside_snapshot(outer) == before


def test_nul_in_a_key_is_rejected_or_round_trips_exactly(fs_site):
    # S3 keys may hold any UTF-8 (the user guide lists 0x00-0x1F as "might require special
    # handling"); whatever the answer, NUL must never truncate the key into another one
    outer, proxy = fs_site
    s3 = proxy.client()
    s3.create_bucket(Bucket="nul-keys")
    s3.put_object(Bucket="nul-keys", Key="before", Body=b"untouched")
    key = "before\x00after"
    try:
        s3.put_object(Bucket="nul-keys", Key=key, Body=b"nul")
    except ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400, exc.response
    else:
        assert s3.get_object(Bucket="nul-keys", Key=key)["Body"].read() == b"nul"
        assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="nul-keys")["Contents"]) == ["before", key]
    assert s3.get_object(Bucket="nul-keys", Key="before")["Body"].read() == b"untouched"


def test_over_long_key_is_rejected_without_writing(fs_site):
    outer, proxy = fs_site
    s3 = proxy.client()
    s3.create_bucket(Bucket="long-keys")
    before = _tree(outer)
    # 1025 bytes of traversal: KeyTooLongError (400) before anything is stored
    key = "../" * 341 + "xx"
    assert len(key.encode()) == 1025
    expect_error("KeyTooLongError", 400, s3.put_object, Bucket="long-keys", Key=key, Body=b"x")
    assert s3.list_objects_v2(Bucket="long-keys")["KeyCount"] == 0
    assert {p for p in _tree(outer) - before if "/blobs/" in f"/{p}"} == set()


def test_bucket_name_traversal_is_invalid_bucket_name(fs_site):
    # bucket names are checked before anything touches the backend
    _, proxy = fs_site
    for name in ("..", "a..b", "%2e%2e"):
        path = f"/{urllib.parse.quote(name, safe='%')}"
        resp = send(proxy.url, "PUT", path, signed_headers(proxy.url, "PUT", path, headers={"Content-Length": "0"}))
        assert (resp.status, resp.code) == (400, "InvalidBucketName"), (name, resp.body)
