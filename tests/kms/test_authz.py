"""Authorization: default policy, key policies (Allow/Deny, wildcards, conditions), grants and constraints."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from s3proxy.kms.caller import Caller

ALICE = "arn:aws:iam::000000000000:user/alice"
BOB = "arn:aws:iam::000000000000:user/bob"


def code(e: pytest.ExceptionInfo[ClientError]) -> str:
    return e.value.response["Error"]["Code"]


def denied(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as e:
        call()
    assert code(e) == "AccessDeniedException", e.value
    return e.value.response["Error"]["Message"]


def policy(*statements: dict) -> str:
    admin = {"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "kms:*", "Resource": "*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [admin, *statements]})


def test_default_policy_creator_and_administrators(kms, alice, bob) -> None:
    kid = alice.create_key()["KeyMetadata"]["KeyId"]
    doc = json.loads(alice.get_key_policy(KeyId=kid, PolicyName="default")["Policy"])
    assert set(doc["Statement"][0]["Principal"]["AWS"]) == {ALICE, "arn:aws:iam::000000000000:user/admin"}
    msg = denied(lambda: bob.encrypt(KeyId=kid, Plaintext=b"x"))
    assert msg.startswith(f"User: {BOB} is not authorized to perform: kms:Encrypt on resource: arn:aws:kms:")
    denied(lambda: bob.describe_key(KeyId=kid))
    kms.client("admin").disable_key(KeyId=kid)  # a configured administrator
    assert alice.list_key_policies(KeyId=kid)["PolicyNames"] == ["default"]


def test_allow_with_action_wildcards(alice, bob) -> None:
    kid = alice.create_key(
        Policy=policy(
            {"Effect": "Allow", "Principal": {"AWS": [BOB]}, "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*"}
        )
    )["KeyMetadata"]["KeyId"]
    dk = bob.generate_data_key(KeyId=kid, KeySpec="AES_256")
    bob.generate_data_key_without_plaintext(KeyId=kid, KeySpec="AES_256")
    assert bob.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]
    denied(lambda: bob.encrypt(KeyId=kid, Plaintext=b"x"))
    denied(lambda: bob.disable_key(KeyId=kid))


def test_explicit_deny_beats_allow(alice) -> None:
    kid = alice.create_key(Policy=policy({"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}))[
        "KeyMetadata"
    ]["KeyId"]
    blob = alice.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]
    assert "explicit deny" in denied(lambda: alice.decrypt(CiphertextBlob=blob))


def test_conditions_on_encryption_context(alice, bob) -> None:
    kid = alice.create_key(Policy=policy({
        "Effect": "Allow", "Principal": {"AWS": BOB}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
        "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "bob"}, "StringLike": {"kms:CallerAccount": "0000*"}},
    }))["KeyMetadata"]["KeyId"]
    blob = bob.encrypt(KeyId=kid, Plaintext=b"x", EncryptionContext={"tenant": "bob"})["CiphertextBlob"]
    assert bob.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "bob"})["Plaintext"] == b"x"
    denied(lambda: bob.encrypt(KeyId=kid, Plaintext=b"x", EncryptionContext={"tenant": "alice"}))
    denied(lambda: bob.encrypt(KeyId=kid, Plaintext=b"x"))


def test_for_all_values_on_context_keys(alice, bob) -> None:
    kid = alice.create_key(Policy=policy({
        "Effect": "Deny", "Principal": {"AWS": BOB}, "Action": "kms:Encrypt", "Resource": "*",
        "Condition": {"ForAnyValue:StringNotEquals": {"kms:EncryptionContextKeys": ["bucket", "key"]}},
    }, {"Effect": "Allow", "Principal": {"AWS": BOB}, "Action": "kms:Encrypt", "Resource": "*"}))["KeyMetadata"]["KeyId"]
    bob.encrypt(KeyId=kid, Plaintext=b"x", EncryptionContext={"bucket": "b"})
    denied(lambda: bob.encrypt(KeyId=kid, Plaintext=b"x", EncryptionContext={"other": "o"}))


@pytest.mark.parametrize(
    "doc",
    [
        "not json",
        json.dumps({"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "kms:*"}]}),
        json.dumps(
            {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Condition": {"NumericWobbly": {"a": "1"}}}]}
        ),
    ],
)
def test_malformed_policies_are_refused(alice, doc) -> None:
    kid = alice.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as e:
        alice.put_key_policy(KeyId=kid, PolicyName="default", Policy=doc)
    assert code(e) == "MalformedPolicyDocumentException"


def test_lockout_safety_check(alice) -> None:
    kid = alice.create_key()["KeyMetadata"]["KeyId"]
    only_bob = json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"AWS": BOB}, "Action": "kms:*", "Resource": "*"}]})
    with pytest.raises(ClientError) as e:
        alice.put_key_policy(KeyId=kid, PolicyName="default", Policy=only_bob)
    assert code(e) == "MalformedPolicyDocumentException"
    alice.put_key_policy(KeyId=kid, PolicyName="default", Policy=only_bob, BypassPolicyLockoutSafetyCheck=True)
    denied(lambda: alice.describe_key(KeyId=kid))


def test_grants_with_constraints_retire_and_revoke(alice, bob) -> None:
    kid = alice.create_key()["KeyMetadata"]["KeyId"]
    g = alice.create_grant(KeyId=kid, GranteePrincipal=BOB, Operations=["Encrypt", "Decrypt"], Name="g1",
                           Constraints={"EncryptionContextSubset": {"app": "x"}})
    blob = bob.encrypt(KeyId=kid, Plaintext=b"p", EncryptionContext={"app": "x", "more": "y"})["CiphertextBlob"]
    assert bob.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "x", "more": "y"})["Plaintext"] == b"p"
    denied(lambda: bob.encrypt(KeyId=kid, Plaintext=b"p", EncryptionContext={"app": "z"}))
    denied(lambda: bob.generate_data_key(KeyId=kid, KeySpec="AES_256", EncryptionContext={"app": "x"}))
    listed = alice.list_grants(KeyId=kid)["Grants"]
    assert [x["GrantId"] for x in listed] == [g["GrantId"]] and listed[0]["Constraints"] == {
        "EncryptionContextSubset": {"app": "x"}
    }
    assert alice.create_grant(KeyId=kid, GranteePrincipal=BOB, Operations=["Encrypt", "Decrypt"], Name="g1",
                              Constraints={"EncryptionContextSubset": {"app": "x"}})["GrantId"] == g["GrantId"]
    alice.revoke_grant(KeyId=kid, GrantId=g["GrantId"])
    denied(lambda: bob.encrypt(KeyId=kid, Plaintext=b"p", EncryptionContext={"app": "x"}))
    with pytest.raises(ClientError) as e:
        alice.revoke_grant(KeyId=kid, GrantId=g["GrantId"])
    assert code(e) == "InvalidGrantIdException"

    eq = alice.create_grant(KeyId=kid, GranteePrincipal=BOB, Operations=["GenerateDataKey"], RetiringPrincipal=BOB,
                            Constraints={"EncryptionContextEquals": {"app": "x"}})
    bob.generate_data_key(KeyId=kid, KeySpec="AES_256", EncryptionContext={"app": "x"})
    denied(lambda: bob.generate_data_key(KeyId=kid, KeySpec="AES_256", EncryptionContext={"app": "x", "b": "c"}))
    bob.retire_grant(GrantToken=eq["GrantToken"])  # the retiring principal
    denied(lambda: bob.generate_data_key(KeyId=kid, KeySpec="AES_256", EncryptionContext={"app": "x"}))
    assert alice.list_grants(KeyId=kid)["Grants"] == []


def test_grant_retire_by_stranger_is_denied(alice, bob, kms) -> None:
    kid = alice.create_key()["KeyMetadata"]["KeyId"]
    g = alice.create_grant(KeyId=kid, GranteePrincipal=ALICE, Operations=["Decrypt"])
    denied(lambda: bob.retire_grant(KeyId=kid, GrantId=g["GrantId"]))
    alice.retire_grant(KeyId=kid, GrantId=g["GrantId"])


def test_data_path_is_authorized_as_the_requesting_principal(kms, alice) -> None:
    """A policy that denies bob the key also denies him data keys through the S3 data path (in-process seam)."""
    kid = alice.create_key(Policy=policy({"Effect": "Deny", "Principal": {"AWS": BOB}, "Action": "kms:*", "Resource": "*"}))[
        "KeyMetadata"
    ]["KeyId"]
    svc = kms.service
    bob_caller = Caller("AKIABOB00000000000002", "bob", "000000000000", via_service="s3.us-east-1.amazonaws.com")
    alice_caller = Caller("AKIAALICE000000000001", "alice", "000000000000", via_service="s3.us-east-1.amazonaws.com")
    from s3proxy.kms.errors import AccessDeniedException

    with pytest.raises(AccessDeniedException):
        svc.generate_data_key(bob_caller, kid, {"aws:s3:arn": "arn:aws:s3:::b/k"})
    dk = svc.generate_data_key(alice_caller, kid, {"aws:s3:arn": "arn:aws:s3:::b/k"})
    with pytest.raises(AccessDeniedException):
        svc.decrypt_data_key(bob_caller, dk.ciphertext_blob, {"aws:s3:arn": "arn:aws:s3:::b/k"})
