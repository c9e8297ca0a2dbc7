"""Bring your own key: CreateKey Origin=EXTERNAL, GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial.

Real boto3 against the KMS served over HTTP; the owner's side wraps with `cryptography` exactly as
`openssl pkeyutl` / `openssl enc -id-aes256-wrap-pad` do (tests/e2e/test_import_awscli.py runs the
real openssl). Each imported key is then shown to be the imported material: an HMAC matches Python's
hmac, a signature verifies under the imported key's public half, ECDH matches the peer's side.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding


def _error(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def wrap(params: dict[str, Any], material: bytes, algorithm: str) -> bytes:
    """What the key owner does: wrap `material` under the downloaded public key with `algorithm`."""
    public = serialization.load_der_public_key(params["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey)
    h = hashes.SHA1() if algorithm.endswith("_SHA_1") else hashes.SHA256()
    oaep = padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)
    if algorithm.startswith("RSAES_OAEP_"):
        return public.encrypt(material, oaep)
    aes_key = os.urandom(32)
    return public.encrypt(aes_key, oaep) + aes_key_wrap_with_padding(aes_key, material)


def import_into(client: Any, key_id: str, material: bytes, algorithm: str = "RSAES_OAEP_SHA_256",
                spec: str = "RSA_2048", **kwargs: Any) -> dict[str, Any]:
    params = client.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec=spec)
    kwargs.setdefault("ExpirationModel", "KEY_MATERIAL_DOES_NOT_EXPIRE")
    return client.import_key_material(KeyId=key_id, ImportToken=params["ImportToken"],
                                      EncryptedKeyMaterial=wrap(params, material, algorithm), **kwargs)


def external_key(client: Any, **kwargs: Any) -> str:
    meta = client.create_key(Origin="EXTERNAL", **kwargs)["KeyMetadata"]
    assert meta["Origin"] == "EXTERNAL" and meta["KeyState"] == "PendingImport" and meta["Enabled"] is False
    return meta["KeyId"]


@pytest.mark.parametrize("algorithm", ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1",
                                       "RSA_AES_KEY_WRAP_SHA_256"])
@pytest.mark.parametrize("spec", ["RSA_2048", "RSA_3072", "RSA_4096"])
def test_symmetric_import_with_each_wrapping_algorithm_and_key_spec(alice, algorithm, spec):
    key_id = external_key(alice)
    with pytest.raises(ClientError) as e:
        alice.encrypt(KeyId=key_id, Plaintext=b"x")
    assert _error(e) == "KMSInvalidStateException" and "pending import" in str(e.value)
    params = alice.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec=spec)
    public = serialization.load_der_public_key(params["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == int(spec[4:])
    assert 23.9 * 3600 < params["ParametersValidTo"].timestamp() - time.time() <= 24 * 3600
    material = os.urandom(32)
    out = alice.import_key_material(KeyId=key_id, ImportToken=params["ImportToken"],
                                    EncryptedKeyMaterial=wrap(params, material, algorithm),
                                    ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert out["KeyId"].endswith(key_id) and len(out["KeyMaterialId"]) == 64
    meta = alice.describe_key(KeyId=key_id)["KeyMetadata"]
    assert (meta["KeyState"], meta["Enabled"], meta["ExpirationModel"]) == ("Enabled", True, "KEY_MATERIAL_DOES_NOT_EXPIRE")
    blob = alice.encrypt(KeyId=key_id, Plaintext=b"imported", EncryptionContext={"a": "b"})["CiphertextBlob"]
    assert alice.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})["Plaintext"] == b"imported"
    data_key = alice.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    assert alice.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]


def test_hmac_import_is_the_material_imported(alice):
    key_id = external_key(alice, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    material = os.urandom(32)
    import_into(alice, key_id, material)
    mac = alice.generate_mac(KeyId=key_id, Message=b"message", MacAlgorithm="HMAC_SHA_256")["Mac"]
    assert mac == hmac.digest(material, b"message", hashlib.sha256)


@pytest.mark.parametrize("key_spec", ["RSA_2048", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P521", "ECC_SECG_P256K1"])
def test_asymmetric_signing_import_signs_with_the_imported_key(alice, key_spec):
    if key_spec.startswith("RSA"):
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=int(key_spec[4:]))
        algorithm, verify_args = "RSASSA_PSS_SHA_256", (padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    else:
        curve = {"ECC_NIST_P256": ec.SECP256R1, "ECC_NIST_P521": ec.SECP521R1, "ECC_SECG_P256K1": ec.SECP256K1}[key_spec]
        private = ec.generate_private_key(curve())
        algorithm = {"ECC_NIST_P521": "ECDSA_SHA_512"}.get(key_spec, "ECDSA_SHA_256")
        verify_args = (ec.ECDSA(hashes.SHA512() if key_spec == "ECC_NIST_P521" else hashes.SHA256()),)
    der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_id = external_key(alice, KeySpec=key_spec, KeyUsage="SIGN_VERIFY")
    import_into(alice, key_id, der, "RSA_AES_KEY_WRAP_SHA_256", "RSA_3072")
    spki = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert alice.get_public_key(KeyId=key_id)["PublicKey"] == spki
    signature = alice.sign(KeyId=key_id, Message=b"signed", SigningAlgorithm=algorithm)["Signature"]
    private.public_key().verify(signature, b"signed", *verify_args)


def test_rsa_encryption_import_decrypts_what_the_owner_encrypts(alice):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_id = external_key(alice, KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")
    import_into(alice, key_id, der, "RSA_AES_KEY_WRAP_SHA_1", "RSA_2048")
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    blob = private.public_key().encrypt(b"for the kms", oaep)
    out = alice.decrypt(KeyId=key_id, CiphertextBlob=blob, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert out["Plaintext"] == b"for the kms"


def test_material_of_the_wrong_kind_is_refused(alice):
    key_id = external_key(alice)
    for material in (os.urandom(16), os.urandom(33)):
        with pytest.raises(ClientError) as e:
            import_into(alice, key_id, material)
        assert _error(e) == "IncorrectKeyMaterialException"
    ecc = external_key(alice, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ClientError) as e:
        import_into(alice, ecc, p384, "RSA_AES_KEY_WRAP_SHA_256")
    assert _error(e) == "IncorrectKeyMaterialException"
    assert alice.describe_key(KeyId=ecc)["KeyMetadata"]["KeyState"] == "PendingImport"


def test_wrong_token_and_wrong_wrapping_algorithm(alice):
    key_id, other = external_key(alice), external_key(alice)
    material = os.urandom(32)
    params, other_params = (alice.get_parameters_for_import(KeyId=k, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                                            WrappingKeySpec="RSA_2048") for k in (key_id, other))
    wrapped = wrap(params, material, "RSAES_OAEP_SHA_256")
    cases = [
        (other_params["ImportToken"], wrapped, "InvalidImportTokenException"),  # another key's token
        (os.urandom(len(params["ImportToken"])), wrapped, "InvalidImportTokenException"),  # made up
        (params["ImportToken"][:-1] + bytes([params["ImportToken"][-1] ^ 1]), wrapped, "InvalidImportTokenException"),
        (params["ImportToken"], wrap(params, material, "RSAES_OAEP_SHA_1"), "InvalidCiphertextException"),  # algorithm
        (params["ImportToken"], wrap(params, material, "RSA_AES_KEY_WRAP_SHA_256"), "InvalidCiphertextException"),
        (params["ImportToken"], wrap(other_params, material, "RSAES_OAEP_SHA_256"), "InvalidCiphertextException"),  # key
        (params["ImportToken"], os.urandom(256), "InvalidCiphertextException"),
    ]
    for token, blob, code in cases:
        with pytest.raises(ClientError) as e:
            alice.import_key_material(KeyId=key_id, ImportToken=token, EncryptedKeyMaterial=blob,
                                      ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
        assert _error(e) == code, (code, e.value)
    assert alice.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"
    # a newer GetParametersForImport replaces the older pair: its token no longer imports
    alice.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    with pytest.raises(ClientError) as e:
        alice.import_key_material(KeyId=key_id, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped,
                                  ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert _error(e) == "InvalidImportTokenException"


def test_parameters_are_refused_where_aws_refuses_them(alice):
    generated = alice.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as e:
        alice.get_parameters_for_import(KeyId=generated, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    assert _error(e) == "UnsupportedOperationException"
    key_id = external_key(alice)
    for algorithm, spec, code in (("RSAES_PKCS1_V1_5", "RSA_2048", "UnsupportedOperationException"),
                                  ("SM2PKE", "SM2", "UnsupportedOperationException"),
                                  ("RSAES_OAEP_SHA_256", "SM2", "UnsupportedOperationException")):
        with pytest.raises(ClientError) as e:
            alice.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec=spec)
        assert _error(e) == code
    with pytest.raises(ClientError) as e:
        alice.import_key_material(KeyId=generated, ImportToken=b"t", EncryptedKeyMaterial=b"m",
                                  ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert _error(e) == "UnsupportedOperationException"
    for op in (alice.enable_key, alice.disable_key):
        with pytest.raises(ClientError) as e:
            op(KeyId=key_id)
        assert _error(e) == "KMSInvalidStateException"
    with pytest.raises(ClientError) as e:
        alice.enable_key_rotation(KeyId=key_id)
    assert _error(e) == "UnsupportedOperationException"


def test_valid_to_rules(alice):
    key_id = external_key(alice)
    material = os.urandom(32)
    now = time.time()
    for kwargs in ({"ExpirationModel": "KEY_MATERIAL_EXPIRES"},  # ValidTo missing
                   {},  # the default model expires: ValidTo is needed
                   {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "ValidTo": now + 3600},
                   {"ExpirationModel": "KEY_MATERIAL_EXPIRES", "ValidTo": now - 60},
                   {"ExpirationModel": "KEY_MATERIAL_EXPIRES", "ValidTo": now + 366 * 86400}):
        params = alice.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
        kwargs.setdefault("ExpirationModel", None)
        if kwargs["ExpirationModel"] is None:
            del kwargs["ExpirationModel"]
        with pytest.raises(ClientError) as e:
            alice.import_key_material(KeyId=key_id, ImportToken=params["ImportToken"],
                                      EncryptedKeyMaterial=wrap(params, material, "RSAES_OAEP_SHA_256"), **kwargs)
        assert _error(e) == "ValidationException", kwargs
    import_into(alice, key_id, material, ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=now + 365 * 86400 - 60)
    meta = alice.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["ExpirationModel"] == "KEY_MATERIAL_EXPIRES" and abs(meta["ValidTo"].timestamp() - (now + 365 * 86400 - 60)) < 2


def test_expiry_is_enforced_and_only_the_same_material_comes_back(kms_factory):
    now = [1_700_000_000.0]
    server = kms_factory(clock=lambda: now[0])
    alice = server.client("alice")
    key_id = external_key(alice)
    material = os.urandom(32)
    import_into(alice, key_id, material, ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=now[0] + 3600)
    blob = alice.encrypt(KeyId=key_id, Plaintext=b"before expiry")["CiphertextBlob"]
    now[0] += 3599
    assert alice.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before expiry"
    now[0] += 2
    for call in (lambda: alice.decrypt(CiphertextBlob=blob), lambda: alice.encrypt(KeyId=key_id, Plaintext=b"x"),
                 lambda: alice.generate_data_key(KeyId=key_id, KeySpec="AES_256")):
        with pytest.raises(ClientError) as e:
            call()
        assert _error(e) == "KMSInvalidStateException"
    meta = alice.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "PendingImport" and "ValidTo" not in meta
    # other material never enters; the same material does, and the old blob opens again
    with pytest.raises(ClientError) as e:
        import_into(alice, key_id, os.urandom(32))
    assert _error(e) == "IncorrectKeyMaterialException"
    import_into(alice, key_id, material, "RSA_AES_KEY_WRAP_SHA_256", "RSA_4096")
    assert alice.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before expiry"
    # the import token and wrapping key expire after 24 hours
    params = alice.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    now[0] += 24 * 3600 + 1
    with pytest.raises(ClientError) as e:
        alice.import_key_material(KeyId=key_id, ImportToken=params["ImportToken"],
                                  EncryptedKeyMaterial=wrap(params, material, "RSAES_OAEP_SHA_256"),
                                  ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert _error(e) == "ExpiredImportTokenException"
    # a restart keeps the imported material (sealed in the keystore) and its rules
    server.close()
    alice = kms_factory(clock=lambda: now[0]).client("alice")
    assert alice.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before expiry"


def test_delete_imported_key_material_and_reimport(alice):
    key_id = external_key(alice)
    material = os.urandom(32)
    imported = import_into(alice, key_id, material)
    blob = alice.encrypt(KeyId=key_id, Plaintext=b"kept")["CiphertextBlob"]
    out = alice.delete_imported_key_material(KeyId=key_id)
    assert out["KeyMaterialId"] == imported["KeyMaterialId"]
    assert alice.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"
    with pytest.raises(ClientError) as e:
        alice.decrypt(CiphertextBlob=blob)
    assert _error(e) == "KMSInvalidStateException"
    import_into(alice, key_id, material)
    assert alice.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"
    # deletion while waiting for deletion is refused; cancelling brings back Disabled (material) or PendingImport
    alice.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    with pytest.raises(ClientError) as e:
        alice.delete_imported_key_material(KeyId=key_id)
    assert _error(e) == "KMSInvalidStateException"
    alice.cancel_key_deletion(KeyId=key_id)
    assert alice.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    empty = external_key(alice)
    alice.schedule_key_deletion(KeyId=empty, PendingWindowInDays=7)
    alice.cancel_key_deletion(KeyId=empty)
    assert alice.describe_key(KeyId=empty)["KeyMetadata"]["KeyState"] == "PendingImport"


def test_another_user_needs_the_key_policy(alice, bob):
    key_id = external_key(alice)
    with pytest.raises(ClientError) as e:
        bob.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    assert _error(e) == "AccessDeniedException"


def test_material_and_token_never_reach_the_audit_log(kms, alice):
    key_id = external_key(alice)
    material = os.urandom(32)
    params = alice.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    alice.import_key_material(KeyId=key_id, ImportToken=params["ImportToken"],
                              EncryptedKeyMaterial=wrap(params, material, "RSAES_OAEP_SHA_256"),
                              ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    log = (kms.data_dir / "kms" / "audit.log").read_bytes()
    assert b'"eventName":"ImportKeyMaterial"' in log.replace(b" ", b"")
    import base64

    for secret in (material, params["ImportToken"]):
        assert secret not in log and base64.b64encode(secret) not in log and secret.hex().encode() not in log
    keystore = (kms.data_dir / "kms" / "keystore.sqlite3").read_bytes()
    assert material not in keystore and base64.b64encode(material) not in keystore
