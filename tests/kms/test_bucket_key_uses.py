"""Cached S3 Bucket Keys, in-process: every use authorized against the key as it is now, counted for the
audit, and dropped from the cache the moment the key changes.

The two guards are tested apart: with the cache *not* told of changes, a use is still refused by the
per-use check; with it told, the entries are gone before any request comes. The SSE-KMS mode runs as
on the data path (SseKms over a key service with a memory keystore and audit sink).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from s3proxy.kms.caller import Caller
from s3proxy.kms.errors import AccessDeniedException, DisabledException
from s3proxy.kms.service import KeyService
from s3proxy.modes.base import KEY_KMS_ID, KEY_WRAPPED, ObjectRef, b64decode
from s3proxy.modes.kms_modes import BucketKeyCache, SseKms
from tests.kms.helpers import memory_data_keys

S3 = "s3.us-east-1.amazonaws.com"
ALICE = Caller("AKIAALICE", "alice", "000000000000", source_ip="10.0.0.1", via_service=S3, secure=True, region="us-east-1")
REF = ObjectRef("bucket", "some/key")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def uses(svc: KeyService) -> list[dict[str, Any]]:
    svc.auditor.flush_uses()
    return [r for r in svc.audit.records if r["eventName"] == "BucketKeyUse"]  # type: ignore[attr-defined]


def test_a_cached_use_is_refused_by_the_key_as_it_is_now_even_if_the_cache_was_not_told(svc_and_mode: Any) -> None:
    svc, mode, kid = svc_and_mode
    sealed = run(mode.seal(REF))
    run(mode.unseal(REF, sealed.fields))
    svc.disable_key(ALICE, kid)  # the cache is not subscribed here: only the per-use check stands
    with pytest.raises(DisabledException):
        run(mode.unseal(REF, sealed.fields))
    with pytest.raises(DisabledException):
        run(mode.seal(ObjectRef("bucket", "other")))
    tallies = {(r["requestParameters"]["operation"], r.get("errorCode")): r["additionalEventData"]["useCount"]
               for r in uses(svc)}
    assert tallies == {("Decrypt", None): 1, ("Decrypt", "DisabledException"): 1, ("GenerateDataKey", "DisabledException"): 1}


def test_a_policy_change_refuses_the_next_cached_use(svc_and_mode: Any) -> None:
    svc, mode, kid = svc_and_mode
    sealed = run(mode.seal(REF))
    svc.put_key_policy(ALICE, kid, json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ALICE.arn}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::bucket"}}}]}))
    with pytest.raises(AccessDeniedException) as e:
        run(mode.unseal(REF, sealed.fields))
    assert "explicit deny" in str(e.value)
    run(mode.seal(ObjectRef("bucket", "still-writable")))  # the Deny is on Decrypt: writes go on


def test_the_cache_drops_a_key_as_soon_as_the_kms_says_it_changed() -> None:
    svc = memory_data_keys()
    cache = BucketKeyCache()
    svc.subscribe(cache.forget_key)
    kid = svc.create_key(ALICE).key_id
    other = svc.create_key(ALICE).key_id
    mode = SseKms(svc, ALICE, kid, bucket_key=True, bucket_keys=cache)
    kept = SseKms(svc, ALICE, other, bucket_key=True, bucket_keys=cache)
    sealed, sealed_other = run(mode.seal(REF)), run(kept.seal(REF))
    arn = svc.key_arn(kid)
    assert cache.for_write("AKIAALICE", "bucket", kid) is not None
    svc.update_key_description(ALICE, kid, "any change to the key")
    assert cache.for_write("AKIAALICE", "bucket", kid) is None
    assert cache.for_read("AKIAALICE", b64decode(sealed.fields[KEY_WRAPPED]), None) is None
    assert cache.for_write("AKIAALICE", "bucket", other) is not None  # another key's entries stay
    assert cache.for_read("AKIAALICE", b64decode(sealed_other.fields[KEY_WRAPPED]), None) is not None
    assert arn != svc.key_arn(other)


def test_an_alias_moved_to_another_key_makes_a_new_bucket_key_uncounted() -> None:
    svc = memory_data_keys()
    first, second = svc.create_key(ALICE).key_id, svc.create_key(ALICE).key_id
    svc.create_alias(ALICE, "alias/app", first)
    mode = SseKms(svc, ALICE, "alias/app", bucket_key=True, bucket_keys=BucketKeyCache())
    assert run(mode.seal(REF)).fields[KEY_KMS_ID] == svc.key_arn(first)
    assert run(mode.seal(REF)).fields[KEY_KMS_ID] == svc.key_arn(first)  # a cached use
    svc.update_alias(ALICE, "alias/app", second)
    assert run(mode.seal(ObjectRef("bucket", "after"))).fields[KEY_KMS_ID] == svc.key_arn(second)
    counted = {r["requestParameters"]["keyId"]: r["additionalEventData"]["useCount"] for r in uses(svc)}
    assert counted == {svc.key_arn(first): 1}  # the second seal under `first`; the move was no use


def test_uses_are_tallied_per_second_into_one_record_each() -> None:
    now = [1_000_000.2]
    svc = KeyService.create(*_memory(), root_key=bytes(32), clock=lambda: now[0])
    kid = svc.create_key(ALICE).key_id
    mode = SseKms(svc, ALICE, kid, bucket_key=True, bucket_keys=BucketKeyCache())
    run(mode.seal(REF))
    for _ in range(100):
        run(mode.seal(REF))
    now[0] += 1.0  # the next second: the first use in it writes the previous second's tally
    run(mode.seal(REF))
    written = [r for r in svc.audit.records if r["eventName"] == "BucketKeyUse"]  # type: ignore[attr-defined]
    assert [r["additionalEventData"]["useCount"] for r in written] == [100]
    assert written[0]["eventTime"] == "1970-01-12T13:46:40Z" and written[0]["requestID"] is None
    assert written[0]["userIdentity"]["arn"] == ALICE.arn and written[0]["readOnly"] is False
    assert [r["additionalEventData"]["useCount"] for r in uses(svc)] == [100, 1]  # close/flush writes the rest


def test_a_failing_change_listener_is_logged_and_the_change_stands(caplog: Any) -> None:
    svc = memory_data_keys()

    def broken(arn: str) -> None:
        raise RuntimeError("listener bug")

    svc.subscribe(broken)
    kid = svc.create_key(ALICE).key_id
    with caplog.at_level(logging.ERROR):
        svc.disable_key(ALICE, kid)
    assert svc.describe_key(ALICE, kid).key_state == "Disabled"
    assert any("key-change listener failed" in r.getMessage() for r in caplog.records)


def test_every_change_that_can_revoke_is_announced() -> None:
    svc = memory_data_keys()
    told: list[str] = []
    unsubscribe = svc.subscribe(told.append)
    kid = svc.create_key(ALICE).key_id

    def announces(change: Callable[[], object]) -> bool:
        told.clear()
        change()
        return told != [] and set(told) == {kid}

    grant, _ = svc.create_grant(ALICE, kid, "arn:aws:iam::000000000000:user/bob", ["Decrypt"])
    assert announces(lambda: svc.revoke_grant(ALICE, kid, grant))
    grant, token = svc.create_grant(ALICE, kid, "arn:aws:iam::000000000000:user/bob", ["Decrypt"],
                                    retiring_principal=ALICE.arn)
    assert announces(lambda: svc.retire_grant(ALICE, grant_token=token))
    assert announces(lambda: svc.put_key_policy(ALICE, kid, svc.get_key_policy(ALICE, kid)))
    assert announces(lambda: svc.disable_key(ALICE, kid))
    assert announces(lambda: svc.schedule_key_deletion(ALICE, kid, 7))
    unsubscribe()
    told.clear()
    svc.cancel_key_deletion(ALICE, kid)
    assert told == []  # unsubscribed


@pytest.fixture
def svc_and_mode() -> tuple[KeyService, SseKms, str]:
    svc = memory_data_keys()
    kid = svc.create_key(ALICE).key_id
    return svc, SseKms(svc, ALICE, kid, bucket_key=True, bucket_keys=BucketKeyCache()), kid


def _memory() -> tuple[Any, Any]:
    from s3proxy.kms.audit import MemoryAuditSink
    from s3proxy.kms.keystore.memory import MemoryKeystore

    return MemoryKeystore(), MemoryAuditSink()

