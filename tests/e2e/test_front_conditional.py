"""Conditional writes (If-None-Match: *, If-Match: <ETag>) on PutObject, CompleteMultipartUpload and
CopyObject, with boto3, in front of the fs backend, moto and SeaweedFS; and races between clients.

Facts: S3 user guide, "How to prevent object overwrites with conditional writes" (If-None-Match
takes only `*`; an existing key is 412 PreconditionFailed; with concurrent conditional writes the
first to finish wins and the others get 412; a current delete marker counts as no object; If-Match
compares the object's ETag, 412 on a mismatch, 404 NoSuchKey without an object; a write whose
object changed or vanished during the upload is 409 ConditionalRequestConflict; conditional
writes need SigV4). An If-None-Match other than `*` is 501 NotImplemented (AWS, as seen by SDK
users: aws-sdk-ruby issue 3144). What a backend does not enforce, the proxy refuses (501): moto
5.2.1 ignores If-Match on Complete and both headers on CopyObject; SeaweedFS enforces all six.

Issue 20's figure, before: 16 concurrent create-if-absent PUTs of one key gave 12-16 successes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import uuid

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from benchmarks.common import Seaweed

from .conftest import start_peer, start_proxy
from .front_helpers import error_of, expect_error, send, signed_headers

PART = 5 * 1024 * 1024
RACERS = 16


def _client(proxy):
    return proxy.client(max_pool_connections=RACERS * 2)


def _race(clients, bucket: str, key: str, body: bytes, **condition) -> list:
    """RACERS writers released together; each one's status (200) or (code, status)."""
    start = threading.Barrier(RACERS)

    def one(n: int):
        client = clients[n % len(clients)]
        start.wait()
        try:
            client.put_object(Bucket=bucket, Key=key, Body=body + str(n).encode(), **condition)
            return 200
        except ClientError as exc:
            return error_of(exc)

    with concurrent.futures.ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(one, range(RACERS)))


def _upload(s3, bucket: str, key: str) -> tuple[str, dict]:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"mpu")["ETag"]
    return upload, {"Parts": [{"PartNumber": 1, "ETag": etag}]}


# PutObject ---------------------------------------------------------------------------------------


def test_put_if_none_match(s3, bucket):
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")["ETag"]
    err = expect_error("PreconditionFailed", 412, s3.put_object, Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert err.response["Error"]["Condition"] == "If-None-Match"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"


def test_put_if_match(s3, bucket):
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"first")["ETag"]
    err = expect_error(
        "PreconditionFailed", 412, s3.put_object, Bucket=bucket, Key="k", Body=b"x", IfMatch='"0123456789abcdef0123456789abcdef"'
    )
    assert err.response["Error"]["Condition"] == "If-Match"
    second = s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfMatch=first)["ETag"]  # the client's ETag, quoted
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"third", IfMatch=second.strip('"'))  # or bare
    expect_error("PreconditionFailed", 412, s3.put_object, Bucket=bucket, Key="k", Body=b"x", IfMatch=first)  # stale
    expect_error("NoSuchKey", 404, s3.put_object, Bucket=bucket, Key="absent", Body=b"x", IfMatch=first)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"third"


def test_put_if_match_compares_the_clients_etag_not_the_backends(proxy, s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"data", ServerSideEncryption="aws:kms")
    backend = proxy.backend_client()
    if backend is not None:  # the backend's ETag (of the ciphertext) is another value, and is refused
        stored = backend.head_object(Bucket=bucket, Key="k")["ETag"]
        assert stored != put["ETag"]
        expect_error("PreconditionFailed", 412, s3.put_object, Bucket=bucket, Key="k", Body=b"x", IfMatch=stored)
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"new", IfMatch=put["ETag"])


def test_a_delete_marker_is_no_object(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    s3.delete_object(Bucket=bucket, Key="k")
    expect_error("NoSuchKey", 404, s3.put_object, Bucket=bucket, Key="k", Body=b"x", IfMatch=etag)
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfNoneMatch="*")["VersionId"]
    expect_error("PreconditionFailed", 412, s3.put_object, Bucket=bucket, Key="k", Body=b"v3", IfNoneMatch="*")


