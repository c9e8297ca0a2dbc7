"""SSE-KMS through the proxy: key id forms, the AWS-managed aws/s3 key, encryption context, key
policies, key states, S3 Bucket Keys and the KMS audit trail.

Contract: reference s3-sse-and-kms.md §1.1 (key id forms, context rules), §1.2 (KMS.* error rows),
§1.6 (Bucket Keys), §2.4 (CloudTrail shape: the context shows aws:s3:arn; no plaintext or ciphertext)."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from .conftest import ACCESS_KEY, OTHER_ACCESS_KEY, OTHER_SECRET_KEY
from .sse_helpers import account_wide_policy, assert_sealed, bob_arn, body_of, expect_error, kms_client

KEY_ARN_PREFIX = "arn:aws:kms:us-east-1:000000000000:key/"


@pytest.fixture
def kms(proxy):
    return kms_client(proxy)


@pytest.fixture
def key(kms) -> dict:
    """A fresh symmetric key every user of the account may use (so bob's denials come from an explicit Deny)."""
    meta = kms.create_key(Description="sse tests")["KeyMetadata"]
    kms.put_key_policy(KeyId=meta["KeyId"], PolicyName="default", Policy=account_wide_policy())
    return meta


def _audit(proxy) -> list[dict]:
    path = proxy.data_dir / "kms" / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("form", ["id", "arn", "alias", "alias-arn"])
def test_put_by_every_key_id_form(proxy, s3, bucket, kms, key, form):
    """S3 takes a key ID, key ARN, alias or alias ARN (§1.1) and echoes the key ARN."""
    alias = f"alias/sse-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    key_id = {"id": key["KeyId"], "arn": key["Arn"], "alias": alias,
              "alias-arn": f"arn:aws:kms:us-east-1:000000000000:{alias}"}[form]
    data = body_of(1000, form)
    put = s3.put_object(Bucket=bucket, Key=form, Body=data, ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)
    assert put["ServerSideEncryption"] == "aws:kms" and put["SSEKMSKeyId"] == key["Arn"]
    got = s3.get_object(Bucket=bucket, Key=form)
    assert got["Body"].read() == data and got["SSEKMSKeyId"] == key["Arn"]
    stored = assert_sealed(proxy, bucket, form, data, "aws:kms")
    assert stored.metadata["s3proxy-kid"] == key["Arn"]


def test_default_key_is_aws_managed_alias_aws_s3(proxy, s3, bucket, kms):
    """aws:kms without a key id uses the AWS-managed aws/s3 key, created on first use (§1.1)."""
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"data", ServerSideEncryption="aws:kms")
    aliases = {a["AliasName"]: a for a in kms.list_aliases()["Aliases"]}
    assert "alias/aws/s3" in aliases
    assert put["SSEKMSKeyId"] == KEY_ARN_PREFIX + aliases["alias/aws/s3"]["TargetKeyId"]
    assert kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyManager"] == "AWS"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"


def test_encryption_context_is_stored_echoed_on_writes_and_replayed(proxy, s3, bucket, key):
    """§1.1: the context is echoed on PUT/Copy, never on GET/HEAD, stored, and replayed to KMS on GET
    (with aws:s3:arn added); CopyObject does not copy the source's context."""
    ctx = base64.b64encode(json.dumps({"project": "sse", "team": "blue"}).encode()).decode()
    put = s3.put_object(Bucket=bucket, Key="ctx", Body=b"hello", ServerSideEncryption="aws:kms", SSEKMSKeyId=key["KeyId"],
                        SSEKMSEncryptionContext=ctx)
    assert put["SSEKMSEncryptionContext"] == ctx
    got = s3.get_object(Bucket=bucket, Key="ctx")
    assert got["Body"].read() == b"hello"
    assert "SSEKMSEncryptionContext" not in got and "SSEKMSEncryptionContext" not in s3.head_object(Bucket=bucket, Key="ctx")
    stored = assert_sealed(proxy, bucket, "ctx", b"hello", "aws:kms")
    assert stored.metadata["s3proxy-ctx"] == ctx
    decrypts = [r for r in _audit(proxy) if r["eventName"] == "Decrypt"
                and (r["requestParameters"] or {}).get("encryptionContext", {}).get("aws:s3:arn") == f"arn:aws:s3:::{bucket}/ctx"]
    assert decrypts and decrypts[-1]["requestParameters"]["encryptionContext"] == {
        "project": "sse", "team": "blue", "aws:s3:arn": f"arn:aws:s3:::{bucket}/ctx"}
    # a copy without a context has none; with a new one, echoes the new one
    plain = s3.copy_object(Bucket=bucket, Key="ctx-copy", CopySource={"Bucket": bucket, "Key": "ctx"},
                           ServerSideEncryption="aws:kms", SSEKMSKeyId=key["KeyId"])
    assert "SSEKMSEncryptionContext" not in plain
    other = base64.b64encode(json.dumps({"project": "copy"}).encode()).decode()
    copied = s3.copy_object(Bucket=bucket, Key="ctx-copy2", CopySource={"Bucket": bucket, "Key": "ctx"},
                            ServerSideEncryption="aws:kms", SSEKMSKeyId=key["KeyId"], SSEKMSEncryptionContext=other)
    assert copied["SSEKMSEncryptionContext"] == other
    for k in ("ctx-copy", "ctx-copy2"):
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == b"hello"


