"""Bucket default encryption: Put/Get/DeleteBucketEncryption with the full rule, how the default
applies, BlockedEncryptionTypes, and that the configuration lives in the backend (a restarted proxy
and a second proxy in front of the same moto both see it).

Contract: reference s3-sse-and-kms.md §1.4 (XML shape, one rule, explicit header beats the default,
blocked SSE-C writes get 403 while reads keep working, modern AWS reports the SSE-S3 default)."""

from __future__ import annotations

import pytest

from .conftest import start_peer, start_proxy
from .sse_helpers import CustomerKey, assert_sealed, expect_error, kms_client, unique

SSE_S3_DEFAULT = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False}


def _rule(s3, bucket) -> dict:
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert len(rules) == 1  # only one rule is allowed
    return rules[0]


def test_unconfigured_bucket_reports_sse_s3(s3, bucket):
    """Since 2023-01-05 every bucket has SSE-S3; modern AWS reports it rather than 404 (§1.4)."""
    assert _rule(s3, bucket) == SSE_S3_DEFAULT


def test_kms_default_with_bucket_key_and_blocked_ssec(proxy, s3, bucket):
    kms = kms_client(proxy)
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    ssec = CustomerKey.new()
    s3.put_object(Bucket=bucket, Key="ssec-before", Body=b"old", **ssec.args())  # written before SSE-C is blocked
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
            "BucketKeyEnabled": True, "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]}}
    put = s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert _rule(s3, bucket) == rule

    # no header: the default applies, bucket key included
    out = s3.put_object(Bucket=bucket, Key="defaulted", Body=b"d")
    assert out["ServerSideEncryption"] == "aws:kms" and out["SSEKMSKeyId"] == key_arn and out["BucketKeyEnabled"] is True
    assert_sealed(proxy, bucket, "defaulted", b"d", "aws:kms")
    mpu = s3.create_multipart_upload(Bucket=bucket, Key="defaulted-mpu")
    assert mpu["ServerSideEncryption"] == "aws:kms" and mpu["SSEKMSKeyId"] == key_arn
    s3.abort_multipart_upload(Bucket=bucket, Key="defaulted-mpu", UploadId=mpu["UploadId"])
    # an explicit header beats the default
    explicit = s3.put_object(Bucket=bucket, Key="explicit", Body=b"e", ServerSideEncryption="AES256")
    assert explicit["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in explicit
    assert_sealed(proxy, bucket, "explicit", b"e", "AES256")
    # a copy without SSE headers gets the default too (§1.7)
    copied = s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "explicit"})
    assert copied["ServerSideEncryption"] == "aws:kms" and copied["SSEKMSKeyId"] == key_arn

    # SSE-C writes are blocked with 403 AccessDenied (checked before the key); reads still work
    for call in (
        lambda: s3.put_object(Bucket=bucket, Key="ssec-after", Body=b"x", **ssec.args()),
        lambda: s3.create_multipart_upload(Bucket=bucket, Key="ssec-after", **ssec.args()),
        lambda: s3.copy_object(Bucket=bucket, Key="ssec-after", CopySource={"Bucket": bucket, "Key": "explicit"}, **ssec.args()),
        lambda: s3.put_object(Bucket=bucket, Key="ssec-after", Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=b"short"),
    ):
        expect_error(call, 403, "AccessDenied")
    assert s3.get_object(Bucket=bucket, Key="ssec-before", **ssec.args())["Body"].read() == b"old"
    assert s3.head_object(Bucket=bucket, Key="ssec-before", **ssec.args())["ContentLength"] == 3
    # ... and an SSE-C object may still be copied out of it into a non-SSE-C object
    s3.copy_object(Bucket=bucket, Key="ssec-out", CopySource={"Bucket": bucket, "Key": "ssec-before"}, **ssec.copy_source_args())
    assert s3.get_object(Bucket=bucket, Key="ssec-out")["Body"].read() == b"old"

    # delete: 204, then the SSE-S3 default again and SSE-C allowed
    deleted = s3.delete_bucket_encryption(Bucket=bucket)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert _rule(s3, bucket) == SSE_S3_DEFAULT
    assert s3.put_object(Bucket=bucket, Key="after", Body=b"a")["ServerSideEncryption"] == "AES256"
    s3.put_object(Bucket=bucket, Key="ssec-after", Body=b"x", **ssec.args())