@pytest.mark.parametrize("headers", [
    {"If-None-Match": '"0123456789abcdef0123456789abcdef"'},  # S3 takes only *
    {"If-None-Match": "*", "If-Match": '"0123456789abcdef0123456789abcdef"'},  # not both
])
def test_unsupported_forms_are_501(proxy, bucket, headers):
    path = f"/{bucket}/k"
    signed = signed_headers(proxy.url, "PUT", path, headers={**headers, "Content-Length": "1"})
    r = send(proxy.url, "PUT", path, signed, b"x")
    assert (r.status, r.code) == (501, "NotImplemented"), r.body


def test_sigv2_conditional_write_is_refused(proxy, bucket):
    import boto3

    v2 = boto3.client("s3", endpoint_url=proxy.url, aws_access_key_id=proxy.access_key, aws_secret_access_key=proxy.secret_key,
                      region_name="us-east-1", config=Config(signature_version="s3", s3={"addressing_style": "path"},
                                                             retries={"max_attempts": 1}))
    expect_error("InvalidRequest", 400, v2.put_object, Bucket=bucket, Key="k", Body=b"x", IfNoneMatch="*")
    assert v2.put_object(Bucket=bucket, Key="k", Body=b"x")  # unconditional SigV2 writes still work


# CompleteMultipartUpload and CopyObject ----------------------------------------------------------


def test_complete_if_none_match(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"there")
    upload, parts = _upload(s3, bucket, "k")
    err = expect_error("PreconditionFailed", 412, s3.complete_multipart_upload, Bucket=bucket, Key="k", UploadId=upload,
                       MultipartUpload=parts, IfNoneMatch="*")
    assert err.response["Error"]["Condition"] == "If-None-Match"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"there"
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload)
    upload, parts = _upload(s3, bucket, "new")
    s3.complete_multipart_upload(Bucket=bucket, Key="new", UploadId=upload, MultipartUpload=parts, IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="new")["Body"].read() == b"mpu"


