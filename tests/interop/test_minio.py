"""minio-py (MinIO's Python SDK) against the proxy over HTTPS: SseS3, SseKMS (with an encryption
context) and SseCustomerKey, which minio-py sends only over TLS; multipart uploads (part_size),
ranged reads across a part boundary, server-side copy, fput/fget of files, and presigned GET and
PUT URLs, each request of which the access log names with its principal."""

from __future__ import annotations

import io
import os
import ssl
import urllib.request
from datetime import timedelta

import pytest
from minio.commonconfig import CopySource
from minio.error import S3Error
from minio.sse import SseCustomerKey, SseKMS, SseS3

from .conftest import MiB, mode_of, ssec_args


def sse_for(tls_proxy, mode: str):
    """(minio's sse object for writes, its ssec for reads or None, boto3's read arguments)."""
    if mode == "AES256":
        return SseS3(), None, {}
    if mode == "aws:kms":
        return SseKMS(tls_proxy.kms_key(), {"purpose": "interop"}), None, {}
    key = os.urandom(32)
    return SseCustomerKey(key), SseCustomerKey(key), ssec_args(key)


def read(minio, bucket: str, key: str, ssec=None, **kwargs) -> bytes:
    response = minio.get_object(bucket, key, ssec=ssec, **kwargs)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


@pytest.mark.parametrize("mode", ["AES256", "aws:kms", "SSE-C"])
def test_multipart_ranges_copy_and_files(tls_proxy, minio, mode):
    sse, ssec, read_args = sse_for(tls_proxy, mode)
    bucket = tls_proxy.bucket()
    data = os.urandom(11 * MiB)
    minio.put_object(bucket, "big.bin", io.BytesIO(data), len(data), part_size=5 * MiB, sse=sse)
    assert mode_of(tls_proxy, bucket, "big.bin", **read_args) == mode
    assert minio.stat_object(bucket, "big.bin", ssec=ssec).size == len(data)
    assert read(minio, bucket, "big.bin", ssec) == data
    assert tls_proxy.client().get_object(Bucket=bucket, Key="big.bin", **read_args)["Body"].read() == data
    start = 5 * MiB - 10
    assert read(minio, bucket, "big.bin", ssec, offset=start, length=100) == data[start:start + 100]

    # server-side copy, re-encrypted under the same mode
    source = CopySource(bucket, "big.bin", ssec=ssec)
    minio.copy_object(bucket, "copy.bin", source, sse=sse)
    assert read(minio, bucket, "copy.bin", ssec) == data

    # files both ways
    local = tls_proxy.work / f"minio-{bucket}.txt"
    local.write_bytes(b"a file\n" * 1000)
    minio.fput_object(bucket, "file.txt", str(local), sse=sse)
    fetched = tls_proxy.work / f"minio-{bucket}.back"
    minio.fget_object(bucket, "file.txt", str(fetched), ssec=ssec)
    assert fetched.read_bytes() == local.read_bytes()
    assert sorted(o.object_name for o in minio.list_objects(bucket)) == ["big.bin", "copy.bin", "file.txt"]


def test_sse_c_with_a_wrong_key_is_refused(tls_proxy, minio):
    bucket = tls_proxy.bucket()
    minio.put_object(bucket, "k", io.BytesIO(b"customer keyed"), 14, sse=SseCustomerKey(os.urandom(32)))
    with pytest.raises(S3Error) as refused:
        read(minio, bucket, "k", SseCustomerKey(os.urandom(32)))
    assert refused.value.response.status == 403


def test_presigned_get_and_put_are_logged_with_their_principal(tls_proxy, minio, access_log):
    bucket = tls_proxy.bucket()
    context = ssl.create_default_context(cafile=str(tls_proxy.ca))
    put_url = minio.presigned_put_object(bucket, "uploaded.txt", expires=timedelta(minutes=10))
    # urllib would label the body application/x-www-form-urlencoded, which moto's web layer swallows
    request = urllib.request.Request(put_url, data=b"put through a presigned url", method="PUT",
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, context=context, timeout=30) as answered:
        assert answered.status == 200
    get_url = minio.presigned_get_object(bucket, "uploaded.txt", expires=timedelta(minutes=10))
    assert "X-Amz-Signature=" in get_url
    with urllib.request.urlopen(get_url, context=context, timeout=30) as got:
        assert got.read() == b"put through a presigned url"
    assert mode_of(tls_proxy, bucket, "uploaded.txt") == "AES256"  # the proxy's default: every object encrypted
    presigned = [line for line in access_log.lines if line["op"] in ("PutObject", "GetObject")][-2:]
    assert [(line["op"], line["access_key"], line["principal"]) for line in presigned] == [
        ("PutObject", tls_proxy.access_key, tls_proxy.principal), ("GetObject", tls_proxy.access_key, tls_proxy.principal)]
