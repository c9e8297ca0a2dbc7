"""Key policies on the policy engine, through boto3: refused when they cannot be evaluated exactly, the global
condition keys (aws:SecureTransport, aws:SourceIp, aws:RequestedRegion, ...), the grant keys, and what
happens to a policy stored before these checks existed.

The KMS endpoint is tests/kms/conftest.py's: plain HTTP on loopback, so aws:SecureTransport is false
and aws:SourceIp is 127.0.0.1 for every request here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

ALICE = "arn:aws:iam::000000000000:user/alice"
BOB = "arn:aws:iam::000000000000:user/bob"
ADMIN = {"Sid": "admin", "Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "kms:*", "Resource": "*"}


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [ADMIN, *statements]})


def error(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


UNEVALUABLE = [
    # (statement, words of the message): each would have been accepted and silently ignored before
    ({"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
      "Condition": {"Bool": {"aws:SecureTransprt": "false"}}}, "not permitted in a key policy: aws:SecureTransprt"),
    ({"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
      "Condition": {"StringNotEquals": {"aws:RequestedRegio": "us-east-1"}}}, "not permitted"),
    ({"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
      "Condition": {"NumericLessThanWobbly": {"aws:EpochTime": "1"}}}, "not supported"),
    ({"Effect": "Deny", "Principal": "*", "Action": "kms:Decrpyt", "Resource": "*"}, "matches no kms action"),
    ({"Effect": "Deny", "Principal": {"AWS": "bob"}, "Action": "kms:*", "Resource": "*"},
     "Policy contains a statement with one or more invalid principals."),
    ({"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "arn:aws:kms:*"}, 'only Resource'),
    ({"Effect": "Deny", "Principal": "*", "Action": "kms:*"}, "Resource"),
]


@pytest.mark.parametrize(("statement", "words"), UNEVALUABLE)
def test_policies_the_engine_cannot_evaluate_are_refused_on_put_and_create(alice: Any, statement: dict[str, Any],
                                                                            words: str) -> None:
    kid = alice.create_key()["KeyMetadata"]["KeyId"]
    code, message = error(lambda: alice.put_key_policy(KeyId=kid, PolicyName="default", Policy=policy(statement)))
    assert code == "MalformedPolicyDocumentException" and words in message
    code, message = error(lambda: alice.create_key(Policy=policy(statement)))
    assert code == "MalformedPolicyDocumentException" and words in message
    assert json.loads(alice.get_key_policy(KeyId=kid, PolicyName="default")["Policy"])["Statement"][0]["Principal"]


def test_secure_transport_false_over_http_denies(alice: Any) -> None:
    """The issue's case: a Deny on aws:SecureTransport used to be accepted and ignored (fail open)."""
    kid = alice.create_key(Policy=policy({"Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
                                          "Condition": {"Bool": {"aws:SecureTransport": "false"}}}))["KeyMetadata"]["KeyId"]
    code, message = error(lambda: alice.encrypt(KeyId=kid, Plaintext=b"x"))
    assert code == "AccessDeniedException" and "explicit deny in a resource-based policy" in message
    alice.describe_key(KeyId=kid)  # other actions still allowed


def test_source_ip(alice: Any, bob: Any) -> None:
    kid = alice.create_key(Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": BOB}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}},
        {"Effect": "Allow", "Principal": {"AWS": BOB}, "Action": "kms:GenerateDataKey", "Resource": "*",
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "kms:ReEncrypt*", "Resource": "*",
         "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.0.2.0/24"]}}},
    ))["KeyMetadata"]["KeyId"]
    blob = bob.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]  # from loopback: allowed
    assert bob.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    assert error(lambda: bob.generate_data_key(KeyId=kid, KeySpec="AES_256"))[0] == "AccessDeniedException"
    code, message = error(lambda: alice.re_encrypt(CiphertextBlob=blob, DestinationKeyId=kid))
    assert code == "AccessDeniedException" and "explicit deny" in message


def test_requested_region_and_principal_keys(alice: Any, bob: Any) -> None:
    kid = alice.create_key(Policy=policy(
        {"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
         "Condition": {"StringNotEquals": {"aws:RequestedRegion": "us-east-1"}}},
        {"Effect": "Allow", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::000000000000:user/b*"},
                       "StringEquals": {"aws:PrincipalAccount": "000000000000", "aws:username": "bob"}}},
    ))["KeyMetadata"]["KeyId"]
    bob.encrypt(KeyId=kid, Plaintext=b"x")  # us-east-1 signed; bob by ARN, account and name
    assert error(lambda: bob.decrypt(CiphertextBlob=alice.encrypt(KeyId=kid, Plaintext=b"y")["CiphertextBlob"]))[0] \
        == "AccessDeniedException"


