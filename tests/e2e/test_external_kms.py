"""SSE-KMS through an external KMS (`kms_url`): a second s3proxy's KMS, and moto's KMS server.

Proxy A serves S3 with kms_url pointing at the external KMS; its SSE-KMS objects and bucket keys are
made and opened there (under A's own credential), SSE-S3 stays with A's internal service key. The
external side's audit log shows what A sent: the encryption context `aws:s3:arn` and the requester."""

from __future__ import annotations

import json
import os

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.e2e.conftest import ACCESS_KEY, REGION, SECRET_KEY, start_proxy


@pytest.fixture(scope="module")
def kms_side(tmp_path_factory):
    """The second s3proxy: only its KMS is used."""
    thread, endpoint = start_proxy(tmp_path_factory.mktemp("external-kms"), "fs", None)
    yield endpoint
    thread.stop()


def _front(tmp_path, url: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):
    (tmp_path / "front").mkdir(parents=True, mode=0o700)
    return start_proxy(tmp_path / "front", "fs", None, kms_url=url, kms_access_key=access_key, kms_secret_key=secret_key)


def _audit(endpoint) -> list[dict]:
    return [json.loads(line) for line in (endpoint.data_dir / "kms" / "audit.log").read_text().splitlines()]


def test_another_s3proxy_serves_sse_kms_and_bucket_keys(tmp_path, kms_side):
    remote = kms_side.client("kms")
    key = remote.create_key(Description="held by the other proxy")["KeyMetadata"]
    thread, front = _front(tmp_path, kms_side.url)
    try:
        s3 = front.client()
        s3.create_bucket(Bucket="ext")
        body = os.urandom(100_000)
        put = s3.put_object(Bucket="ext", Key="obj", Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId=key["Arn"],
                            SSEKMSEncryptionContext="eyJ0ZWFtIjoiYmx1ZSJ9")  # {"team":"blue"}
        assert put["SSEKMSKeyId"] == key["Arn"]
        s3.put_object(Bucket="ext", Key="bk", Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId=key["KeyId"],
                      BucketKeyEnabled=True)
        s3.put_object(Bucket="ext", Key="s3", Body=body, ServerSideEncryption="AES256")
        for name in ("obj", "bk", "s3"):
            assert s3.get_object(Bucket="ext", Key=name)["Body"].read() == body
        made = [r for r in _audit(kms_side) if r["eventName"] in ("GenerateDataKey", "Decrypt") and r.get("resources")
                and key["Arn"] in json.dumps(r["resources"])]
        contexts = {r["requestParameters"]["encryptionContext"]["aws:s3:arn"] for r in made}
        assert contexts == {"arn:aws:s3:::ext/obj", "arn:aws:s3:::ext"}  # the object's ARN; the bucket's with a bucket key
        obj = next(r for r in made if r["requestParameters"]["encryptionContext"]["aws:s3:arn"] == "arn:aws:s3:::ext/obj")
        assert obj["requestParameters"]["encryptionContext"]["team"] == "blue"
        assert "on behalf of arn:aws:iam::000000000000:user/alice from 127.0.0.1" in obj["userAgent"]
        assert obj["userIdentity"]["accessKeyId"] == ACCESS_KEY  # the front proxy's own credential signs
        assert not any("ext/s3" in json.dumps(r) for r in _audit(kms_side))  # SSE-S3 stays inside the front proxy
        # the external KMS decides: a disabled key there refuses reads and writes here, clearly; enabled, all is back
        remote.disable_key(KeyId=key["KeyId"])
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket="ext", Key="obj")
        assert e.value.response["Error"]["Code"] == "KMS.DisabledException"
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="ext", Key="new", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=key["Arn"])
        assert e.value.response["Error"]["Code"] == "KMS.DisabledException"
        remote.enable_key(KeyId=key["KeyId"])
        assert s3.get_object(Bucket="ext", Key="obj")["Body"].read() == body
        # the front proxy's own KMS has no such key: it was never asked
        with pytest.raises(ClientError) as e:
            front.client("kms").describe_key(KeyId=key["KeyId"])
        assert e.value.response["Error"]["Code"] == "NotFoundException"
    finally:
        thread.stop()


def test_unreachable_or_refusing_external_kms_loses_nothing(tmp_path, kms_side):
    key = kms_side.client("kms").create_key()["KeyMetadata"]["Arn"]
    thread, front = _front(tmp_path, kms_side.url, secret_key="not-the-secret")
    try:
        s3 = front.client()
        s3.create_bucket(Bucket="refused")
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="refused", Key="o", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
        assert e.value.response["Error"]["Code"] == "KMS.InvalidSignatureException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert s3.list_objects_v2(Bucket="refused")["KeyCount"] == 0
    finally:
        thread.stop()
    thread, front = _front(tmp_path / "down", "http://127.0.0.1:9")  # nothing listens on the discard port
    try:
        s3 = front.client()
        s3.create_bucket(Bucket="down")
        s3.put_object(Bucket="down", Key="o", Body=b"kept", ServerSideEncryption="AES256")
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="down", Key="o", Body=b"lost?", ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
        assert e.value.response["Error"]["Code"] == "KMS.DependencyTimeoutException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert s3.get_object(Bucket="down", Key="o")["Body"].read() == b"kept"
    finally:
        thread.stop()


def test_moto_kms_serves_sse_kms(tmp_path, moto_server):
    moto_kms = boto3.client("kms", endpoint_url=moto_server, region_name=REGION, aws_access_key_id="moto",
                            aws_secret_access_key="moto", config=Config(retries={"max_attempts": 1}))
    key = moto_kms.create_key(Description="in moto")["KeyMetadata"]
    thread, front = _front(tmp_path, moto_server, access_key="moto", secret_key="moto")
    try:
        s3 = front.client()
        s3.create_bucket(Bucket="moto-kms")
        body = os.urandom(70_000)
        for name, bucket_key in (("plain", False), ("bucket-key", True)):
            put = s3.put_object(Bucket="moto-kms", Key=name, Body=body, ServerSideEncryption="aws:kms",
                                SSEKMSKeyId=key["KeyId"], BucketKeyEnabled=bucket_key)
            assert put["SSEKMSKeyId"] == key["Arn"]
            assert s3.get_object(Bucket="moto-kms", Key=name)["Body"].read() == body
        with pytest.raises(ClientError) as e:  # moto's own answer for a key it does not hold, passed on
            s3.put_object(Bucket="moto-kms", Key="x", Body=b"x", ServerSideEncryption="aws:kms",
                          SSEKMSKeyId="11111111-2222-3333-4444-555555555555")
        assert e.value.response["Error"]["Code"] == "KMS.NotFoundException"
    finally:
        thread.stop()
