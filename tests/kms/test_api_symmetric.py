"""Symmetric keys through boto3's KMS client: data keys, Encrypt/Decrypt/ReEncrypt, context binding, limits."""

from __future__ import annotations

import base64
import json

import pytest
from botocore.exceptions import ClientError, ParamValidationError


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


@pytest.fixture
def key(alice) -> dict:
    return alice.create_key(Description="symmetric")["KeyMetadata"]


def test_create_and_describe(alice, key) -> None:
    assert key["KeySpec"] == "SYMMETRIC_DEFAULT" and key["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert key["KeyState"] == "Enabled" and key["Enabled"] and key["KeyManager"] == "CUSTOMER"
    assert key["Arn"] == f"arn:aws:kms:us-east-1:000000000000:key/{key['KeyId']}"
    for ref in (key["KeyId"], key["Arn"]):
        assert alice.describe_key(KeyId=ref)["KeyMetadata"]["KeyId"] == key["KeyId"]


def test_list_keys_pages(alice, key) -> None:
    for _ in range(2):
        alice.create_key()
    ids = [
        k["KeyId"] for page in alice.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 1}) for k in page["Keys"]
    ]
    assert key["KeyId"] in ids and len(ids) == len(set(ids))


def test_update_description(alice, key) -> None:
    alice.update_key_description(KeyId=key["KeyId"], Description="renamed")
    assert alice.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Description"] == "renamed"


@pytest.mark.parametrize("ref", ["KeyId", "Arn", "alias", "alias_arn"])
def test_encrypt_decrypt_by_every_key_reference(alice, key, ref) -> None:
    name = f"alias/sym-{key['KeyId'][:8]}-{ref}"
    alice.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
    key_ref = {"KeyId": key["KeyId"], "Arn": key["Arn"], "alias": name,
               "alias_arn": f"arn:aws:kms:us-east-1:000000000000:{name}"}[ref]
    blob = alice.encrypt(KeyId=key_ref, Plaintext=b"attack at dawn")["CiphertextBlob"]
    out = alice.decrypt(CiphertextBlob=blob)  # no KeyId: the blob names its key
    assert out["Plaintext"] == b"attack at dawn" and out["KeyId"] == key["Arn"]
    assert alice.decrypt(CiphertextBlob=blob, KeyId=key_ref)["Plaintext"] == b"attack at dawn"


def test_unknown_key_is_not_found_with_aws_words(alice) -> None:
    missing = "11111111-2222-3333-4444-555555555555"
    with pytest.raises(ClientError) as e:
        alice.encrypt(KeyId=missing, Plaintext=b"x")
    assert code(e) == "NotFoundException"
    assert e.value.response["Error"]["Message"] == f"Key 'arn:aws:kms:us-east-1:000000000000:key/{missing}' does not exist"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as e:
        alice.encrypt(KeyId="alias/does-not-exist", Plaintext=b"x")
    assert code(e) == "NotFoundException"


# every row: (encrypt context, decrypt context) that must NOT open; why
MISMATCHES = [
    ({"a": "b"}, None),  # context dropped
    ({"a": "b"}, {"a": "B"}),  # values are case-sensitive
    ({"a": "b"}, {"A": "b"}),  # keys are case-sensitive
    ({"a": "b"}, {"a": "b", "c": "d"}),  # extra pair
    ({"ab": "c"}, {"a": "bc"}),  # the moto/LocalStack collision: must differ here
    (None, {"a": "b"}),  # context added
]


