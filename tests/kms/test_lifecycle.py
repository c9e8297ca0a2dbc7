"""Key states, deletion after the waiting period (across restarts), rotation and aliases, through boto3."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3proxy.kms.lifecycle import ANY_STATE, CRYPTO, DISABLED, ENABLED, NOT_WHILE_PENDING, PENDING_DELETION, ROTATION, state_error

DAY = 86400.0


def code(e: pytest.ExceptionInfo[ClientError]) -> str:
    return e.value.response["Error"]["Code"]


def _calls(c: Any, kid: str, blob: bytes) -> dict[str, Callable[[], Any]]:
    """One representative call per operation, all on the key `kid`."""
    return {
        "Encrypt": lambda: c.encrypt(KeyId=kid, Plaintext=b"x"),
        "Decrypt": lambda: c.decrypt(CiphertextBlob=blob),
        "ReEncrypt": lambda: c.re_encrypt(CiphertextBlob=blob, DestinationKeyId=kid),
        "GenerateDataKey": lambda: c.generate_data_key(KeyId=kid, KeySpec="AES_256"),
        "GenerateDataKeyWithoutPlaintext": lambda: c.generate_data_key_without_plaintext(KeyId=kid, KeySpec="AES_256"),
        "GenerateDataKeyPair": lambda: c.generate_data_key_pair(KeyId=kid, KeyPairSpec="ECC_NIST_P256"),
        "GenerateDataKeyPairWithoutPlaintext": lambda: c.generate_data_key_pair_without_plaintext(
            KeyId=kid, KeyPairSpec="ECC_NIST_P256"
        ),
        "DescribeKey": lambda: c.describe_key(KeyId=kid),
        "UpdateKeyDescription": lambda: c.update_key_description(KeyId=kid, Description="d"),
        "TagResource": lambda: c.tag_resource(KeyId=kid, Tags=[{"TagKey": "t", "TagValue": "v"}]),
        "UntagResource": lambda: c.untag_resource(KeyId=kid, TagKeys=["t"]),
        "ListResourceTags": lambda: c.list_resource_tags(KeyId=kid),
        "GetKeyPolicy": lambda: c.get_key_policy(KeyId=kid, PolicyName="default"),
        "ListKeyPolicies": lambda: c.list_key_policies(KeyId=kid),
        "ListGrants": lambda: c.list_grants(KeyId=kid),
        "CreateGrant": lambda: c.create_grant(
            KeyId=kid, GranteePrincipal="arn:aws:iam::000000000000:user/bob", Operations=["Decrypt"]
        ),
        "EnableKeyRotation": lambda: c.enable_key_rotation(KeyId=kid),
        "DisableKeyRotation": lambda: c.disable_key_rotation(KeyId=kid),
        "GetKeyRotationStatus": lambda: c.get_key_rotation_status(KeyId=kid),
        "RotateKeyOnDemand": lambda: c.rotate_key_on_demand(KeyId=kid),
        "ListKeyRotations": lambda: c.list_key_rotations(KeyId=kid),
        "CreateAlias": lambda: c.create_alias(AliasName=f"alias/st-{kid}", TargetKeyId=kid),
        "EnableKey": lambda: c.enable_key(KeyId=kid),
        "DisableKey": lambda: c.disable_key(KeyId=kid),
        "ScheduleKeyDeletion": lambda: c.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7),
        "CancelKeyDeletion": lambda: c.cancel_key_deletion(KeyId=kid),
        "PutKeyPolicy": lambda: c.put_key_policy(
            KeyId=kid, PolicyName="default", Policy=c.get_key_policy(KeyId=kid, PolicyName="default")["Policy"]
        ),
    }


def _put_in_state(c: Any, kid: str, state: str) -> None:
    if state == DISABLED:
        c.disable_key(KeyId=kid)
    elif state == PENDING_DELETION:
        c.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)


@pytest.mark.parametrize("state", [ENABLED, DISABLED, PENDING_DELETION])
def test_state_table(alice, state: str) -> None:
    """Each operation in each state gives what the AWS key-state table says (success, or its exact error)."""
    names = list(_calls(alice, "x", b"").keys())
    for op in names:
        kid = alice.create_key()["KeyMetadata"]["KeyId"]
        blob = alice.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]
        _put_in_state(alice, kid, state)
        arn = f"arn:aws:kms:us-east-1:000000000000:key/{kid}"
        expected = state_error(op, state, arn)
        if expected is None:
            _calls(alice, kid, blob)[op]()
        else:
            with pytest.raises(ClientError) as e:
                _calls(alice, kid, blob)[op]()
            assert (code(e), e.value.response["Error"]["Message"]) == (expected.code, expected.text), op


@pytest.mark.parametrize("state", [DISABLED, PENDING_DELETION])
def test_state_table_for_signing_and_mac_keys(alice, state: str) -> None:
    sign = alice.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    mac = alice.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    sig = alice.sign(KeyId=sign, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    tag = alice.generate_mac(KeyId=mac, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
    _put_in_state(alice, sign, state)
    _put_in_state(alice, mac, state)
    calls = {
        "Sign": lambda: alice.sign(KeyId=sign, Message=b"m", SigningAlgorithm="ECDSA_SHA_256"),
        "Verify": lambda: alice.verify(KeyId=sign, Message=b"m", Signature=sig, SigningAlgorithm="ECDSA_SHA_256"),
        "GetPublicKey": lambda: alice.get_public_key(KeyId=sign),
        "GenerateMac": lambda: alice.generate_mac(KeyId=mac, Message=b"m", MacAlgorithm="HMAC_SHA_256"),
        "VerifyMac": lambda: alice.verify_mac(KeyId=mac, Message=b"m", Mac=tag, MacAlgorithm="HMAC_SHA_256"),
    }
    for op, call in calls.items():
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == ("DisabledException" if state == DISABLED else "KMSInvalidStateException"), op


def test_state_table_words() -> None:
    arn = "arn:aws:kms:us-east-1:000000000000:key/k"
    assert state_error("Encrypt", DISABLED, arn).text == f"{arn} is disabled."  # type: ignore[union-attr]
    assert state_error("Encrypt", PENDING_DELETION, arn).code == "KMSInvalidStateException"  # type: ignore[union-attr]
    assert state_error("CancelKeyDeletion", ENABLED, arn).text == f"{arn} is not pending deletion."  # type: ignore[union-attr]
    assert not (CRYPTO & ANY_STATE) and not (ROTATION & NOT_WHILE_PENDING)


def test_enable_disable_cycle(alice) -> None:
    kid = alice.create_key()["KeyMetadata"]["KeyId"]
    alice.disable_key(KeyId=kid)
    md = alice.describe_key(KeyId=kid)["KeyMetadata"]
    assert (md["KeyState"], md["Enabled"]) == ("Disabled", False)
    with pytest.raises(ClientError) as e:
        alice.generate_data_key(KeyId=kid, KeySpec="AES_256")
    assert code(e) == "DisabledException"
    alice.enable_key(KeyId=kid)
    alice.generate_data_key(KeyId=kid, KeySpec="AES_256")


def test_schedule_limits_and_cancel_leaves_disabled(alice) -> None:
    kid = alice.create_key()["KeyMetadata"]["KeyId"]
    for bad in (6, 31):  # the shape allows 1..365; the service allows 7..30
        with pytest.raises(ClientError) as e:
            alice.schedule_key_deletion(KeyId=kid, PendingWindowInDays=bad)
        assert code(e) == "ValidationException"
    out = alice.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    assert out["KeyState"] == "PendingDeletion" and out["PendingWindowInDays"] == 7
    md = alice.describe_key(KeyId=kid)["KeyMetadata"]
    assert md["KeyState"] == "PendingDeletion" and "DeletionDate" in md
    alice.cancel_key_deletion(KeyId=kid)
    md = alice.describe_key(KeyId=kid)["KeyMetadata"]
    assert md["KeyState"] == "Disabled" and "DeletionDate" not in md


def test_deletion_happens_when_due_across_a_restart(kms_factory) -> None:
    now = [1_800_000_000.0]
    server = kms_factory(clock=lambda: now[0])
    c = server.client()
    kid = c.create_key()["KeyMetadata"]["KeyId"]
    keep = c.create_key()["KeyMetadata"]["KeyId"]
    blob = c.encrypt(KeyId=keep, Plaintext=b"kept")["CiphertextBlob"]
    c.create_alias(AliasName="alias/doomed", TargetKeyId=kid)
    c.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    server.close()

    now[0] += 7 * DAY - 1  # one second early: still there after a restart
    server = kms_factory(clock=lambda: now[0])
    c = server.client()
    assert c.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    server.close()

    now[0] += 2  # due: the restarted service deletes it, and its alias
    server = kms_factory(clock=lambda: now[0])
    c = server.client()
    with pytest.raises(ClientError) as e:
        c.describe_key(KeyId=kid)
    assert code(e) == "NotFoundException"
    assert kid not in [k["KeyId"] for k in c.list_keys()["Keys"]]
    assert "alias/doomed" not in [a["AliasName"] for a in c.list_aliases()["Aliases"]]
    assert c.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"


def test_rotation_on_demand_keeps_old_blobs_readable(alice) -> None:
    kid = alice.create_key()["KeyMetadata"]["KeyId"]
    before = alice.describe_key(KeyId=kid)["KeyMetadata"]["CurrentKeyMaterialId"]
    old = alice.encrypt(KeyId=kid, Plaintext=b"old", EncryptionContext={"c": "1"})["CiphertextBlob"]
    alice.rotate_key_on_demand(KeyId=kid)
    after = alice.describe_key(KeyId=kid)["KeyMetadata"]["CurrentKeyMaterialId"]
    new = alice.encrypt(KeyId=kid, Plaintext=b"new")["CiphertextBlob"]
    assert before != after and (old[18:22], new[18:22]) == (b"\0\0\0\1", b"\0\0\0\2")  # material version
    assert alice.decrypt(CiphertextBlob=old, EncryptionContext={"c": "1"})["Plaintext"] == b"old"
    assert alice.decrypt(CiphertextBlob=new)["Plaintext"] == b"new"
    rotations = alice.list_key_rotations(KeyId=kid)["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"] and rotations[0]["KeyMaterialId"] == after
    status = alice.get_key_rotation_status(KeyId=kid)
    assert status["KeyRotationEnabled"] is False and "OnDemandRotationStartDate" in status


def test_on_demand_rotation_limit(alice) -> None:
    kid = alice.create_key()["KeyMetadata"]["KeyId"]
    for _ in range(10):
        alice.rotate_key_on_demand(KeyId=kid)
    with pytest.raises(ClientError) as e:
        alice.rotate_key_on_demand(KeyId=kid)
    assert code(e) == "LimitExceededException"


def test_automatic_rotation_when_period_passes(kms_factory) -> None:
    now = [1_800_000_000.0]
    server = kms_factory(clock=lambda: now[0])
    c = server.client()
    kid = c.create_key()["KeyMetadata"]["KeyId"]
    caller = server.service.service_caller().__class__("AKIAALICE000000000001", "alice", "000000000000")
    status, body = server.api.dispatch(  # botocore refuses 89 itself; the server must too, for any client
        "TrentService.EnableKeyRotation", b'{"KeyId": "%s", "RotationPeriodInDays": 89}' % kid.encode(), caller)
    assert status == 400 and b"ValidationException" in body
    c.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    status = c.get_key_rotation_status(KeyId=kid)
    assert status["KeyRotationEnabled"] and status["RotationPeriodInDays"] == 90
    blob = c.encrypt(KeyId=kid, Plaintext=b"before")["CiphertextBlob"]
    now[0] += 90 * DAY + 1
    c.encrypt(KeyId=kid, Plaintext=b"after")
    assert [r["RotationType"] for r in c.list_key_rotations(KeyId=kid)["Rotations"]] == ["AUTOMATIC"]
    assert c.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before"
    c.disable_key_rotation(KeyId=kid)
    assert c.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"] is False


def test_rotation_is_for_symmetric_keys_only(alice) -> None:
    kid = alice.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    for call in (alice.rotate_key_on_demand, alice.enable_key_rotation):
        with pytest.raises(ClientError) as e:
            call(KeyId=kid)
        assert code(e) == "UnsupportedOperationException"


def test_aliases(alice) -> None:
    a = alice.create_key()["KeyMetadata"]["KeyId"]
    b = alice.create_key()["KeyMetadata"]["KeyId"]
    alice.create_alias(AliasName="alias/app", TargetKeyId=a)
    with pytest.raises(ClientError) as e:
        alice.create_alias(AliasName="alias/app", TargetKeyId=b)
    assert code(e) == "AlreadyExistsException"
    for bad, want in (("alias/aws/mine", "InvalidAliasNameException"), ("alias/has space", "ValidationException")):
        with pytest.raises(ClientError) as e:
            alice.create_alias(AliasName=bad, TargetKeyId=a)
        assert code(e) == want
    listed = {x["AliasName"]: x for x in alice.list_aliases(KeyId=a)["Aliases"]}
    assert listed["alias/app"]["TargetKeyId"] == a
    alice.update_alias(AliasName="alias/app", TargetKeyId=b)
    assert alice.describe_key(KeyId="alias/app")["KeyMetadata"]["KeyId"] == b
    alice.delete_alias(AliasName="alias/app")
    with pytest.raises(ClientError) as e:
        alice.describe_key(KeyId="alias/app")
    assert code(e) == "NotFoundException"
    with pytest.raises(ClientError) as e:
        alice.delete_alias(AliasName="alias/app")
    assert code(e) == "NotFoundException"
    with pytest.raises(ClientError) as e:  # management operations take a key id or ARN, not an alias
        alice.disable_key(KeyId="alias/app")
    assert code(e) == "NotFoundException"


def test_tags(alice) -> None:
    kid = alice.create_key(Tags=[{"TagKey": "team", "TagValue": "a"}])["KeyMetadata"]["KeyId"]
    alice.tag_resource(KeyId=kid, Tags=[{"TagKey": "env", "TagValue": "prod"}, {"TagKey": "team", "TagValue": "b"}])
    assert alice.list_resource_tags(KeyId=kid)["Tags"] == [
        {"TagKey": "env", "TagValue": "prod"},
        {"TagKey": "team", "TagValue": "b"},
    ]
    alice.untag_resource(KeyId=kid, TagKeys=["env"])
    assert alice.list_resource_tags(KeyId=kid)["Tags"] == [{"TagKey": "team", "TagValue": "b"}]
    with pytest.raises(ClientError) as e:
        alice.tag_resource(KeyId=kid, Tags=[{"TagKey": "aws:reserved", "TagValue": "x"}])
    assert code(e) == "TagException"
