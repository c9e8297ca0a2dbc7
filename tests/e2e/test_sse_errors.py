"""S3's SSE error table (reference s3-sse-and-kms.md §1.2), one row per case, on both backends.

Multipart rows live in test_sse_multipart.py, KMS key-state rows in test_sse_kms.py, the blocked
SSE-C row in test_sse_bucket_default.py. HEAD errors carry no body, so boto3 reports the bare
status as the code ("400", "403")."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from .conftest import start_proxy
from .sse_helpers import CustomerKey, add_headers, body_of, expect_error, unique

MISSING = "The correct parameters must be provided to retrieve the object"
WRONG = "must provide the correct secret key"
NOT_APPLICABLE = "The encryption parameters are not applicable to this object"
BAD_MD5 = "The calculated MD5 hash of the key did not match the hash that was provided"
BAD_KEY = "The secret key was invalid for the specified algorithm"
NO_ALGORITHM = "must provide a valid encryption algorithm"
NO_KEY = "must provide an appropriate secret key"
ALGORITHM = "Supported value: AES256"
INCOMPATIBLE = "incompatible with the encryption method specified"
KMS_NEEDS_SSE = "requires HTTP header x-amz-server-side-encryption : aws:kms"
SELF_COPY = "trying to copy an object to itself without changing"
SSEC = "x-amz-server-side-encryption-customer-"
CPSRC = "x-amz-copy-source-server-side-encryption-customer-"


@dataclass
class World:
    """One bucket with an SSE-C object (and an empty one) under `key`, and an SSE-S3 object."""

    proxy: object
    bucket: str
    key: CustomerKey
    other: CustomerKey
    ssec: str = "ssec"
    ssec_empty: str = "ssec-empty"
    plain: str = "plain"

    def s3(self, event: str | None = None, headers: dict | None = None):
        client = self.proxy.client()
        if event:
            add_headers(client, f"before-sign.s3.{event}", headers or {})
        return client


@pytest.fixture(scope="module")
def world(proxy) -> World:
    s3 = proxy.client()
    w = World(proxy, unique("errors"), CustomerKey.new(), CustomerKey.new())
    s3.create_bucket(Bucket=w.bucket)
    s3.put_object(Bucket=w.bucket, Key=w.ssec, Body=body_of(70000), **w.key.args())
    s3.put_object(Bucket=w.bucket, Key=w.ssec_empty, Body=b"", **w.key.args())
    s3.put_object(Bucket=w.bucket, Key=w.plain, Body=b"plain", ServerSideEncryption="AES256")
    return w


def _new() -> str:
    return f"new-{uuid.uuid4().hex[:8]}"


# (row id, request, status, code, message fragment) — each row's comment says which table row it is.
Row = tuple[str, Callable[[World], object], int, str | None, str | None]
ROWS: list[Row] = [
    # no SSE-C headers on an SSE-C object: GET, HEAD (bare 400), ranged GET, empty object, copy source [L]
    ("get-no-key", lambda w: w.s3().get_object(Bucket=w.bucket, Key=w.ssec), 400, "InvalidRequest", MISSING),
    ("head-no-key", lambda w: w.s3().head_object(Bucket=w.bucket, Key=w.ssec), 400, "400", None),
    ("range-no-key", lambda w: w.s3().get_object(Bucket=w.bucket, Key=w.ssec, Range="bytes=0-9"), 400, "InvalidRequest", MISSING),
    ("empty-no-key", lambda w: w.s3().get_object(Bucket=w.bucket, Key=w.ssec_empty), 400, "InvalidRequest", MISSING),
    ("empty-head-no-key", lambda w: w.s3().head_object(Bucket=w.bucket, Key=w.ssec_empty), 400, "400", None),
    ("copy-source-no-key", lambda w: w.s3().copy_object(Bucket=w.bucket, Key=_new(), CopySource={"Bucket": w.bucket, "Key": w.ssec}),
     400, "InvalidRequest", MISSING),
    # the wrong SSE-C key: 403 AccessDenied, everywhere the key is checked [L]
    ("get-wrong-key", lambda w: w.s3().get_object(Bucket=w.bucket, Key=w.ssec, **w.other.args()), 403, "AccessDenied", WRONG),
    ("head-wrong-key", lambda w: w.s3().head_object(Bucket=w.bucket, Key=w.ssec, **w.other.args()), 403, "403", None),
    ("range-wrong-key", lambda w: w.s3().get_object(Bucket=w.bucket, Key=w.ssec, Range="bytes=5-9", **w.other.args()),
     403, "AccessDenied", WRONG),
    ("empty-wrong-key", lambda w: w.s3().get_object(Bucket=w.bucket, Key=w.ssec_empty, **w.other.args()), 403, "AccessDenied", WRONG),
    ("empty-head-wrong-key", lambda w: w.s3().head_object(Bucket=w.bucket, Key=w.ssec_empty, **w.other.args()), 403, "403", None),
    ("copy-source-wrong-key", lambda w: w.s3().copy_object(Bucket=w.bucket, Key=_new(), CopySource={"Bucket": w.bucket, "Key": w.ssec},
                                                          **w.other.copy_source_args()), 403, "AccessDenied", WRONG),
    # a key-MD5 that does not match the key, on PUT, GET and a copy source [L] (raw headers: boto3 computes it)
    ("put-bad-md5", lambda w: w.s3("PutObject", {SSEC + "key-MD5": w.other.md5}).put_object(
        Bucket=w.bucket, Key=_new(), Body=b"x", **w.key.args()), 400, "InvalidArgument", BAD_MD5),
    ("get-bad-md5", lambda w: w.s3("GetObject", {SSEC + "key-MD5": w.other.md5}).get_object(
        Bucket=w.bucket, Key=w.ssec, **w.key.args()), 400, "InvalidArgument", BAD_MD5),
    ("copy-source-bad-md5", lambda w: w.s3("CopyObject", {CPSRC + "key-MD5": w.other.md5}).copy_object(
        Bucket=w.bucket, Key=_new(), CopySource={"Bucket": w.bucket, "Key": w.ssec}, **w.key.copy_source_args()),
     400, "InvalidArgument", BAD_MD5),
    # a key that is not 256 bits [L]
    ("put-short-key", lambda w: w.s3().put_object(Bucket=w.bucket, Key=_new(), Body=b"x", SSECustomerAlgorithm="AES256",
                                                  SSECustomerKey=b"k" * 16), 400, "InvalidArgument", BAD_KEY),
    ("get-long-key", lambda w: w.s3().get_object(Bucket=w.bucket, Key=w.ssec, SSECustomerAlgorithm="AES256",
                                                 SSECustomerKey=b"k" * 33), 400, "InvalidArgument", BAD_KEY),
    # key without algorithm, algorithm without key [L]
    ("put-key-no-algorithm", lambda w: w.s3("PutObject", {SSEC + "algorithm": None}).put_object(
        Bucket=w.bucket, Key=_new(), Body=b"x", **w.key.args()), 400, "InvalidArgument", NO_ALGORITHM),
    ("get-algorithm-no-key", lambda w: w.s3("GetObject", {SSEC + "key": None, SSEC + "key-MD5": None}).get_object(
        Bucket=w.bucket, Key=w.ssec, **w.key.args()), 400, "InvalidArgument", NO_KEY),
    # algorithm other than AES256 on PUT, GET and a copy source [L]
    ("put-aes128", lambda w: w.s3().put_object(Bucket=w.bucket, Key=_new(), Body=b"x", SSECustomerAlgorithm="AES128",
                                               SSECustomerKey=w.key.raw), 400, "InvalidEncryptionAlgorithmError", ALGORITHM),
    ("get-aes128", lambda w: w.s3().get_object(Bucket=w.bucket, Key=w.ssec, SSECustomerAlgorithm="AES128", SSECustomerKey=w.key.raw),
     400, "InvalidEncryptionAlgorithmError", ALGORITHM),
    ("copy-source-aes128", lambda w: w.s3().copy_object(
        Bucket=w.bucket, Key=_new(), CopySource={"Bucket": w.bucket, "Key": w.ssec},
        CopySourceSSECustomerAlgorithm="AES128", CopySourceSSECustomerKey=w.key.raw), 400, "InvalidEncryptionAlgorithmError", ALGORITHM),
    # SSE-C together with x-amz-server-side-encryption [L]
    ("put-ssec-and-sse-s3", lambda w: w.s3().put_object(Bucket=w.bucket, Key=_new(), Body=b"x", ServerSideEncryption="AES256",
                                                        **w.key.args()), 400, "InvalidArgument", INCOMPATIBLE),
    ("put-ssec-and-sse-kms", lambda w: w.s3().put_object(Bucket=w.bucket, Key=_new(), Body=b"x", ServerSideEncryption="aws:kms",
                                                         **w.key.args()), 400, "InvalidArgument", INCOMPATIBLE),
    # SSE-C headers on an object that is not SSE-C (boto3 #982, minio #7332)
    ("get-key-on-sse-s3-object", lambda w: w.s3().get_object(Bucket=w.bucket, Key=w.plain, **w.key.args()),
     400, "InvalidRequest", NOT_APPLICABLE),
    ("head-key-on-sse-s3-object", lambda w: w.s3().head_object(Bucket=w.bucket, Key=w.plain, **w.key.args()), 400, "400", None),
    ("copy-source-key-on-sse-s3-object", lambda w: w.s3().copy_object(
        Bucket=w.bucket, Key=_new(), CopySource={"Bucket": w.bucket, "Key": w.plain}, **w.key.copy_source_args()),
     400, "InvalidRequest", NOT_APPLICABLE),
    # KMS headers while x-amz-server-side-encryption is not aws:kms (MinIO mirror of AWS)
    ("put-kms-key-with-aes256", lambda w: w.s3().put_object(Bucket=w.bucket, Key=_new(), Body=b"x", ServerSideEncryption="AES256",
                                                            SSEKMSKeyId="alias/aws/s3"), 400, "InvalidArgument", KMS_NEEDS_SSE),
    ("put-kms-key-without-sse", lambda w: w.s3().put_object(Bucket=w.bucket, Key=_new(), Body=b"x", SSEKMSKeyId="alias/aws/s3"),
     400, "InvalidArgument", KMS_NEEDS_SSE),
    # SSE/KMS request headers on GET/HEAD: 400 (specifying-kms-encryption.md)
    ("get-with-sse-header", lambda w: w.s3("GetObject", {"x-amz-server-side-encryption": "AES256"}).get_object(
        Bucket=w.bucket, Key=w.plain), 400, None, None),
    ("head-with-kms-key-header", lambda w: w.s3("HeadObject", {"x-amz-server-side-encryption-aws-kms-key-id": "alias/aws/s3"}).head_object(
        Bucket=w.bucket, Key=w.plain), 400, None, None),
    # a value outside the x-amz-server-side-encryption enum
    ("put-unknown-sse", lambda w: w.s3().put_object(Bucket=w.bucket, Key=_new(), Body=b"x", ServerSideEncryption="AES512"),
     400, "InvalidArgument", None),
    # DSSE-KMS: not implemented, a documented decision (501, as S3 answers what it does not implement)
    ("put-dsse", lambda w: w.s3().put_object(Bucket=w.bucket, Key=_new(), Body=b"x", ServerSideEncryption="aws:kms:dsse"),
     501, "NotImplemented", None),
    # copying an object onto itself with nothing changed [L]
    ("self-copy-unchanged", lambda w: w.s3().copy_object(Bucket=w.bucket, Key=w.plain, CopySource={"Bucket": w.bucket, "Key": w.plain}),
     400, "InvalidRequest", SELF_COPY),
]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_error_table(world, row):
    _, request, status, code, message = row
    expect_error(lambda: request(world), status, code, message)


def test_failed_reads_leave_the_ssec_object_readable_with_its_key(world):
    """After every refused read the object is intact and the right key still opens it."""
    got = world.s3().get_object(Bucket=world.bucket, Key=world.ssec, **world.key.args())
    assert got["Body"].read() == body_of(70000)
    assert world.s3().get_object(Bucket=world.bucket, Key=world.ssec_empty, **world.key.args())["Body"].read() == b""


def test_ssec_over_http_refused_when_set_to_never(tmp_path):
    """ssec_over_http=never: SSE-C over plain HTTP is refused even from loopback (ServerSideEncryptionCustomerKeys.md:
    "Amazon S3 rejects any requests made over HTTP when using SSE-C"); other modes still work."""
    thread, endpoint = start_proxy(tmp_path, "fs", None, ssec_over_http="never")
    try:
        s3 = endpoint.client()
        s3.create_bucket(Bucket="ssec-http")
        key = CustomerKey.new()
        secure = "must be made over a secure connection"
        expect_error(lambda: s3.put_object(Bucket="ssec-http", Key="k", Body=b"x", **key.args()), 400, "InvalidRequest", secure)
        s3.put_object(Bucket="ssec-http", Key="k", Body=b"x")
        expect_error(lambda: s3.get_object(Bucket="ssec-http", Key="k", **key.args()), 400, "InvalidRequest", secure)
        expect_error(lambda: s3.copy_object(Bucket="ssec-http", Key="k2", CopySource="ssec-http/k", **key.copy_source_args()),
                     400, "InvalidRequest", secure)
        assert s3.get_object(Bucket="ssec-http", Key="k")["Body"].read() == b"x"
    finally:
        thread.stop()
