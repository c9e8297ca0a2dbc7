"""Key specs and the cryptography of non-symmetric keys: generation, RSA encrypt, sign/verify, HMAC, ECDH.

Pure functions over key material bytes (PKCS#8 DER for private keys, raw bytes for HMAC and
symmetric keys). Which algorithms each spec and usage allows follows the AWS KMS developer
guide's "Key spec reference".
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .errors import InvalidCiphertextException, InvalidKeyUsageException, ValidationException, member_error

SYMMETRIC = "SYMMETRIC_DEFAULT"
ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"
SIGN_VERIFY = "SIGN_VERIFY"
GENERATE_VERIFY_MAC = "GENERATE_VERIFY_MAC"
KEY_AGREEMENT = "KEY_AGREEMENT"
ECDH = "ECDH"

_RSA_BITS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
_CURVES: dict[str, tuple[Callable[[], ec.EllipticCurve], str]] = {
    "ECC_NIST_P256": (ec.SECP256R1, "ECDSA_SHA_256"),
    "ECC_NIST_P384": (ec.SECP384R1, "ECDSA_SHA_384"),
    "ECC_NIST_P521": (ec.SECP521R1, "ECDSA_SHA_512"),
    "ECC_SECG_P256K1": (ec.SECP256K1, "ECDSA_SHA_256"),
}
_HMAC_BYTES = {"HMAC_224": 28, "HMAC_256": 32, "HMAC_384": 48, "HMAC_512": 64}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "SHA_1": hashes.SHA1, "SHA_256": hashes.SHA256, "SHA_384": hashes.SHA384, "SHA_512": hashes.SHA512,
}
RSA_ENCRYPTION = ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256")
RSA_SIGNING = tuple(f"RSASSA_{p}_SHA_{n}" for p in ("PSS", "PKCS1_V1_5") for n in (256, 384, 512))
_AGREEMENT_CURVES = ("ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521")  # NIST curves only, as in AWS
KEY_SPECS = (SYMMETRIC, *_RSA_BITS, *_CURVES, *_HMAC_BYTES)
DATA_KEY_PAIR_SPECS = (*_RSA_BITS, *_CURVES)
MAX_MESSAGE = 4096


@dataclass(frozen=True)
class SpecInfo:
    """What a key of one spec and usage may do (the lists KeyMetadata reports)."""

    encryption: tuple[str, ...] = ()
    signing: tuple[str, ...] = ()
    mac: tuple[str, ...] = ()
    key_agreement: tuple[str, ...] = ()


def spec_info(key_spec: str, key_usage: str) -> SpecInfo:
    """Validate a (KeySpec, KeyUsage) pair as CreateKey does and say which algorithms it allows."""
    if key_spec == SYMMETRIC and key_usage == ENCRYPT_DECRYPT:
        return SpecInfo(encryption=(SYMMETRIC,))
    if key_spec in _RSA_BITS and key_usage == ENCRYPT_DECRYPT:
        return SpecInfo(encryption=RSA_ENCRYPTION)
    if key_spec in _RSA_BITS and key_usage == SIGN_VERIFY:
        return SpecInfo(signing=RSA_SIGNING)
    if key_spec in _CURVES and key_usage == SIGN_VERIFY:
        return SpecInfo(signing=(_CURVES[key_spec][1],))
    if key_spec in _AGREEMENT_CURVES and key_usage == KEY_AGREEMENT:
        return SpecInfo(key_agreement=(ECDH,))
    if key_spec in _HMAC_BYTES and key_usage == GENERATE_VERIFY_MAC:
        return SpecInfo(mac=(f"HMAC_SHA_{key_spec[5:]}",))
    if key_spec not in KEY_SPECS:
        raise member_error("keySpec", f"satisfy enum value set: {list(KEY_SPECS)}", key_spec)
    raise ValidationException(f"KeyUsage {key_usage} is not compatible with KeySpec {key_spec}")


def default_usage(key_spec: str) -> str:
    """CreateKey's KeyUsage when none is given (a key agreement key must say so)."""
    if key_spec in _HMAC_BYTES:
        return GENERATE_VERIFY_MAC
    if key_spec in _CURVES:
        return SIGN_VERIFY
    return ENCRYPT_DECRYPT


def generate_material(key_spec: str, rand: Callable[[int], bytes] = os.urandom) -> bytes:
    """Fresh key material for `key_spec`: raw bytes (symmetric, HMAC) or a PKCS#8 DER private key."""
    if key_spec == SYMMETRIC:
        return rand(32)
    if key_spec in _HMAC_BYTES:
        return rand(_HMAC_BYTES[key_spec])
    return _private_der(_new_private(key_spec))


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _new_private(key_spec: str) -> PrivateKey:
    if key_spec in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[key_spec])
    if key_spec in _CURVES:
        return ec.generate_private_key(_CURVES[key_spec][0]())
    raise ValidationException(f"KeyPairSpec {key_spec} is not supported")


def _private_der(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _load_private(material: bytes) -> PrivateKey:
    key = serialization.load_der_private_key(material, password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):  # only these are ever generated
        raise InvalidKeyUsageException("The key material is not an RSA or ECC private key.")
    return key


def _load_rsa(material: bytes) -> rsa.RSAPrivateKey:
    key = _load_private(material)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidKeyUsageException("The key material is not an RSA private key.")
    return key


def public_key_der(material: bytes) -> bytes:
    """The SubjectPublicKeyInfo DER of a private key's public half (what GetPublicKey returns)."""
    return _load_private(material).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def generate_key_pair(key_pair_spec: str) -> tuple[bytes, bytes]:
    """A data key pair: (PKCS#8 DER private key, SPKI DER public key)."""
    if key_pair_spec not in DATA_KEY_PAIR_SPECS:
        raise ValidationException(f"KeyPairSpec {key_pair_spec} is not supported")
    private = _private_der(_new_private(key_pair_spec))
    return private, public_key_der(private)


def _oaep(algorithm: str) -> tuple[padding.OAEP, int]:
    h = _HASHES["SHA_" + algorithm.rsplit("_", 1)[-1]]()
    return padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None), h.digest_size


