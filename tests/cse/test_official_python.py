"""Interop with the official AWS S3 Encryption Client for Python (PyPI amazon-s3-encryption-client-python 4.0.0).

Both directions, formats v3 (its default) and v2, at 0 B, 1 KiB and several MiB (several MiB is a
multipart upload on our side), envelopes in metadata and in instruction files.
"""

from __future__ import annotations

import io
import os

import pytest

from s3proxy.cse import CseClient, KmsKeyring

s3ec = pytest.importorskip("s3_encryption", reason="pip install amazon-s3-encryption-client-python")
from s3_encryption.materials.kms_keyring import KmsKeyring as OfficialKmsKeyring  # noqa: E402
from s3_encryption.materials.materials import AlgorithmSuite, CommitmentPolicy  # noqa: E402

SIZES = [0, 1024, 6 * 1024 * 1024 + 5]  # empty (tag only); one small PutObject; two multipart parts
CONTEXT = {"department": "tests", "purpose": "interop"}


def official(endpoint, key_id: str, version: int = 3, s3=None):
    """The official client on `endpoint` (or wrapping the given boto3 S3 client, whose events it hooks)."""
    if version == 3:
        config = s3ec.S3EncryptionClientConfig(
            keyring=OfficialKmsKeyring(kms_client=endpoint.kms(), kms_key_id=key_id),
            commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT)
    else:
        config = s3ec.S3EncryptionClientConfig(
            keyring=OfficialKmsKeyring(kms_client=endpoint.kms(), kms_key_id=key_id),
            encryption_algorithm=AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF,
            commitment_policy=CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT)
    return s3ec.S3EncryptionClient(wrapped_s3_client=s3 or endpoint.s3(), config=config)


def ours(endpoint, key_id: str, **kw) -> CseClient:
    return CseClient(endpoint.s3(), KmsKeyring(endpoint.kms(), key_id), part_size=5 * 1024 * 1024, **kw)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("location", ["metadata", "instruction-file"])
def test_official_reads_what_we_wrote(endpoint, bucket, kms_key_id, size, version, location):
    data = os.urandom(size)
    put = ours(endpoint, kms_key_id, format_version=version, envelope_location=location).put_object(
        bucket, "obj", io.BytesIO(data), context=CONTEXT, size=size)
    assert put.parts == (2 if size > 5 * 1024 * 1024 else 0)
    got = official(endpoint, kms_key_id).get_object(Bucket=bucket, Key="obj", EncryptionContext=CONTEXT)
    assert got["Body"].read() == data


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("version", [2, 3])
def test_we_read_what_official_wrote(endpoint, bucket, kms_key_id, size, version):
    data = os.urandom(size)
    official(endpoint, kms_key_id, version).put_object(Bucket=bucket, Key="obj", Body=data,
                                                       EncryptionContext=CONTEXT)
    stored = endpoint.s3().head_object(Bucket=bucket, Key="obj")["Metadata"]
    assert ("x-amz-c" in stored) == (version == 3)
    assert ours(endpoint, kms_key_id).get_bytes(bucket, "obj", context=CONTEXT) == data


def test_we_read_official_multipart_upload(endpoint, bucket, kms_key_id):
    data = os.urandom(11 * 1024 * 1024)
    client = official(endpoint, kms_key_id)
    client.upload_fileobj(io.BytesIO(data), bucket, "mpu", multipart_chunksize=5 * 1024 * 1024,
                          EncryptionContext=CONTEXT)
    assert ours(endpoint, kms_key_id).get_bytes(bucket, "mpu", context=CONTEXT) == data


def test_official_reads_after_we_rewrap(endpoint, bucket, kms_key_id, other_kms_key_id):
    data = os.urandom(3000)
    official(endpoint, kms_key_id).put_object(Bucket=bucket, Key="obj", Body=data, EncryptionContext=CONTEXT)
    result = ours(endpoint, kms_key_id).rewrap(bucket, "obj", KmsKeyring(endpoint.kms(), other_kms_key_id),
                                               context=CONTEXT, new_context={"moved": "yes"})
    assert result.envelope_location == "metadata"
    got = official(endpoint, other_kms_key_id).get_object(Bucket=bucket, Key="obj", EncryptionContext={"moved": "yes"})
    assert got["Body"].read() == data
