"""Key agreement: KEY_AGREEMENT ECC keys, GetPublicKey and DeriveSharedSecret (ECDH), checked against the peer's
own computation in `cryptography`."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.kms.test_import import external_key, import_into

CURVES = {"ECC_NIST_P256": ec.SECP256R1, "ECC_NIST_P384": ec.SECP384R1, "ECC_NIST_P521": ec.SECP521R1}


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


@pytest.mark.parametrize("key_spec", sorted(CURVES))
def test_shared_secret_matches_the_peer(alice, key_spec):
    meta = alice.create_key(KeySpec=key_spec, KeyUsage="KEY_AGREEMENT")["KeyMetadata"]
    assert meta["KeyAgreementAlgorithms"] == ["ECDH"] and "SigningAlgorithms" not in meta
    public = alice.get_public_key(KeyId=meta["KeyId"])
    assert public["KeyUsage"] == "KEY_AGREEMENT" and public["KeyAgreementAlgorithms"] == ["ECDH"]
    kms_public = serialization.load_der_public_key(public["PublicKey"])
    assert isinstance(kms_public, ec.EllipticCurvePublicKey)
    peer = ec.generate_private_key(CURVES[key_spec]())
    out = alice.derive_shared_secret(KeyId=meta["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=_spki(peer))
    assert out["SharedSecret"] == peer.exchange(ec.ECDH(), kms_public)
    assert (out["KeyAgreementAlgorithm"], out["KeyOrigin"], out["KeyId"]) == ("ECDH", "AWS_KMS", meta["Arn"])
    # by alias too, and two peers get two secrets
    alice.create_alias(AliasName=f"alias/ka-{meta['KeyId'][:8]}", TargetKeyId=meta["KeyId"])
    other = ec.generate_private_key(CURVES[key_spec]())
    again = alice.derive_shared_secret(KeyId=f"alias/ka-{meta['KeyId'][:8]}", KeyAgreementAlgorithm="ECDH",
                                       PublicKey=_spki(other))["SharedSecret"]
    assert again == other.exchange(ec.ECDH(), kms_public) != out["SharedSecret"]


def test_imported_key_agreement_key_agrees_as_the_imported_key(alice):
    mine, peer = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    key_id = external_key(alice, KeySpec="ECC_NIST_P384", KeyUsage="KEY_AGREEMENT")
    der = mine.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    import_into(alice, key_id, der, "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048")
    out = alice.derive_shared_secret(KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=_spki(peer))
    assert out["SharedSecret"] == peer.exchange(ec.ECDH(), mine.public_key()) and out["KeyOrigin"] == "EXTERNAL"


def test_refusals(alice, bob):
    p256 = alice.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]["KeyId"]
    peer384 = _spki(ec.generate_private_key(ec.SECP384R1()))
    peer256 = _spki(ec.generate_private_key(ec.SECP256R1()))
    cases = [
        (dict(KeyId=p256, KeyAgreementAlgorithm="ECDH", PublicKey=peer384), "ValidationException"),  # another curve
        (dict(KeyId=p256, KeyAgreementAlgorithm="ECDH", PublicKey=b"not a key"), "ValidationException"),
        (dict(KeyId=p256, KeyAgreementAlgorithm="ECDH", PublicKey=_spki_rsa()), "ValidationException"),
        (dict(KeyId=p256, KeyAgreementAlgorithm="ECDHE", PublicKey=peer256), "ValidationException"),
    ]
    signing = alice.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    symmetric = alice.create_key()["KeyMetadata"]["KeyId"]
    cases += [(dict(KeyId=k, KeyAgreementAlgorithm="ECDH", PublicKey=peer256), "InvalidKeyUsageException")
              for k in (signing, symmetric)]
    for kwargs, code in cases:
        with pytest.raises(ClientError) as e:
            alice.derive_shared_secret(**kwargs)
        assert _code(e) == code, (kwargs.get("KeyAgreementAlgorithm"), code)
    with pytest.raises(ClientError) as e:  # bob is not in the key policy
        bob.derive_shared_secret(KeyId=p256, KeyAgreementAlgorithm="ECDH", PublicKey=peer256)
    assert _code(e) == "AccessDeniedException"
    alice.disable_key(KeyId=p256)
    with pytest.raises(ClientError) as e:
        alice.derive_shared_secret(KeyId=p256, KeyAgreementAlgorithm="ECDH", PublicKey=peer256)
    assert _code(e) == "DisabledException"
    for spec in ("ECC_SECG_P256K1", "RSA_2048", "SYMMETRIC_DEFAULT", "HMAC_256"):
        with pytest.raises(ClientError) as e:  # AWS: KEY_AGREEMENT only on the NIST curves
            alice.create_key(KeySpec=spec, KeyUsage="KEY_AGREEMENT")
        assert _code(e) == "ValidationException"


def _spki_rsa() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_a_grant_allows_it_and_the_audit_never_holds_the_secret(kms, alice, bob):
    meta = alice.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]
    alice.create_grant(KeyId=meta["KeyId"], GranteePrincipal="arn:aws:iam::000000000000:user/bob",
                       Operations=["DeriveSharedSecret", "GetPublicKey"])
    peer = ec.generate_private_key(ec.SECP256R1())
    secret = bob.derive_shared_secret(KeyId=meta["Arn"], KeyAgreementAlgorithm="ECDH", PublicKey=_spki(peer))["SharedSecret"]
    log = (kms.data_dir / "kms" / "audit.log").read_bytes()
    assert b"DeriveSharedSecret" in log and secret not in log and secret.hex().encode() not in log
    import base64

    assert base64.b64encode(secret) not in log