def test_key_policy_deny_applies_to_the_caller(proxy, bucket, kms, key):
    """S3 calls KMS as the requester: a key policy that denies bob fails his SSE-KMS PUT and GET with
    403 AccessDenied, while alice keeps working."""
    alice, bob = proxy.client(), proxy.client(access_key=OTHER_ACCESS_KEY, secret_key=OTHER_SECRET_KEY)
    args = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key["KeyId"]}
    bob.put_object(Bucket=bucket, Key="bob-before", Body=b"b", **args)  # allowed while the policy allows the account
    alice.put_object(Bucket=bucket, Key="alice", Body=b"a", **args)
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=account_wide_policy(deny_user_arn=bob_arn()))
    expect_error(lambda: bob.put_object(Bucket=bucket, Key="bob-after", Body=b"b", **args), 403, "AccessDenied")
    expect_error(lambda: bob.get_object(Bucket=bucket, Key="alice"), 403, "AccessDenied")
    expect_error(lambda: bob.get_object(Bucket=bucket, Key="bob-before"), 403, "AccessDenied")
    expect_error(lambda: bob.create_multipart_upload(Bucket=bucket, Key="bob-mpu", **args), 403, "AccessDenied")
    alice.put_object(Bucket=bucket, Key="alice2", Body=b"a2", **args)
    assert alice.get_object(Bucket=bucket, Key="bob-before")["Body"].read() == b"b"
    assert alice.get_object(Bucket=bucket, Key="alice2")["Body"].read() == b"a2"
    # bob's SSE-S3 objects do not involve his KMS permissions
    bob.put_object(Bucket=bucket, Key="bob-sse-s3", Body=b"s")
    assert bob.get_object(Bucket=bucket, Key="bob-sse-s3")["Body"].read() == b"s"


def test_disabled_key_fails_writes_and_reads_until_reenabled(s3, bucket, kms, key):
    """§1.2 [L]: a disabled key gives 400 KMS.DisabledException on PUT and GET; enabling it again
    makes its objects readable."""
    args = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key["KeyId"]}
    s3.put_object(Bucket=bucket, Key="k", Body=b"before", **args)
    kms.disable_key(KeyId=key["KeyId"])
    disabled = f"{key['Arn']} is disabled"
    expect_error(lambda: s3.put_object(Bucket=bucket, Key="k2", Body=b"x", **args), 400, "KMS.DisabledException", disabled)
    expect_error(lambda: s3.get_object(Bucket=bucket, Key="k"), 400, "KMS.DisabledException", disabled)
    expect_error(lambda: s3.create_multipart_upload(Bucket=bucket, Key="m", **args), 400, "KMS.DisabledException")
    expect_error(lambda: s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "k"}), 400,
                 "KMS.DisabledException")
    kms.enable_key(KeyId=key["KeyId"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"before"


def test_key_pending_deletion_fails_until_cancelled_and_enabled(s3, bucket, kms, key):
    """§1.2 [L]: a key pending deletion gives 400 KMS.KMSInvalidStateException; CancelKeyDeletion leaves
    it Disabled (§2.2), and enabling it makes its objects readable again."""
    args = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key["KeyId"]}
    s3.put_object(Bucket=bucket, Key="k", Body=b"keep", **args)
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    pending = f"{key['Arn']} is pending deletion"
    expect_error(lambda: s3.get_object(Bucket=bucket, Key="k"), 400, "KMS.KMSInvalidStateException", pending)
    expect_error(lambda: s3.put_object(Bucket=bucket, Key="k2", Body=b"x", **args), 400, "KMS.KMSInvalidStateException", pending)
    kms.cancel_key_deletion(KeyId=key["KeyId"])
    expect_error(lambda: s3.get_object(Bucket=bucket, Key="k"), 400, "KMS.DisabledException")
    kms.enable_key(KeyId=key["KeyId"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"keep"


@pytest.mark.parametrize("key_id", [
    str(uuid.UUID(int=1)),  # a well-formed id no key has
    "fake-key-id",  # not a key id at all ([L] "Invalid keyId 'fake-key-id'")
    f"{KEY_ARN_PREFIX}{uuid.UUID(int=2)}",  # an ARN of no key
    "alias/no-such-alias",  # an alias nobody created
])
def test_unknown_key_is_not_found_on_put_create_and_copy(s3, bucket, key_id):
    """§1.2 [L]: 400 KMS.NotFoundException, also on CreateMultipartUpload and CopyObject."""
    args = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id}
    expect_error(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", **args), 400, "KMS.NotFoundException")
    expect_error(lambda: s3.create_multipart_upload(Bucket=bucket, Key="k", **args), 400, "KMS.NotFoundException")
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    expect_error(lambda: s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "src"}, **args),
                 400, "KMS.NotFoundException")


def test_bucket_keys_echo_and_cut_kms_calls(proxy, s3, bucket, key):
    """§1.6: BucketKeyEnabled echoes x-amz-server-side-encryption-bucket-key-enabled on PUT, HEAD and GET,
    works across many objects, and the KMS context is the bucket ARN with far fewer KMS requests."""
    args = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key["KeyId"], "BucketKeyEnabled": True}
    bodies = {f"bk-{i}": body_of(100 + i, str(i)) for i in range(20)}
    for name, data in bodies.items():
        put = s3.put_object(Bucket=bucket, Key=name, Body=data, **args)
        assert put["BucketKeyEnabled"] is True and put["SSEKMSKeyId"] == key["Arn"]
    for name, data in bodies.items():
        got = s3.get_object(Bucket=bucket, Key=name)
        assert got["Body"].read() == data and got["BucketKeyEnabled"] is True
    assert s3.head_object(Bucket=bucket, Key="bk-0")["BucketKeyEnabled"] is True
    assert_sealed(proxy, bucket, "bk-3", bodies["bk-3"], "aws:kms")
    events = [r for r in _audit(proxy) if any(res["ARN"] == key["Arn"] for res in r["resources"])
              and r["eventName"] in ("GenerateDataKey", "Decrypt")]
    assert 1 <= len(events) < len(bodies)  # one bucket key, not one data key per object
    assert {e["requestParameters"]["encryptionContext"]["aws:s3:arn"] for e in events} == {f"arn:aws:s3:::{bucket}"}
    # objects written without the bucket key in the same bucket do not echo it
    put = s3.put_object(Bucket=bucket, Key="no-bk", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=key["KeyId"])
    assert "BucketKeyEnabled" not in put


