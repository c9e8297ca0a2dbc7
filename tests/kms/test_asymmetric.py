"""RSA, ECC and HMAC keys through boto3: encrypt/decrypt, sign/verify, MACs, public keys, data key pairs."""

from __future__ import annotations

import hashlib

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding


def code(e: pytest.ExceptionInfo[ClientError]) -> str:
    return e.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def rsa_sign(kms) -> str:
    return kms.client().create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]


@pytest.mark.parametrize("alg", ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
def test_rsa_encrypt_decrypt(alice, alg) -> None:
    md = alice.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
    assert md["EncryptionAlgorithms"] == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    blob = alice.encrypt(KeyId=md["KeyId"], Plaintext=b"rsa secret", EncryptionAlgorithm=alg)["CiphertextBlob"]
    assert alice.decrypt(CiphertextBlob=blob, KeyId=md["KeyId"], EncryptionAlgorithm=alg)["Plaintext"] == b"rsa secret"
    # anyone holding the public key can encrypt; KMS decrypts
    pub = serialization.load_der_public_key(alice.get_public_key(KeyId=md["KeyId"])["PublicKey"])
    h = hashes.SHA1() if alg.endswith("_1") else hashes.SHA256()
    outside = pub.encrypt(b"from outside", padding.OAEP(padding.MGF1(h), h, None))  # type: ignore[union-attr]
    assert alice.decrypt(CiphertextBlob=outside, KeyId=md["KeyId"], EncryptionAlgorithm=alg)["Plaintext"] == b"from outside"
    with pytest.raises(ClientError) as e:  # RSA blobs do not name their key
        alice.decrypt(CiphertextBlob=blob, EncryptionAlgorithm=alg)
    assert code(e) == "InvalidCiphertextException"
    with pytest.raises(ClientError) as e:
        alice.encrypt(KeyId=md["KeyId"], Plaintext=b"x", EncryptionAlgorithm=alg, EncryptionContext={"a": "b"})
    assert code(e) == "ValidationException"


@pytest.mark.parametrize("alg", [f"RSASSA_{p}_SHA_{n}" for p in ("PSS", "PKCS1_V1_5") for n in (256, 384, 512)])
def test_rsa_sign_verify(alice, rsa_sign, alg) -> None:
    sig = alice.sign(KeyId=rsa_sign, Message=b"msg", SigningAlgorithm=alg)["Signature"]
    assert alice.verify(KeyId=rsa_sign, Message=b"msg", Signature=sig, SigningAlgorithm=alg)["SignatureValid"]
    with pytest.raises(ClientError) as e:
        alice.verify(KeyId=rsa_sign, Message=b"other", Signature=sig, SigningAlgorithm=alg)
    assert code(e) == "KMSInvalidSignatureException"
    pub = serialization.load_der_public_key(alice.get_public_key(KeyId=rsa_sign)["PublicKey"])
    h = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[-3:]]
    pad = padding.PSS(padding.MGF1(h), h.digest_size) if "PSS" in alg else padding.PKCS1v15()
    pub.verify(sig, b"msg", pad, h)  # type: ignore[union-attr,call-arg,arg-type]  # verifiable outside KMS


@pytest.mark.parametrize("spec,alg,curve", [
    ("ECC_NIST_P256", "ECDSA_SHA_256", ec.SECP256R1), ("ECC_NIST_P384", "ECDSA_SHA_384", ec.SECP384R1),
    ("ECC_NIST_P521", "ECDSA_SHA_512", ec.SECP521R1), ("ECC_SECG_P256K1", "ECDSA_SHA_256", ec.SECP256K1),
])
def test_ecc_sign_verify_raw_and_digest(alice, spec, alg, curve) -> None:
    kid = alice.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    pub = serialization.load_der_public_key(alice.get_public_key(KeyId=kid)["PublicKey"])
    assert isinstance(pub.curve, curve)  # type: ignore[union-attr]
    sig = alice.sign(KeyId=kid, Message=b"hello", SigningAlgorithm=alg)["Signature"]
    h = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}[alg[-3:]]
    dsig = alice.sign(KeyId=kid, Message=h(b"hello").digest(), MessageType="DIGEST", SigningAlgorithm=alg)["Signature"]
    for s in (sig, dsig):
        assert alice.verify(KeyId=kid, Message=b"hello", Signature=s, SigningAlgorithm=alg)["SignatureValid"]
    with pytest.raises(ClientError) as e:
        alice.sign(KeyId=kid, Message=b"hello", SigningAlgorithm="RSASSA_PSS_SHA_256")
    assert code(e) == "InvalidKeyUsageException"


@pytest.mark.parametrize("spec", ["HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512"])
def test_hmac(alice, spec) -> None:
    md = alice.create_key(KeySpec=spec, KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
    alg = f"HMAC_SHA_{spec[5:]}"
    assert md["MacAlgorithms"] == [alg]
    mac = alice.generate_mac(KeyId=md["KeyId"], Message=b"m", MacAlgorithm=alg)["Mac"]
    assert len(mac) == int(spec[5:]) // 8
    assert alice.verify_mac(KeyId=md["KeyId"], Message=b"m", Mac=mac, MacAlgorithm=alg)["MacValid"]
    with pytest.raises(ClientError) as e:
        alice.verify_mac(KeyId=md["KeyId"], Message=b"n", Mac=mac, MacAlgorithm=alg)
    assert code(e) == "KMSInvalidMacException"
    for call in (lambda: alice.encrypt(KeyId=md["KeyId"], Plaintext=b"x"),
                 lambda: alice.generate_data_key(KeyId=md["KeyId"], KeySpec="AES_256")):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == "InvalidKeyUsageException"
    with pytest.raises(ClientError) as e:
        alice.get_public_key(KeyId=md["KeyId"])
    assert code(e) == "UnsupportedOperationException"


@pytest.mark.parametrize(
    "spec,usage", [("ECC_NIST_P256", "ENCRYPT_DECRYPT"), ("HMAC_256", "SIGN_VERIFY"), ("SYMMETRIC_DEFAULT", "SIGN_VERIFY")]
)
def test_incompatible_spec_and_usage(alice, spec, usage) -> None:
    with pytest.raises(ClientError) as e:
        alice.create_key(KeySpec=spec, KeyUsage=usage)
    assert code(e) == "ValidationException"


@pytest.mark.parametrize("spec", ["RSA_2048", "ECC_NIST_P256", "ECC_SECG_P256K1"])
def test_data_key_pairs(alice, spec) -> None:
    kid = alice.create_key()["KeyMetadata"]["KeyId"]
    ctx = {"purpose": "pair"}
    pair = alice.generate_data_key_pair(KeyId=kid, KeyPairSpec=spec, EncryptionContext=ctx)
    private = alice.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext=ctx)["Plaintext"]
    assert private == pair["PrivateKeyPlaintext"]
    key = serialization.load_der_private_key(private, None)
    assert (
        key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        == pair["PublicKey"]
    )
    bare = alice.generate_data_key_pair_without_plaintext(KeyId=kid, KeyPairSpec=spec)
    assert "PrivateKeyPlaintext" not in bare and bare["PublicKey"]
