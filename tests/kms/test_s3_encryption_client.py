"""The AWS S3 Encryption Client (Python v4) uses this KMS for client-side encryption, objects stored in moto."""

from __future__ import annotations

import gc
import warnings

import boto3
import pytest
from botocore.exceptions import ClientError

s3_encryption = pytest.importorskip("s3_encryption")
from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig  # noqa: E402
from s3_encryption.exceptions import S3EncryptionClientError  # noqa: E402
from s3_encryption.materials.kms_keyring import KmsKeyring  # noqa: E402


def test_s3ec_round_trip_through_our_kms(kms, moto_server, unique_bucket) -> None:
    kms_client = kms.client("alice")
    kid = kms_client.create_key(Description="s3ec")["KeyMetadata"]["KeyId"]
    def s3():  # type: ignore[no-untyped-def]
        return boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    raw = s3()  # the wrapped client gets decrypting hooks; this one sees what is at rest
    wrapped = s3()
    try:
        _round_trip(raw, wrapped, kms_client, kid, unique_bucket)
    finally:
        for c in (raw, wrapped, kms_client):
            c.close()


def _round_trip(raw, wrapped, kms_client, kid: str, unique_bucket: str) -> None:  # type: ignore[no-untyped-def]
    raw.create_bucket(Bucket=unique_bucket)
    client = S3EncryptionClient(wrapped, S3EncryptionClientConfig(keyring=KmsKeyring(kms_client=kms_client, kms_key_id=kid)))
    client.put_object(Bucket=unique_bucket, Key="doc", Body=b"client-side secret")
    stored = raw.get_object(Bucket=unique_bucket, Key="doc")
    assert b"client-side secret" not in stored["Body"].read()  # ciphertext at rest in moto
    assert "x-amz-3" in stored["Metadata"] or "x-amz-key-v2" in stored["Metadata"]  # wrapped by our KMS
    assert client.get_object(Bucket=unique_bucket, Key="doc")["Body"].read() == b"client-side secret"

    kms_client.disable_key(KeyId=kid)  # our KMS enforces key state: the object can no longer be opened
    with pytest.raises(S3EncryptionClientError) as e:
        client.get_object(Bucket=unique_bucket, Key="doc")["Body"].read()
    cause = e.value.__cause__
    assert isinstance(cause, ClientError) and cause.response["Error"]["Code"] == "DisabledException"
    # S3EC 4.0.0 leaves the failed GET's body (and its socket) open, reachable from the traceback;
    # collect it here so its ResourceWarning is not blamed on whichever test runs next.
    del e, cause
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