def test_complete_and_copy_if_match_where_the_backend_enforces_them(proxy, s3, bucket):
    current = s3.put_object(Bucket=bucket, Key="k", Body=b"there")["ETag"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    upload, parts = _upload(s3, bucket, "k")
    cases = [
        lambda **c: s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload, MultipartUpload=parts, **c),
        lambda **c: s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "src"}, **c),
    ]
    if proxy.backend_kind == "s3":  # moto enforces neither: refused, never written unconditionally
        for write in cases:
            for condition in (dict(IfMatch=current), dict(IfMatch='"0123456789abcdef0123456789abcdef"')):
                expect_error("NotImplemented", 501, write, **condition)
        expect_error("NotImplemented", 501, cases[1], IfNoneMatch="*")
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"there"
        return
    for write in cases:
        expect_error("PreconditionFailed", 412, write, IfMatch='"0123456789abcdef0123456789abcdef"')
    expect_error("PreconditionFailed", 412, cases[1], IfNoneMatch="*")
    done = cases[0](IfMatch=current)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"mpu"
    copied = cases[1](IfMatch=done["ETag"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"source" and copied["CopyObjectResult"]["ETag"]
    expect_error(
        "NoSuchKey",
        404,
        s3.copy_object,
        Bucket=bucket,
        Key="absent",
        CopySource={"Bucket": bucket, "Key": "src"},
        IfMatch=current,
    )
    assert s3.copy_object(Bucket=bucket, Key="fresh", CopySource={"Bucket": bucket, "Key": "src"}, IfNoneMatch="*")


# races ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("size", [10, 1024 * 1024])  # 1 MiB: past SMALL_BODY, the streamed write path
def test_16_concurrent_create_if_absent_puts_one_wins(proxy, bucket, size):
    client = _client(proxy)
    for round_ in range(3):
        key = f"race-{round_}"
        results = _race([client], bucket, key, b"x" * size, IfNoneMatch="*")
        assert results.count(200) == 1, results
        assert all(r == 200 or r in (("PreconditionFailed", 412), ("ConditionalRequestConflict", 409)) for r in results), results
        print(f"{proxy.backend_kind} {size} B round {round_}: {results.count(200)} of {RACERS} succeeded")


@pytest.mark.slow
def test_16_concurrent_if_match_puts_one_wins(proxy, bucket):
    client = _client(proxy)
    etag = client.put_object(Bucket=bucket, Key="k", Body=b"base")["ETag"]
    results = _race([client], bucket, "k", b"next", IfMatch=etag)
    assert results.count(200) == 1, results
    assert all(r == 200 or r in (("PreconditionFailed", 412), ("ConditionalRequestConflict", 409)) for r in results), results


@pytest.mark.slow
def test_two_proxies_in_front_of_one_backend_let_one_create_win(tmp_path, moto_server):
    """Across proxies: the backend decides (here moto, whose PUT check runs under its own lock-free
    handler: the race result is what moto gives, measured)."""
    (tmp_path / "a").mkdir()
    one, a = start_proxy(tmp_path / "a", "s3", moto_server)
    two, b = start_peer(tmp_path / "a", "s3", moto_server)  # scale-out: one keystore, hence one integrity key
    try:
        clients = [_client(e) for e in (a, b)]
        bucket = f"t-{uuid.uuid4().hex[:16]}"
        clients[0].create_bucket(Bucket=bucket)
        for round_ in range(3):
            results = _race(clients, bucket, f"race-{round_}", b"y" * 1000, IfNoneMatch="*")
            assert results.count(200) == 1, results
    finally:
        one.stop()
        two.stop()


# SeaweedFS: a server that enforces every conditional write ----------------------------------------


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    root = tmp_path_factory.mktemp("seaweed")
    weed = asyncio.run(Seaweed(root, access_key="backend", secret_key="backend").start())
    yield weed
    weed.stop()


@pytest.mark.slow
def test_through_seaweedfs_every_conditional_write_is_enforced(tmp_path, seaweed):
    thread, endpoint = start_proxy(tmp_path, "s3", seaweed.url)
    try:
        s3 = _client(endpoint)
        bucket = f"t-{uuid.uuid4().hex[:16]}"
        s3.create_bucket(Bucket=bucket)
        current = s3.put_object(Bucket=bucket, Key="k", Body=b"there")["ETag"]
        s3.put_object(Bucket=bucket, Key="src", Body=b"source")
        upload, parts = _upload(s3, bucket, "k")
        expect_error("PreconditionFailed", 412, s3.complete_multipart_upload, Bucket=bucket, Key="k", UploadId=upload,
                     MultipartUpload=parts, IfMatch='"0123456789abcdef0123456789abcdef"')
        done = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload, MultipartUpload=parts, IfMatch=current)
        copy = dict(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "src"})
        expect_error("PreconditionFailed", 412, s3.copy_object, **copy, IfNoneMatch="*")
        expect_error("PreconditionFailed", 412, s3.copy_object, **copy, IfMatch=current)  # replaced by the upload
        s3.copy_object(**copy, IfMatch=done["ETag"])
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"source"
        for round_ in range(3):
            results = _race([s3], bucket, f"race-{round_}", b"z" * 1000, IfNoneMatch="*")
            assert results.count(200) == 1, results
            print(f"seaweedfs round {round_}: {results.count(200)} of {RACERS} succeeded")
    finally:
        thread.stop()


# conditional deletes: not done here, so refused rather than ignored ------------------------------


def test_conditional_deletes_are_refused_not_ignored(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"keep me")["ETag"]
    expect_error("NotImplemented", 501, s3.delete_object, Bucket=bucket, Key="k", IfMatch='"0123456789abcdef0123456789abcdef"')
    expect_error("NotImplemented", 501, s3.delete_objects, Bucket=bucket,
                 Delete={"Objects": [{"Key": "k", "ETag": '"0123456789abcdef0123456789abcdef"'}]})
    assert s3.get_object(Bucket=bucket, Key="k")["ETag"] == etag  # still there
