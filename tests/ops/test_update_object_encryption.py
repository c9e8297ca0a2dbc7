"""UpdateObjectEncryption (S3 API, 2026): re-wrap an object's data key under an SSE-KMS key without
moving data; ETag, checksums, size and metadata unchanged (reference §1.8)."""

from __future__ import annotations

import os
import uuid

import pytest
from botocore.exceptions import ClientError


@pytest.fixture
def setup(moto_proxy):
    s3, kms = moto_proxy.client(), moto_proxy.client("kms")
    bucket = f"u-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return moto_proxy, s3, kms, bucket


def _code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.response["Error"]["Code"]


def test_sse_s3_to_sse_kms_keeps_etag_checksum_size_metadata_and_bytes(setup):
    proxy, s3, kms, bucket = setup
    body = os.urandom(300_000)  # above the small-body path: the ETag was recorded after the upload
    s3.put_object(Bucket=bucket, Key="k", Body=body, Metadata={"colour": "blue"}, ChecksumAlgorithm="SHA256")
    before = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    raw_before = proxy.backend_client().get_object(Bucket=bucket, Key="k")["Body"].read()
    key = kms.create_key()["KeyMetadata"]["Arn"]
    s3.update_object_encryption(Bucket=bucket, Key="k", ObjectEncryption={"SSEKMS": {"KMSKeyArn": key}})
    after = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert after["ServerSideEncryption"] == "aws:kms" and after["SSEKMSKeyId"] == key
    for field in ("ETag", "ContentLength", "Metadata", "ChecksumSHA256"):
        assert after[field] == before[field], field
    assert proxy.backend_client().get_object(Bucket=bucket, Key="k")["Body"].read() == raw_before  # no data moved
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == body


def test_kms_key_to_another_with_bucket_key_and_old_key_no_longer_needed(setup):
    _, s3, kms, bucket = setup
    old, new = (kms.create_key()["KeyMetadata"]["Arn"] for _ in range(2))
    s3.put_object(Bucket=bucket, Key="k", Body=b"data", ServerSideEncryption="aws:kms", SSEKMSKeyId=old)
    s3.update_object_encryption(Bucket=bucket, Key="k", ObjectEncryption={"SSEKMS": {"KMSKeyArn": new, "BucketKeyEnabled": True}})
    kms.disable_key(KeyId=old)  # the object must now depend on the new key only
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"data" and got["SSEKMSKeyId"] == new and got["BucketKeyEnabled"] is True


def test_multipart_object_keeps_its_multipart_etag(setup):
    _, s3, kms, bucket = setup
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = os.urandom(5 * 1024 * 1024)
    etags = [s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=n, Body=part)["ETag"] for n in (1, 2)]
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=up,
        MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n} for n, e in ((1, etags[0]), (2, etags[1]))]},
    )
    key = kms.create_key()["KeyMetadata"]["Arn"]
    s3.update_object_encryption(Bucket=bucket, Key="mp", ObjectEncryption={"SSEKMS": {"KMSKeyArn": key}})
    head = s3.head_object(Bucket=bucket, Key="mp")
    assert head["ETag"] == done["ETag"] and head["ETag"].endswith('-2"')
    assert s3.get_object(Bucket=bucket, Key="mp", Range="bytes=5242870-5242889")["Body"].read() == (part + part)[5242870:5242890]


def test_sse_c_source_is_refused_as_aws_refuses(setup):
    _, s3, kms, bucket = setup
    s3.put_object(Bucket=bucket, Key="c", Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=os.urandom(32))
    with pytest.raises(ClientError) as exc:
        s3.update_object_encryption(
            Bucket=bucket, Key="c", ObjectEncryption={"SSEKMS": {"KMSKeyArn": kms.create_key()["KeyMetadata"]["Arn"]}}
        )
    assert _code(exc) == "InvalidRequest"


def test_unknown_target_key_is_kms_not_found_and_object_unchanged(setup):
    _, s3, _, bucket = setup
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.update_object_encryption(
            Bucket=bucket,
            Key="k",
            ObjectEncryption={
                "SSEKMS": {"KMSKeyArn": "arn:aws:kms:us-east-1:000000000000:key/00000000-0000-4000-8000-000000000000"}
            },
        )
    assert _code(exc) == "KMS.NotFoundException"
    assert s3.head_object(Bucket=bucket, Key="k")["ServerSideEncryption"] == "AES256"


def test_plaintext_object_written_behind_the_proxy_is_refused(setup):
    proxy, s3, kms, bucket = setup
    proxy.backend_client().put_object(Bucket=bucket, Key="plain", Body=b"not encrypted")
    with pytest.raises(ClientError) as exc:
        s3.update_object_encryption(
            Bucket=bucket, Key="plain", ObjectEncryption={"SSEKMS": {"KMSKeyArn": kms.create_key()["KeyMetadata"]["Arn"]}}
        )
    assert _code(exc) == "InvalidRequest"