@pytest.mark.parametrize("rule", [
    # a KMSMasterKeyID is only valid with aws:kms
    {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256", "KMSMasterKeyID": "alias/aws/s3"}},
    # an algorithm outside the enum
    {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES512"}},
    # an encryption type outside NONE | SSE-C
    {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BlockedEncryptionTypes": {"EncryptionType": ["SSE-KMS"]}},
], ids=["kms-key-with-aes256", "unknown-algorithm", "unknown-blocked-type"])
def test_invalid_configurations_are_refused(s3, bucket, rule):
    expect_error(lambda: s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]}), 400, None)
    assert _rule(s3, bucket) == SSE_S3_DEFAULT


def test_two_rules_are_refused(s3, bucket):
    """Only one rule is allowed (§1.4; MinIO enforces the same)."""
    rules = [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}] * 2
    expect_error(lambda: s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules}), 400, None)


def test_dsse_default_is_not_implemented(s3, bucket):
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms:dsse"}}
    expect_error(lambda: s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]}),
                 501, "NotImplemented")


@pytest.mark.parametrize("backend", ["fs", "s3"], ids=["fs-backend", "moto-backend"])
def test_configuration_survives_a_restart(tmp_path, moto_server, backend):
    """Principle 1: the configuration is in the backend; a restarted proxy on the same data dir applies it."""
    thread, endpoint = start_proxy(tmp_path, backend, moto_server)
    bucket = unique("restart")
    try:
        s3 = endpoint.client()
        s3.create_bucket(Bucket=bucket)
        key_arn = kms_client(endpoint).create_key()["KeyMetadata"]["Arn"]
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
                "BucketKeyEnabled": False, "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]}}
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
        s3.put_object(Bucket=bucket, Key="before", Body=b"before restart")
    finally:
        thread.stop()
    thread, endpoint = start_proxy(tmp_path, backend, moto_server)
    try:
        s3 = endpoint.client()
        assert _rule(s3, bucket) == rule
        assert s3.put_object(Bucket=bucket, Key="after", Body=b"x")["SSEKMSKeyId"] == key_arn
        expect_error(lambda: s3.put_object(Bucket=bucket, Key="c", Body=b"x", **CustomerKey.new().args()), 403, "AccessDenied")
        assert s3.get_object(Bucket=bucket, Key="before")["Body"].read() == b"before restart"
    finally:
        thread.stop()


def test_second_proxy_on_the_same_backend_sees_the_configuration(tmp_path, moto_server):
    """Two proxies in front of one moto sharing one keystore, as scale-out requires (the records are
    sealed under its integrity key, FORMAT.md §15); a proxy on another keystore cannot read them."""
    (tmp_path / "a").mkdir()
    (tmp_path / "c").mkdir()
    first, a = start_proxy(tmp_path / "a", "s3", moto_server)
    second, b = start_peer(tmp_path / "a", "s3", moto_server)
    stranger, c = start_proxy(tmp_path / "c", "s3", moto_server)
    try:
        bucket = unique("shared")
        a.client().create_bucket(Bucket=bucket)
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False,
                "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]}}
        a.client().put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
        assert _rule(b.client(), bucket) == rule
        expect_error(lambda: b.client().put_object(Bucket=bucket, Key="c", Body=b"x", **CustomerKey.new().args()),
                     403, "AccessDenied")
        expect_error(lambda: c.client().get_bucket_encryption(Bucket=bucket), 500, "InternalError")
        a.client().delete_bucket_encryption(Bucket=bucket)
        # the second proxy may cache the record briefly (internal.py: ttl 5 s); it is never wrong after that
        # window, but this test asserts only what is visible without waiting: the first proxy's own view
        assert _rule(a.client(), bucket) == SSE_S3_DEFAULT
    finally:
        stranger.stop()
        second.stop()
        first.stop()
