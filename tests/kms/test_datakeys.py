"""The DataKeySource seam the S3 data path uses: data keys, key resolution, AWS-managed and service keys."""

from __future__ import annotations

import pytest

from s3proxy.kms.caller import Caller
from s3proxy.kms.datakeys import DataKeySource
from s3proxy.kms.errors import (
    AccessDeniedException,
    DisabledException,
    InvalidCiphertextException,
    KMSInvalidStateException,
    NotFoundException,
)
from tests.kms.helpers import memory_data_keys

S3 = "s3.us-east-1.amazonaws.com"
ALICE = Caller("AKIAALICE", "alice", "000000000000", source_ip="10.0.0.1", user_agent="ua", request_id="req-1", via_service=S3)
BOB = Caller("AKIABOB", "bob", "000000000000", via_service=S3)
CTX = {"aws:s3:arn": "arn:aws:s3:::bucket/key"}


@pytest.fixture
def svc():  # type: ignore[no-untyped-def]
    s = memory_data_keys()
    assert isinstance(s, DataKeySource)
    return s


def test_generate_and_decrypt_data_key(svc) -> None:
    kid = svc.create_key(ALICE).key_id
    dk = svc.generate_data_key(ALICE, kid, CTX)
    assert len(dk.plaintext) == 32 and dk.key_arn.endswith(kid)
    assert svc.decrypt_data_key(ALICE, dk.ciphertext_blob, CTX).plaintext == dk.plaintext
    with pytest.raises(InvalidCiphertextException):
        svc.decrypt_data_key(ALICE, dk.ciphertext_blob, {"aws:s3:arn": "arn:aws:s3:::bucket/other"})
    assert "plaintext" not in repr(dk) and dk.plaintext.hex() not in repr(dk)


def test_resolve_key_errors_as_the_s3_path_needs(svc) -> None:
    kid = svc.create_key(ALICE).key_id
    svc.create_alias(ALICE, "alias/data", kid)
    assert svc.resolve_key(ALICE, "alias/data") == svc.key_arn(kid)
    with pytest.raises(NotFoundException):
        svc.resolve_key(ALICE, "alias/none")
    svc.disable_key(ALICE, kid)
    with pytest.raises(DisabledException):
        svc.resolve_key(ALICE, kid)
    svc.schedule_key_deletion(ALICE, kid, 7)
    with pytest.raises(KMSInvalidStateException):
        svc.resolve_key(ALICE, kid)


def test_aws_managed_key_created_once_usable_by_all_via_s3(svc) -> None:
    arn = svc.aws_managed_key(ALICE)
    assert svc.aws_managed_key(BOB) == arn
    md = svc.describe_key(ALICE, "alias/aws/s3")
    assert md.key_manager == "AWS" and md.arn == arn
    dk = svc.generate_data_key(BOB, arn, CTX)
    assert svc.decrypt_data_key(ALICE, dk.ciphertext_blob, CTX).plaintext == dk.plaintext
    direct = Caller("AKIABOB", "bob", "000000000000")  # not via S3: the AWS-managed policy does not allow it
    with pytest.raises(AccessDeniedException):
        svc.generate_data_key(direct, arn, CTX)
    for change in (svc.disable_key, lambda c, k: svc.schedule_key_deletion(c, k, 7)):
        with pytest.raises(AccessDeniedException):  # users cannot disable or delete AWS-managed keys
            change(ALICE, md.key_id)


def test_service_key_is_invisible_to_users(svc) -> None:
    arn = svc.service_key()
    assert svc.service_key() == arn
    kid = arn.rsplit("/", 1)[1]
    sc = svc.service_caller("req-s")
    dk = svc.generate_data_key(sc, arn, CTX)
    assert svc.decrypt_data_key(sc, dk.ciphertext_blob, CTX).plaintext == dk.plaintext
    with pytest.raises(NotFoundException):
        svc.describe_key(ALICE, kid)
    with pytest.raises(NotFoundException):
        svc.decrypt_data_key(ALICE, dk.ciphertext_blob, CTX)
    assert kid not in [k for k, _ in svc.list_keys(ALICE)]
    own = [r for r in svc.audit.records if r["userIdentity"]["type"] == "AWSService"]
    assert [r["eventName"] for r in own] == ["GenerateDataKey", "Decrypt"]
    assert own[0]["userIdentity"] == {"type": "AWSService", "invokedBy": "s3.amazonaws.com"} and own[0]["requestID"] == "req-s"



def test_data_path_calls_are_audited_with_the_caller_and_context(svc) -> None:
    kid = svc.create_key(ALICE).key_id
    dk = svc.generate_data_key(ALICE, kid, CTX)
    svc.decrypt_data_key(ALICE, dk.ciphertext_blob, CTX)
    gen, dec = svc.audit.records[-2:]
    assert (gen["eventName"], dec["eventName"]) == ("GenerateDataKey", "Decrypt")
    for r in (gen, dec):
        assert r["userIdentity"]["accessKeyId"] == "AKIAALICE" and r["userIdentity"]["invokedBy"] == S3
        assert r["requestParameters"]["encryptionContext"] == CTX
        assert r["resources"][0]["ARN"] == svc.key_arn(kid)
        assert (r["sourceIPAddress"], r["userAgent"], r["requestID"]) == ("10.0.0.1", "ua", "req-1")
    assert gen["requestParameters"]["keyId"] == kid