def test_audit_log_records_data_path_calls_without_key_material(proxy, s3, bucket, key):
    """§2.4: each SSE-KMS PUT/GET is a GenerateDataKey/Decrypt event naming the caller's access key, the
    key ARN and the object's aws:s3:arn context; plaintext and ciphertext never appear."""
    s3.put_object(Bucket=bucket, Key="audited", Body=b"secret-body", ServerSideEncryption="aws:kms", SSEKMSKeyId=key["KeyId"])
    s3.get_object(Bucket=bucket, Key="audited")["Body"].read()
    arn = f"arn:aws:s3:::{bucket}/audited"
    events = [r for r in _audit(proxy) if (r["requestParameters"] or {}).get("encryptionContext", {}).get("aws:s3:arn") == arn]
    assert [e["eventName"] for e in events] == ["GenerateDataKey", "Decrypt"]
    for e in events:
        assert e["userIdentity"]["accessKeyId"] == ACCESS_KEY
        assert [r["ARN"] for r in e["resources"]] == [key["Arn"]]
        assert e["eventSource"] == "kms.amazonaws.com" and "errorCode" not in e
    wrapped = assert_sealed(proxy, bucket, "audited", b"secret-body", "aws:kms").metadata["s3proxy-key"]
    text = (proxy.data_dir / "kms" / "audit.log").read_text()
    assert wrapped not in text and "secret-body" not in text
    assert "Plaintext" not in text and "CiphertextBlob" not in text


def test_ssec_key_never_reaches_the_logs(proxy, bucket, caplog):
    """The customer key is never logged, not even when a request with it fails."""
    from .sse_helpers import CustomerKey

    s3 = proxy.client()
    key, other = CustomerKey.new(), CustomerKey.new()
    with caplog.at_level("DEBUG"):
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", **key.args())
        expect_error(lambda: s3.get_object(Bucket=bucket, Key="k", **other.args()), 403, "AccessDenied")
    # the proxy's own loggers (botocore's client-side debug log shows what the client sent, by design)
    proxy_lines = [r.getMessage() for r in caplog.records if r.name.startswith(("s3proxy", "aiohttp"))]
    assert proxy_lines  # the access log at least: the proxy did log these requests
    text = "\n".join(proxy_lines) + (proxy.data_dir / "kms" / "audit.log").read_text()
    for k in (key, other):
        assert k.b64 not in text and k.raw.hex() not in text


def test_dsse_is_not_implemented(s3, bucket):
    """aws:kms:dsse is a documented non-goal: 501 NotImplemented on PUT, Create and Copy, nothing written."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    for call in (
        lambda: s3.put_object(Bucket=bucket, Key="d", Body=b"x", ServerSideEncryption="aws:kms:dsse"),
        lambda: s3.create_multipart_upload(Bucket=bucket, Key="d", ServerSideEncryption="aws:kms:dsse"),
        lambda: s3.copy_object(
            Bucket=bucket, Key="d", CopySource={"Bucket": bucket, "Key": "src"}, ServerSideEncryption="aws:kms:dsse"
        ),
    ):
        expect_error(call, 501, "NotImplemented")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["src"]
