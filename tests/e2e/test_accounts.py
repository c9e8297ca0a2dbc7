"""Accounts, through the real proxy and boto3: three accounts, one with two users, and nothing of one
account usable by another unless its owner grants it — AWS's promise between accounts, for KMS keys.

Account A (111111111111): alice, and anna (whose identity policy denies her key deletion and key
policy changes). Account B (222222222222): bert. Account C: carl, whose entry names no account and
so gets one of its own. The S3 side is checked where it meets the KMS (SSE-KMS reads across accounts);
bucket ownership and bucket policies come with the S3 authorization stage.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from s3proxy.app import ProxyThread, derived_account
from s3proxy.settings import load
from tests.conftest import register_secret

A, B = "111111111111", "222222222222"
SECRET = "accounts-test-secret-0001/abcdefghijklmn"
register_secret(SECRET)
KEYS = {"alice": "AKIAACCOUNTSA0ALICE1", "anna": "AKIAACCOUNTSA0ANNA01", "bert": "AKIAACCOUNTSB0BERT01",
        "carl": "AKIAACCOUNTSC0CARL01"}
C = derived_account(KEYS["carl"])
ANNA_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "*", "Resource": "*"},
    {"Sid": "NoDestruction", "Effect": "Deny", "Action": ["kms:ScheduleKeyDeletion", "kms:PutKeyPolicy"], "Resource": "*"},
]}


def arn(user: str) -> str:
    return f"arn:aws:iam::{ {'alice': A, 'anna': A, 'bert': B, 'carl': C}[user] }:user/{user}"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("accounts")
    (tmp / "anna.json").write_text(json.dumps(ANNA_POLICY))
    entries = [("alice", f'account = "{A}"'), ("anna", f'account = "{A}"\npolicy_file = "anna.json"'),
               ("bert", f'account = "{B}"\npolicy = \'\'\'{{"Statement": [{{"Effect": "Allow", "Action": "*", '
                        f'"Resource": "*"}}]}}\'\'\''), ("carl", "")]
    config = tmp / "users.toml"
    config.write_text("".join(f'[[credentials]]\naccess_key = "{KEYS[u]}"\nsecret_key = "{SECRET}"\nuser = "{u}"\n{extra}\n'
                              for u, extra in entries))
    thread = ProxyThread(load({"host": "127.0.0.1", "port": "0", "data_dir": str(tmp / "data"), "config": str(config),
                               "backend": "fs"}, env={})).start()
    yield thread.url
    thread.stop()


def client(endpoint: str, service: str, user: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEYS[user],
                        aws_secret_access_key=SECRET,
                        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))


@pytest.fixture(scope="module")
def kms(endpoint: str) -> dict[str, Any]:
    return {u: client(endpoint, "kms", u) for u in KEYS}


def error(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def policy(*statements: dict[str, Any], owner: str = "alice") -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "owner", "Effect": "Allow", "Principal": {"AWS": arn(owner)}, "Action": "kms:*", "Resource": "*"},
        *statements]})


def test_every_user_acts_in_its_own_account(kms: dict[str, Any]) -> None:
    for user, account in (("alice", A), ("anna", A), ("bert", B), ("carl", C)):
        meta = kms[user].create_key()["KeyMetadata"]
        assert meta["AWSAccountId"] == account and meta["Arn"].startswith(f"arn:aws:kms:us-east-1:{account}:key/")
        listed = {k["KeyArn"] for k in kms[user].list_keys()["Keys"]}
        assert meta["Arn"] in listed and all(f":{account}:key/" in k for k in listed)  # only its own account's keys


def test_a_key_is_not_usable_from_another_account(kms: dict[str, Any]) -> None:
    key = kms["alice"].create_key()["KeyMetadata"]
    blob = kms["alice"].encrypt(KeyId=key["KeyId"], Plaintext=b"secret")["CiphertextBlob"]
    # a bare key id names a key of the caller's own account: there is none such in B
    code, message = error(lambda: kms["bert"].encrypt(KeyId=key["KeyId"], Plaintext=b"x"))
    assert code == "NotFoundException" and f":{B}:key/{key['KeyId']}" in message
    for user in ("bert", "carl"):  # by ARN: found, and refused
        code, message = error(lambda u=user: kms[u].encrypt(KeyId=key["Arn"], Plaintext=b"x"))
        assert code == "AccessDeniedException"
        assert message == (f"User: {arn(user)} is not authorized to perform: kms:Encrypt on resource: {key['Arn']} "
                           "because no resource-based policy allows the kms:Encrypt action")
        assert error(lambda u=user: kms[u].decrypt(CiphertextBlob=blob))[0] == "AccessDeniedException"
        assert error(lambda u=user: kms[u].describe_key(KeyId=key["Arn"]))[0] == "AccessDeniedException"
    # anna shares alice's account, but the default policy names only the creator
    assert error(lambda: kms["anna"].decrypt(CiphertextBlob=blob))[0] == "AccessDeniedException"


def test_the_key_policy_can_grant_another_account(kms: dict[str, Any]) -> None:
    key = kms["alice"].create_key(Policy=policy({
        "Sid": "B may use it", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{B}:root"},
        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey", "kms:DisableKey"],
        "Resource": "*"}))["KeyMetadata"]
    blob = kms["bert"].encrypt(KeyId=key["Arn"], Plaintext=b"from B")["CiphertextBlob"]
    assert kms["alice"].decrypt(CiphertextBlob=blob)["Plaintext"] == b"from B"
    assert kms["bert"].describe_key(KeyId=key["Arn"])["KeyMetadata"]["AWSAccountId"] == A
    assert error(lambda: kms["carl"].decrypt(CiphertextBlob=blob))[0] == "AccessDeniedException"  # only B was granted
    # administration never crosses accounts (AWS: "Cross-account use: No"), whatever the policy says
    assert error(lambda: kms["bert"].disable_key(KeyId=key["Arn"]))[0] == "NotFoundException"
    assert kms["alice"].describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Enabled"] is True


def test_cross_account_grants(kms: dict[str, Any]) -> None:
    key = kms["alice"].create_key()["KeyMetadata"]
    grant = kms["alice"].create_grant(KeyId=key["KeyId"], GranteePrincipal=arn("bert"), Operations=["Encrypt", "Decrypt"])
    blob = kms["bert"].encrypt(KeyId=key["Arn"], Plaintext=b"granted")["CiphertextBlob"]
    assert kms["bert"].decrypt(CiphertextBlob=blob)["Plaintext"] == b"granted"
    assert error(lambda: kms["bert"].generate_data_key(KeyId=key["Arn"], KeySpec="AES_256"))[0] == "AccessDeniedException"
    assert error(lambda: kms["carl"].decrypt(CiphertextBlob=blob))[0] == "AccessDeniedException"
    kms["alice"].revoke_grant(KeyId=key["KeyId"], GrantId=grant["GrantId"])
    assert error(lambda: kms["bert"].decrypt(CiphertextBlob=blob))[0] == "AccessDeniedException"
    # the key policy may let B create grants itself (for its own principals), as AWS documents
    kms["alice"].put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=policy({
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{B}:root"}, "Action": "kms:CreateGrant", "Resource": "*",
        "Condition": {"StringLike": {"kms:GranteePrincipal": f"arn:aws:iam::{B}:*"}}}))
    assert error(lambda: kms["bert"].create_grant(KeyId=key["Arn"], GranteePrincipal=arn("carl"),
                                                   Operations=["Decrypt"]))[0] == "AccessDeniedException"
    kms["bert"].create_grant(KeyId=key["Arn"], GranteePrincipal=arn("bert"), Operations=["Decrypt"])
    assert kms["bert"].decrypt(CiphertextBlob=blob)["Plaintext"] == b"granted"
    issued = {g["IssuingAccount"] for g in kms["alice"].list_grants(KeyId=key["KeyId"])["Grants"]}
    assert issued == {f"arn:aws:iam::{B}:root"}


def test_aliases_are_per_account(kms: dict[str, Any]) -> None:
    name = f"alias/shared-{uuid.uuid4().hex[:8]}"
    mine = kms["alice"].create_key()["KeyMetadata"]
    theirs = kms["bert"].create_key()["KeyMetadata"]
    kms["alice"].create_alias(AliasName=name, TargetKeyId=mine["KeyId"])
    kms["bert"].create_alias(AliasName=name, TargetKeyId=theirs["KeyId"])  # no clash with A's alias of that name
    assert kms["alice"].encrypt(KeyId=name, Plaintext=b"x")["KeyId"] == mine["Arn"]
    assert kms["bert"].encrypt(KeyId=name, Plaintext=b"x")["KeyId"] == theirs["Arn"]
    listed = {a["AliasArn"] for a in kms["bert"].list_aliases()["Aliases"]}
    assert f"arn:aws:kms:us-east-1:{B}:{name}" in listed and all(f":{B}:alias/" in a for a in listed)
    # alice's alias by its ARN reaches her key, and her key policy refuses bert there
    assert error(lambda: kms["bert"].encrypt(KeyId=f"arn:aws:kms:us-east-1:{A}:{name}", Plaintext=b"x"))[0] \
        == "AccessDeniedException"
    assert error(lambda: kms["carl"].delete_alias(AliasName=name))[0] == "NotFoundException"


def test_an_identity_policy_denies_where_the_key_policy_allows(kms: dict[str, Any]) -> None:
    key = kms["alice"].create_key(Policy=policy({"Effect": "Allow", "Principal": {"AWS": arn("anna")}, "Action": "kms:*",
                                                 "Resource": "*"}))["KeyMetadata"]
    kms["anna"].encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    code, message = error(lambda: kms["anna"].schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7))
    assert code == "AccessDeniedException" and message.endswith("with an explicit deny in an identity-based policy")
    # the key policy naming her account delegates to her identity policy, which denies PutKeyPolicy
    assert error(lambda: kms["anna"].put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=policy()))[0] \
        == "AccessDeniedException"


def test_sse_kms_objects_of_one_account_do_not_open_for_another(endpoint: str, kms: dict[str, Any]) -> None:
    s3_alice, s3_bert = client(endpoint, "s3", "alice"), client(endpoint, "s3", "bert")
    key = kms["alice"].create_key()["KeyMetadata"]
    bucket = f"acct-{uuid.uuid4().hex[:12]}"
    s3_alice.create_bucket(Bucket=bucket)
    s3_alice.put_object(Bucket=bucket, Key="own-key", Body=b"A's data", ServerSideEncryption="aws:kms",
                        SSEKMSKeyId=key["KeyId"], BucketKeyEnabled=True)
    s3_alice.put_object(Bucket=bucket, Key="aws-managed", Body=b"A's data", ServerSideEncryption="aws:kms")
    for name in ("own-key", "aws-managed"):  # A's aws/s3 key serves A's callers only (kms:CallerAccount)
        assert s3_alice.get_object(Bucket=bucket, Key=name)["Body"].read() == b"A's data"
        with pytest.raises(ClientError) as e:
            s3_bert.get_object(Bucket=bucket, Key=name)
        assert e.value.response["Error"]["Code"] == "AccessDenied"
    kms["alice"].put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=policy({
        "Effect": "Allow", "Principal": {"AWS": arn("bert")}, "Action": "kms:Decrypt", "Resource": "*"}))
    assert s3_bert.get_object(Bucket=bucket, Key="own-key")["Body"].read() == b"A's data"
