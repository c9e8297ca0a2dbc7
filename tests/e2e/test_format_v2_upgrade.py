"""Issue 17: objects in the old format remain readable and can be upgraded in place.

Objects and records are written exactly as format version 1 stored them (format_v1.py), read by a
format-2 proxy, then `s3proxy rewrap BUCKET --upgrade` (the real command line, against the running
proxy) brings them to version 2 in place, metadata only: same bytes, same ETags and checksums, the
metadata now sealed. SSE-C objects need their customer's key and are listed and left. With
`read_format_v1` off, what is left in version 1, and anything relabelled as version 1, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys

import pytest

from .format_v1 import put_v1, put_v1_bucket_default, put_v1_multipart
from .v2_helpers import INTERNAL_BUCKET, fetch, make_rig, new_bucket, once, refused, rewrite

MB = 1024 * 1024
SSE_C_KEY = os.urandom(32)
SSE_C = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSE_C_KEY}


@pytest.fixture(scope="module")
def rig(tmp_path_factory, moto_server):
    yield from make_rig(tmp_path_factory, moto_server, "format-v2-upgrade")


def _sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _upgrade(rig, bucket: str, *extra: str) -> subprocess.CompletedProcess[str]:
    e = rig.endpoint
    return subprocess.run([sys.executable, "-m", "s3proxy", "rewrap", bucket, "--upgrade", "--endpoint-url", e.url,
                           "--access-key", e.access_key, "--secret-key", e.secret_key, *extra],
                          capture_output=True, text=True, timeout=120)


def test_version_1_objects_and_records_are_read_then_upgraded_in_place(rig):
    s3, kms, backend = rig.client(), rig.client("kms"), rig.backend()
    bucket = new_bucket(s3)
    key_id = kms.create_key()["KeyMetadata"]["Arn"]
    small, large, parts = os.urandom(5000), os.urandom(300_000), [os.urandom(5 * MB), os.urandom(MB)]
    expected = {  # key -> (data, ETag, read args)
        "s3": (small, put_v1(rig, bucket, "s3", small, "sse-s3", checksums={"sha256": _sha256(small)},
                             metadata={"colour": "blue"}, ContentType="text/plain"), {}),
        "s3-unrecorded": (large, put_v1(rig, bucket, "s3-unrecorded", large, "sse-s3", etag_recorded=False), {}),
        "kms": (small, put_v1(rig, bucket, "kms", small, "sse-kms", kms_key=key_id), {}),
        "c": (small, put_v1(rig, bucket, "c", small, "sse-c", sse_c_key=SSE_C_KEY), SSE_C),
        "mp-s3": (b"".join(parts), put_v1_multipart(rig, bucket, "mp-s3", parts, "sse-s3"), {}),
        "mp-kms": (b"".join(parts), put_v1_multipart(rig, bucket, "mp-kms", parts, "sse-kms", kms_key=key_id), {}),
    }
    put_v1_bucket_default(rig, bucket, "aws:kms", key_id)
    with rig.fresh() as another:  # a format-2 proxy reads all of it
        s3b = once(another)
        for key, (data, etag, args) in expected.items():
            head = s3b.head_object(Bucket=bucket, Key=key, **args)
            assert head["ETag"] == f'"{etag}"' and head["ContentLength"] == len(data), key
            assert head["ResponseMetadata"]["HTTPHeaders"]["x-s3proxy-format-version"] == "1"
            assert s3b.get_object(Bucket=bucket, Key=key, **args)["Body"].read() == data, key
            assert s3b.get_object(Bucket=bucket, Key=key, Range="bytes=4990-5009", **args)["Body"].read() == data[4990:5010]
        assert s3b.head_object(Bucket=bucket, Key="s3", ChecksumMode="ENABLED")["ChecksumSHA256"] == _sha256(small)
        assert s3b.head_object(Bucket=bucket, Key="s3")["Metadata"] == {"colour": "blue"}
    done = _upgrade(rig, bucket)
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout)
    assert "upgraded: 5" in done.stdout and "SSE-C objects left as they are (1)" in done.stdout and "  c" in done.stdout
    assert backend.get_object(Bucket=INTERNAL_BUCKET, Key=f"bucket-encryption/{bucket}")["Body"].read()[:1] == b"\x02"
    expected["s3-unrecorded"] = (large, hashlib.md5(large).hexdigest(), {})  # its MD5, found by one whole read
    with rig.fresh(read_format_v1="false") as strict:  # version 1 is no longer read at all
        s3b = once(strict)
        for key, (data, etag, args) in expected.items():
            if key == "c":
                refused(lambda: s3b.head_object(Bucket=bucket, Key="c", **SSE_C))
                continue
            stored = fetch(backend, bucket, key).metadata
            assert stored["s3proxy-v"] == "2" and "s3proxy-mm" in stored, key
            assert ("s3proxy-etag" in stored) == (key == "kms"), key  # an MD5 ETag is never left in clear
            head = s3b.head_object(Bucket=bucket, Key=key, **args)
            assert head["ETag"] == f'"{etag}"' and "x-s3proxy-format-version" not in head["ResponseMetadata"]["HTTPHeaders"]
            assert s3b.get_object(Bucket=bucket, Key=key, **args)["Body"].read() == data, key
        assert s3b.head_object(Bucket=bucket, Key="s3", ChecksumMode="ENABLED")["ChecksumSHA256"] == _sha256(small)
        assert s3b.head_object(Bucket=bucket, Key="s3")["ContentType"] == "text/plain"
        assert s3b.put_object(Bucket=bucket, Key="new", Body=b"n")["SSEKMSKeyId"] == key_id  # the re-sealed default
    again = _upgrade(rig, bucket)
    assert again.returncode == 0 and "upgraded: 0" in again.stdout and "already format version 2" in again.stdout
    # the SSE-C object's owner upgrades it by copying it onto itself with the key
    s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "c"}, **SSE_C,
                   CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=SSE_C_KEY)
    assert fetch(backend, bucket, "c").metadata["s3proxy-v"] == "2"


def test_dry_run_reports_what_it_would_upgrade_and_changes_nothing(rig):
    s3, backend = rig.client(), rig.backend()
    bucket = new_bucket(s3)
    put_v1(rig, bucket, "old", b"old", "sse-s3")
    s3.put_object(Bucket=bucket, Key="new", Body=b"new")
    done = _upgrade(rig, bucket, "--dry-run")
    assert done.returncode == 0 and "1 dry run: would upgrade" in done.stdout and "1 already format version 2" in done.stdout
    assert fetch(backend, bucket, "old").metadata["s3proxy-v"] == "1"


def test_a_version_2_object_relabelled_as_version_1_never_reads(rig):
    """FORMAT.md §19.4: stripping the metadata MAC and labelling the object version 1 fails GET (the
    envelope MAC binds the version) and, once version 1 is off, HEAD too."""
    s3, backend = rig.client(), rig.backend()
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"version 2 data", ContentType="text/plain")
    rewrite(backend, bucket, "k", lambda raw: raw.edited(
        metadata={"s3proxy-v": "1", "s3proxy-mm": None, "s3proxy-etag": None, "s3proxy-setag": None},
        headers={"ContentType": "text/html"}))
    refused(lambda: s3.get_object(Bucket=bucket, Key="k"))
    with rig.fresh(read_format_v1="false") as strict:
        refused(lambda: once(strict).head_object(Bucket=bucket, Key="k"))
        refused(lambda: once(strict).get_object(Bucket=bucket, Key="k"))


def test_a_bare_json_record_is_not_read_once_version_1_is_off(rig):
    s3, backend = rig.client(), rig.backend()
    bucket = new_bucket(s3)
    put_v1_bucket_default(rig, bucket, "AES256")
    with rig.fresh(read_format_v1="false") as strict:
        refused(lambda: once(strict).put_object(Bucket=bucket, Key="k", Body=b"x"))
    assert backend.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