@pytest.mark.parametrize("enc,dec", MISMATCHES)
def test_context_is_bound(alice, key, enc, dec) -> None:
    blob = alice.encrypt(KeyId=key["KeyId"], Plaintext=b"p", **({"EncryptionContext": enc} if enc else {}))["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        alice.decrypt(CiphertextBlob=blob, **({"EncryptionContext": dec} if dec else {}))
    assert code(e) == "InvalidCiphertextException"


def test_context_order_does_not_matter(alice, key) -> None:
    blob = alice.encrypt(KeyId=key["KeyId"], Plaintext=b"p", EncryptionContext={"a": "1", "b": "2"})["CiphertextBlob"]
    assert alice.decrypt(CiphertextBlob=blob, EncryptionContext={"b": "2", "a": "1"})["Plaintext"] == b"p"


def test_generate_data_key_variants(alice, key) -> None:
    ctx = {"bucket": "b", "key": "k"}
    dk = alice.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256", EncryptionContext=ctx)
    assert len(dk["Plaintext"]) == 32 and dk["KeyId"] == key["Arn"]
    assert alice.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == dk["Plaintext"]
    assert len(alice.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_128")["Plaintext"]) == 16
    assert len(alice.generate_data_key(KeyId=key["KeyId"], NumberOfBytes=1024)["Plaintext"]) == 1024
    wp = alice.generate_data_key_without_plaintext(KeyId=key["KeyId"], KeySpec="AES_256", EncryptionContext=ctx)
    assert "Plaintext" not in wp
    assert len(alice.decrypt(CiphertextBlob=wp["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"]) == 32


@pytest.mark.parametrize("params", [{}, {"KeySpec": "AES_256", "NumberOfBytes": 32}])  # neither / both
def test_generate_data_key_needs_exactly_one_size(alice, key, params) -> None:
    with pytest.raises(ClientError) as e:
        alice.generate_data_key(KeyId=key["KeyId"], **params)
    assert code(e) == "ValidationException"


def test_re_encrypt_moves_between_keys_and_contexts(alice, key) -> None:
    other = alice.create_key()["KeyMetadata"]
    blob = alice.encrypt(KeyId=key["KeyId"], Plaintext=b"data", EncryptionContext={"v": "1"})["CiphertextBlob"]
    out = alice.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"v": "1"},
                           DestinationKeyId=other["KeyId"], DestinationEncryptionContext={"v": "2"})
    assert out["SourceKeyId"] == key["Arn"] and out["KeyId"] == other["Arn"]
    assert alice.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"v": "2"})["Plaintext"] == b"data"
    with pytest.raises(ClientError) as e:
        alice.re_encrypt(CiphertextBlob=blob, DestinationKeyId=other["KeyId"])  # source context missing
    assert code(e) == "InvalidCiphertextException"


def test_decrypt_with_the_wrong_key_id_is_incorrect_key(alice, key) -> None:
    other = alice.create_key()["KeyMetadata"]
    blob = alice.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        alice.decrypt(CiphertextBlob=blob, KeyId=other["KeyId"])
    assert code(e) == "IncorrectKeyException"


def test_garbage_ciphertext_is_invalid(alice) -> None:
    with pytest.raises(ClientError) as e:
        alice.decrypt(CiphertextBlob=b"not a blob at all" * 5)
    assert code(e) == "InvalidCiphertextException"


def test_limits(alice, kms, key) -> None:
    assert len(alice.encrypt(KeyId=key["KeyId"], Plaintext=b"x" * 4096)["CiphertextBlob"]) == 4096 + 70
    # botocore checks some limits itself; the server must enforce them for any client, so call dispatch directly
    from s3proxy.kms.caller import Caller

    caller = Caller("AKIAALICE000000000001", "alice", "000000000000")
    body = json.dumps(
        {"KeyId": key["KeyId"], "Plaintext": base64.b64encode(b"x" * 4097).decode()}, separators=(",", ":")
    ).encode()
    status, out = kms.api.dispatch("TrentService.Encrypt", body, caller)
    assert status == 400 and b"ValidationException" in out
    for n in (0, 1025):
        status, out = kms.api.dispatch("TrentService.GenerateRandom", b'{"NumberOfBytes": %d}' % n, caller)
        assert status == 400 and b"ValidationException" in out
    status, out = kms.api.dispatch("TrentService.Nope", b"{}", caller)
    assert status == 400 and b"UnknownOperationException" in out
    status, out = kms.api.dispatch("TrentService.Encrypt", b"{not json", caller)
    assert status == 400 and b"SerializationException" in out
    status, out = kms.api.dispatch("TrentService.GenerateRandom", b'{"NumberOfBytes": 8, "DryRun": true}', caller)
    assert status == 400 and b"UnsupportedOperationException" in out  # never a silent real call


def test_generate_random(alice) -> None:
    a, b = (alice.generate_random(NumberOfBytes=1024)["Plaintext"] for _ in range(2))
    assert len(a) == 1024 and a != b
    with pytest.raises(ParamValidationError):  # botocore's own check of the 1..1024 range
        alice.generate_random(NumberOfBytes=0)