def rsa_encrypt(material: bytes, algorithm: str, plaintext: bytes) -> bytes:
    if algorithm not in RSA_ENCRYPTION:
        raise InvalidKeyUsageException(f"EncryptionAlgorithm {algorithm} is not supported for this key")
    key = _load_rsa(material)
    pad, digest_size = _oaep(algorithm)
    limit = key.key_size // 8 - 2 * digest_size - 2
    if len(plaintext) > limit:
        raise ValidationException(
            f"Plaintext of {len(plaintext)} bytes is too long for {algorithm} with this key (limit {limit})"
        )
    return key.public_key().encrypt(plaintext, pad)


def rsa_decrypt(material: bytes, algorithm: str, ciphertext: bytes) -> bytes:
    if algorithm not in RSA_ENCRYPTION:
        raise InvalidKeyUsageException(f"EncryptionAlgorithm {algorithm} is not supported for this key")
    try:
        return _load_rsa(material).decrypt(ciphertext, _oaep(algorithm)[0])
    except ValueError:
        raise InvalidCiphertextException() from None


def _sign_parts(
    algorithm: str, message: bytes, message_type: str,
) -> tuple[hashes.HashAlgorithm, bytes, hashes.HashAlgorithm | utils.Prehashed]:
    """(hash algorithm object, data to pass, whether prehashed) for a signing algorithm."""
    h = _HASHES["SHA_" + algorithm.rsplit("_", 1)[-1]]()
    if message_type == "DIGEST":
        if len(message) != h.digest_size:
            raise ValidationException(f"Digest is invalid length for algorithm {algorithm}.")
        return h, message, utils.Prehashed(h)
    if message_type != "RAW":
        raise ValidationException(f"MessageType {message_type} is not valid")
    return h, message, h


def sign(material: bytes, algorithm: str, message: bytes, message_type: str) -> bytes:
    h, data, alg = _sign_parts(algorithm, message, message_type)
    key = _load_private(material)
    if isinstance(key, ec.EllipticCurvePrivateKey):  # the ECDSA_* algorithms: the only ones an ECC key allows
        return key.sign(data, ec.ECDSA(alg))
    pad = padding.PSS(padding.MGF1(h), h.digest_size) if "_PSS_" in algorithm else padding.PKCS1v15()
    return key.sign(data, pad, alg)


def verify(material: bytes, algorithm: str, message: bytes, message_type: str, signature: bytes) -> bool:
    h, data, alg = _sign_parts(algorithm, message, message_type)
    public = _load_private(material).public_key()
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(alg))
        else:
            pad = padding.PSS(padding.MGF1(h), h.digest_size) if "_PSS_" in algorithm else padding.PKCS1v15()
            public.verify(signature, data, pad, alg)
    except (InvalidSignature, ValueError):
        return False
    return True


def mac(material: bytes, algorithm: str, message: bytes) -> bytes:
    return hmac.digest(material, message, getattr(hashlib, "sha" + algorithm.rsplit("_", 1)[-1]))


def derive_shared_secret(material: bytes, peer_public_key: bytes) -> bytes:
    """ECDH: the raw shared secret (the x coordinate of the shared point, as AWS returns it) of this key's private
    half and a peer's public key (SubjectPublicKeyInfo DER) on the same curve."""
    private = _load_private(material)
    try:
        peer = serialization.load_der_public_key(peer_public_key)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValidationException("PublicKey is not a DER-encoded SubjectPublicKeyInfo of an ECC public key.") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(peer, ec.EllipticCurvePublicKey):
        raise ValidationException("PublicKey is not a DER-encoded SubjectPublicKeyInfo of an ECC public key.")
    if peer.curve.name != private.curve.name:
        raise ValidationException(f"PublicKey is on curve {peer.curve.name}; this KMS key is on {private.curve.name}.")
    return private.exchange(ec.ECDH(), peer)


def check_material(key_spec: str, material: bytes) -> bytes:
    """Imported key material as this KMS keeps it, or ValidationException when it does not fit the key spec:
    32 bytes (symmetric), the spec's HMAC length (HMAC), or a PKCS#8 DER private key of the spec's kind."""
    if key_spec == SYMMETRIC:
        if len(material) != 32:
            raise ValidationException("Imported symmetric key material must be 32 bytes (a 256-bit key).")
        return material
    if key_spec in _HMAC_BYTES:
        if len(material) != _HMAC_BYTES[key_spec]:
            raise ValidationException(f"Imported {key_spec} key material must be {_HMAC_BYTES[key_spec]} bytes.")
        return material
    try:
        key = serialization.load_der_private_key(material, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValidationException("Imported asymmetric key material must be a PKCS#8 DER private key.") from None
    if isinstance(key, rsa.RSAPrivateKey) and key_spec in _RSA_BITS and key.key_size == _RSA_BITS[key_spec]:
        return _private_der(key)  # canonical PKCS#8: the same key always gives the same bytes
    if isinstance(key, ec.EllipticCurvePrivateKey) and key_spec in _CURVES and key.curve.name == _CURVES[key_spec][0]().name:
        return _private_der(key)
    raise ValidationException(f"The imported key material is not a {key_spec} private key.")
