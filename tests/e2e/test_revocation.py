"""Revocation under S3 Bucket Keys is prompt and audited: real boto3 against the proxy, both backends.

The hostile review's case: with a bucket key cached, DisableKey, ScheduleKeyDeletion, a key policy
turned to Deny or a revoked grant left SSE-KMS objects readable and writable for up to 300 s, and
those uses left no audit record. Here the very next GET and PUT after the change is refused (well
within a second), and the audit log holds the cached uses, counted per second, refusals included.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .conftest import ACCOUNT, OTHER_ACCESS_KEY, OTHER_SECRET_KEY
from .sse_helpers import single_attempt_client

ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"


def audit(proxy: Any) -> list[dict[str, Any]]:
    path = proxy.data_dir / "kms" / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def bucket_key_put(s3: Any, bucket: str, name: str, key_id: str) -> None:
    s3.put_object(Bucket=bucket, Key=name, Body=b"under a bucket key " + name.encode(), ServerSideEncryption="aws:kms",
                  SSEKMSKeyId=key_id, BucketKeyEnabled=True)


def refused(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as e:
        call()
    return str(e.value.response["Error"]["Code"])


def _disable(kms: Any, key_id: str, grant: str | None) -> None:
    kms.disable_key(KeyId=key_id)


def _schedule_deletion(kms: Any, key_id: str, grant: str | None) -> None:
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)


def _deny_policy(kms: Any, key_id: str, grant: str | None) -> None:
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": ALICE}, "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"},
    ]}))


def _revoke_grant(kms: Any, key_id: str, grant: str | None) -> None:
    kms.revoke_grant(KeyId=key_id, GrantId=grant)


REVOCATIONS = [
    # (change, whose requests it stops (bob: through a grant only), the S3 error code of a refused GET and PUT)
    (_disable, "alice", "KMS.DisabledException"),
    (_schedule_deletion, "alice", "KMS.KMSInvalidStateException"),
    (_deny_policy, "alice", "AccessDenied"),
    (_revoke_grant, "bob", "AccessDenied"),
]


@pytest.mark.parametrize(("change", "user", "code"), REVOCATIONS, ids=["DisableKey", "ScheduleKeyDeletion",
                                                                      "PutKeyPolicy-Deny", "RevokeGrant"])
def test_the_next_get_and_put_after_a_revocation_are_refused(proxy: Any, change: Any, user: str, code: str) -> None:
    kms = proxy.client("kms")
    key_id = kms.create_key(Description="revocation")["KeyMetadata"]["KeyId"]
    grant = None
    if user == "bob":  # bob has no place in the key policy: a grant is all he has
        grant = kms.create_grant(KeyId=key_id, GranteePrincipal=BOB,
                                 Operations=["GenerateDataKey", "Decrypt", "Encrypt"])["GrantId"]
        s3 = single_attempt_client(proxy, access_key=OTHER_ACCESS_KEY, secret_key=OTHER_SECRET_KEY)
    else:
        s3 = single_attempt_client(proxy)
    bucket = f"revoke-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    bucket_key_put(s3, bucket, "first", key_id)  # the bucket key is made here, and cached for reads and writes
    assert s3.get_object(Bucket=bucket, Key="first")["Body"].read() == b"under a bucket key first"  # cached read
    bucket_key_put(s3, bucket, "second", key_id)  # cached write
    change(kms, key_id, grant)
    changed = time.monotonic()
    assert refused(lambda: s3.get_object(Bucket=bucket, Key="first")) == code
    assert refused(lambda: bucket_key_put(s3, bucket, "third", key_id)) == code
    assert time.monotonic() - changed < 1.0
    assert refused(lambda: s3.get_object(Bucket=bucket, Key="second")) == code


def test_cached_bucket_key_uses_are_audited_with_counts(proxy: Any) -> None:
    kms, s3 = proxy.client("kms"), single_attempt_client(proxy)
    key = kms.create_key(Description="audited uses")["KeyMetadata"]
    bucket = f"audited-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    for i in range(6):  # one GenerateDataKey, then five uses of the cached bucket key
        bucket_key_put(s3, bucket, f"o{i}", key["KeyId"])
    for i in range(6):  # six cached reads (the write cached the bucket key for reading too)
        s3.get_object(Bucket=bucket, Key=f"o{i}")["Body"].read()
    kms.disable_key(KeyId=key["KeyId"])
    refused(lambda: s3.get_object(Bucket=bucket, Key="o0"))

    def uses() -> dict[tuple[str, str | None], int]:
        out: dict[tuple[str, str | None], int] = {}
        for r in audit(proxy):
            if r["eventName"] == "BucketKeyUse" and r["requestParameters"]["bucketName"] == bucket:
                assert r["userIdentity"]["arn"] == ALICE and r["resources"][0]["ARN"] == key["Arn"]
                assert r["userIdentity"]["invokedBy"] == "s3.us-east-1.amazonaws.com"
                tally = (r["requestParameters"]["operation"], r.get("errorCode"))
                out[tally] = out.get(tally, 0) + r["additionalEventData"]["useCount"]
        return out

    deadline = time.monotonic() + 10
    want = {("GenerateDataKey", None): 5, ("Decrypt", None): 6}
    while uses() != want and time.monotonic() < deadline:  # written once their second is over
        time.sleep(0.2)
    assert uses() == want
    calls = [(r["eventName"], r.get("errorCode")) for r in audit(proxy) if r["eventName"] in ("GenerateDataKey", "Decrypt")
             and r["requestParameters"]["encryptionContext"]["aws:s3:arn"] == f"arn:aws:s3:::{bucket}"]
    # one KMS call made the bucket key; the uses were counted, not called. DisableKey dropped the cached key at
    # once, so the refused GET asked the KMS again, which audited its refusal as the Decrypt it was
    assert calls == [("GenerateDataKey", None), ("Decrypt", "DisabledException")]
