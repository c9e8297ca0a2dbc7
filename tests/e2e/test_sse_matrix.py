"""The encryption-mode matrix: every mode × every size at the format's chunk boundaries, through
PUT, HEAD, GET, ranged GET, listing and the checksum read path, each case checked at rest.

Contract: /work/shared/reference/s3-sse-and-kms.md §1.1 (headers per operation), §1.3 (ETags and
flexible checksums), docs/FORMAT.md §5 (ciphertext length)."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest

from .sse_helpers import SIZES, CustomerKey, assert_no_leak, assert_sealed, body_of, unique


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


class Mode:
    """One row of the mode axis: what PUT sends, what S3 echoes and what is stored."""

    def __init__(self, name: str, put: dict, read: dict, echo: str, stored: str, md5_etag: bool, secrets=()):
        self.name, self.put, self.read, self.echo, self.stored, self.md5_etag, self.secrets = (
            name, put, read, echo, stored, md5_etag, secrets,
        )


def _modes() -> list[Mode]:
    key = CustomerKey.new()
    return [
        # no SSE header: S3 applies SSE-S3 to every object since 2023-01-05 (§1.4), ETag = MD5 (§1.3)
        Mode("no-header", {}, {}, "AES256", "AES256", True),
        # SSE-S3 asked for explicitly
        Mode("sse-s3", {"ServerSideEncryption": "AES256"}, {}, "AES256", "AES256", True),
        # SSE-KMS without a key id: the AWS-managed aws/s3 key (§1.1); ETag is not MD5 (§1.3)
        Mode("sse-kms", {"ServerSideEncryption": "aws:kms"}, {}, "aws:kms", "aws:kms", False),
        # SSE-C: the key on every request, echoed by algorithm and key MD5, never stored (§1.1)
        Mode("sse-c", key.args(), key.args(), "SSE-C", "SSE-C", False, (key.raw,)),
    ]


MODES = _modes()


@pytest.fixture(scope="module")
def matrix_bucket(proxy):
    s3 = proxy.client()
    name = unique("matrix")
    s3.create_bucket(Bucket=name)
    return name


@pytest.mark.parametrize("size", SIZES, ids=[f"{n}B" for n in SIZES])
@pytest.mark.parametrize("mode", MODES, ids=[m.name for m in MODES])
def test_mode_by_size(proxy, matrix_bucket, mode, size):
    s3 = proxy.client()
    bucket, key = matrix_bucket, unique(f"{mode.name}-{size}")
    data = body_of(size, key)

    put = s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="CRC32", **mode.put)
    _check_echo(put, mode)
    md5 = hashlib.md5(data).hexdigest()
    etag = put["ETag"].strip('"')
    if mode.md5_etag:
        assert etag == md5  # §1.3: SSE-S3 single-part ETag is MD5 of the content
    else:
        assert etag != md5  # §1.3: SSE-C/SSE-KMS ETags are not MD5 of the content
    assert put["ChecksumCRC32"] == _crc32(data)  # §1.3: flexible checksums are plaintext checksums

    assert_sealed(proxy, bucket, key, data, mode.stored, secrets=mode.secrets)

    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", **mode.read)
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"') == etag
    assert head.get("ChecksumCRC32") == _crc32(data)
    _check_echo(head, mode)
    assert_no_leak(head["ResponseMetadata"]["HTTPHeaders"])

    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", **mode.read)
    assert got["Body"].read() == data  # boto3 validated the CRC32 against the body it read
    assert got["ContentLength"] == size and got["ETag"].strip('"') == etag
    assert got.get("ChecksumCRC32") == _crc32(data)
    _check_echo(got, mode)
    assert_no_leak(got["ResponseMetadata"]["HTTPHeaders"])

    if size:
        first, last = max(0, size // 2 - 3), min(size - 1, size // 2 + 70000)  # crosses a chunk edge when there is one
        ranged = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}", **mode.read)
        assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert ranged["ContentRange"] == f"bytes {first}-{last}/{size}"
        assert ranged["Body"].read() == data[first : last + 1]
        suffix = s3.get_object(Bucket=bucket, Key=key, Range="bytes=-5", **mode.read)["Body"].read()
        assert suffix == data[-5:]

    listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket, Prefix=key)["Contents"]}
    assert listed[key]["Size"] == size  # listings show plaintext sizes
    assert listed[key]["ETag"].strip('"') == etag  # and the same ETag as HEAD


def _check_echo(response: dict, mode: Mode) -> None:
    """§1.1: which SSE response headers each operation carries."""
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    if mode.echo == "SSE-C":
        assert "x-amz-server-side-encryption" not in headers
        assert response["SSECustomerAlgorithm"] == "AES256"
        assert response["SSECustomerKeyMD5"] == base64.b64encode(hashlib.md5(mode.secrets[0]).digest()).decode()
        return
    assert response["ServerSideEncryption"] == mode.echo
    assert "SSECustomerAlgorithm" not in response
    if mode.echo == "aws:kms":
        assert response["SSEKMSKeyId"].startswith("arn:aws:kms:us-east-1:000000000000:key/")
    else:
        assert "SSEKMSKeyId" not in response
    # GET/HEAD never echo the context (§1.1)
    assert "x-amz-server-side-encryption-context" not in headers


@pytest.mark.parametrize("mode", MODES, ids=[m.name for m in MODES])
def test_sha256_checksum_is_the_plaintexts(proxy, matrix_bucket, mode):
    """§1.3: flexible checksums are plaintext checksums in every mode; GET/HEAD with ChecksumMode
    return the stored SHA-256 and boto3 validates the body against it."""
    s3 = proxy.client()
    key = unique(f"sha-{mode.name}")
    data = body_of(3 * 65536 + 7, key)
    expected = base64.b64encode(hashlib.sha256(data).digest()).decode()
    put = s3.put_object(Bucket=matrix_bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256", **mode.put)
    assert put["ChecksumSHA256"] == expected
    assert s3.head_object(Bucket=matrix_bucket, Key=key, ChecksumMode="ENABLED", **mode.read)["ChecksumSHA256"] == expected
    got = s3.get_object(Bucket=matrix_bucket, Key=key, ChecksumMode="ENABLED", **mode.read)
    assert got["ChecksumSHA256"] == expected and got["Body"].read() == data
    # without ChecksumMode the checksum is not sent (S3 answers it only on request)
    assert "ChecksumSHA256" not in s3.head_object(Bucket=matrix_bucket, Key=key, **mode.read)