def test_time_conditions(alice: Any) -> None:
    kid = alice.create_key(Policy=policy(
        {"Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2001-01-01T00:00:00Z"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "kms:GenerateDataKey", "Resource": "*",
         "Condition": {"NumericGreaterThan": {"aws:EpochTime": "4102444800"}}},  # 2100: not yet
    ))["KeyMetadata"]["KeyId"]
    assert error(lambda: alice.encrypt(KeyId=kid, Plaintext=b"x"))[0] == "AccessDeniedException"
    alice.generate_data_key(KeyId=kid, KeySpec="AES_256")


def test_grant_operations_are_tested_on_create_grant(alice: Any, bob: Any) -> None:
    """kms:GrantOperations was never supplied, so `ForAllValues:` on it held vacuously and bob could grant anything."""
    kid = alice.create_key(Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": BOB}, "Action": "kms:CreateGrant", "Resource": "*",
         "Condition": {"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt"]},
                       "StringEquals": {"kms:GranteePrincipal": BOB}}},
    ))["KeyMetadata"]["KeyId"]
    bob.create_grant(KeyId=kid, GranteePrincipal=BOB, Operations=["Decrypt"])
    assert error(lambda: bob.create_grant(KeyId=kid, GranteePrincipal=BOB, Operations=["Decrypt", "Encrypt"]))[0] \
        == "AccessDeniedException"
    assert error(lambda: bob.create_grant(KeyId=kid, GranteePrincipal=ALICE, Operations=["Decrypt"]))[0] \
        == "AccessDeniedException"


def test_grant_is_for_aws_resource_and_lockout_bypass_keys(alice: Any, bob: Any) -> None:
    kid = alice.create_key(Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": BOB}, "Action": ["kms:CreateGrant", "kms:ListGrants"], "Resource": "*",
         "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}},
        {"Effect": "Allow", "Principal": {"AWS": BOB}, "Action": "kms:PutKeyPolicy", "Resource": "*",
         "Condition": {"Bool": {"kms:BypassPolicyLockoutSafetyCheck": "false"}}},
    ))["KeyMetadata"]["KeyId"]
    assert error(lambda: bob.list_grants(KeyId=kid))[0] == "AccessDeniedException"  # bob calls directly, not via S3
    everyone = json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}]})
    assert error(lambda: bob.put_key_policy(KeyId=kid, PolicyName="default", Policy=everyone,
                                            BypassPolicyLockoutSafetyCheck=True))[0] == "AccessDeniedException"


def test_a_stored_policy_the_engine_cannot_read_is_evaluated_fail_closed_and_logged_once(kms_factory: Any,
                                                                                         caplog: Any) -> None:
    """Keystores from before hold policies accepted then: an unknown key in a Deny now denies, loudly."""
    first = kms_factory()
    alice = first.client("alice")
    kid = alice.create_key()["KeyMetadata"]["KeyId"]
    old = {"Version": "2012-10-17", "Statement": [
        ADMIN, {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransprt": "false"}}}]}
    # what the earlier parser accepted: written straight into the keystore, as an old proxy did
    first.service.records.update_key(kid, lambda r: replace(r, policy=json.dumps(old)))
    first.close()
    second = kms_factory()
    alice = second.client("alice")
    blob = alice.encrypt(KeyId=kid, Plaintext=b"x")["CiphertextBlob"]  # the Deny is on Decrypt only
    with caplog.at_level(logging.WARNING, logger="s3proxy.kms.authorizer"):
        for _ in range(3):
            code, _ = error(lambda: alice.decrypt(CiphertextBlob=blob))
            assert code == "AccessDeniedException"
    warnings = [r.getMessage() for r in caplog.records if "fail-closed" in r.getMessage()]
    assert len(warnings) == 1 and kid in warnings[0] and "aws:SecureTransprt" in warnings[0]
    alice.put_key_policy(KeyId=kid, PolicyName="default", Policy=json.dumps({"Statement": [ADMIN]}))
    assert alice.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"  # a policy put anew is read exactly again
