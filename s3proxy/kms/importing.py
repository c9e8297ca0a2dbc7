"""Bring your own key: GetParametersForImport, ImportKeyMaterial and DeleteImportedKeyMaterial.

A key created with Origin EXTERNAL has no material and waits in PendingImport. GetParametersForImport
makes a fresh RSA wrapping key pair (RSA_2048/3072/4096) and an import token, both valid 24 hours;
the private half and a hash of the token are kept, sealed, in the key's record (only the latest
pair: a new call replaces it). The owner wraps the material under the public half with one of:

* RSAES_OAEP_SHA_1 / RSAES_OAEP_SHA_256: RSA-OAEP (MGF1 with the same hash) of the material itself;
* RSA_AES_KEY_WRAP_SHA_1 / _SHA_256: a fresh 256-bit AES key wrapped by RSA-OAEP, followed by the
  material wrapped under that AES key with AES key wrap with padding (RFC 5649); what
  `openssl enc -id-aes256-wrap-pad` writes. Asymmetric private keys need this one (they are too big
  for OAEP alone).

ImportKeyMaterial checks the token (InvalidImportTokenException / ExpiredImportTokenException),
unwraps (InvalidCiphertextException if the algorithm or the wrapping key is not the one the token
names), checks the material fits the key spec, and, once a key has had material, that it is the
same material (IncorrectKeyMaterialException): a key never changes its material, so every blob it
ever made stays decryptable after a re-import. ExpirationModel KEY_MATERIAL_EXPIRES (the default)
needs ValidTo, at most 365 days ahead; when it passes, the Registry drops the material on the next
access and the key is PendingImport again until the same material is imported. The record keeps only
a keyed fingerprint of the material (HMAC-SHA256 under the material) to recognise it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

from . import keys, lifecycle
from .authorizer import Authorizer
from .caller import Caller
from .errors import (
    ExpiredImportTokenException,
    IncorrectKeyMaterialException,
    InvalidCiphertextException,
    InvalidImportTokenException,
    UnsupportedOperationException,
    ValidationException,
    member_error,
)
from .registry import KeyRecord, Registry

EXTERNAL = "EXTERNAL"
EXPIRES = "KEY_MATERIAL_EXPIRES"
DOES_NOT_EXPIRE = "KEY_MATERIAL_DOES_NOT_EXPIRE"
WRAPPING_ALGORITHMS = ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256")
WRAPPING_KEY_SPECS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
PARAMETERS_LIFETIME = 24 * 3600.0
MAX_VALID_TO = 365 * 86400.0
_TOKEN_MAGIC = b"s3pxIT1"
_FINGERPRINT_LABEL = b"s3proxy imported key material v1"
_MAX_WRAPPED = 8192


@dataclass(frozen=True)
class ImportParameters:
    key_arn: str
    import_token: bytes = field(repr=False)
    public_key: bytes
    parameters_valid_to: float


def fingerprint(material: bytes) -> str:
    """Recognises the same material again without keeping it (the record outlives expired material)."""
    return hmac.digest(material, _FINGERPRINT_LABEL, "sha256").hex()


def _token_hash(token: bytes) -> str:
    return hashlib.sha256(token).hexdigest()


def _hash(algorithm: str) -> hashes.HashAlgorithm:
    return hashes.SHA1() if algorithm.endswith("_SHA_1") else hashes.SHA256()


def unwrap(algorithm: str, wrapping_key_der: bytes, wrapped: bytes) -> bytes:
    """The key material inside `wrapped`, or InvalidCiphertextException (wrong key, algorithm or bytes)."""
    private = serialization.load_der_private_key(wrapping_key_der, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    h = _hash(algorithm)
    oaep = padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)
    size = private.key_size // 8
    try:
        if algorithm.startswith("RSAES_OAEP_"):
            return private.decrypt(wrapped, oaep)
        if len(wrapped) <= size:
            raise InvalidCiphertextException()
        aes_key = private.decrypt(wrapped[:size], oaep)
        if len(aes_key) != 32:
            raise InvalidCiphertextException()
        return aes_key_unwrap_with_padding(aes_key, wrapped[size:])
    except (ValueError, InvalidUnwrap):
        raise InvalidCiphertextException() from None


class Importer:
    """The three import operations, each behind the Authorizer, changing the record by compare-and-swap."""

    def __init__(self, registry: Registry, authorizer: Authorizer, *, clock: Callable[[], float] = time.time,
                 rand: Callable[[int], bytes] = os.urandom,
                 changed: Callable[[str], None] = lambda arn: None) -> None:
        self._registry = registry
        self._authz = authorizer
        self._clock = clock
        self._rand = rand
        self._changed = changed  # the change feed (cached bucket keys of a key whose material went are dropped)

    def _external(self, caller: Caller, key_id: str, op: str, **extra: tuple[str, ...]) -> KeyRecord:
        record = self._authz.usable(caller, key_id, op, aliases=False, extra=extra or None)
        if record.origin != EXTERNAL:
            raise UnsupportedOperationException(f"{record.arn} origin is {record.origin} which is not valid for this operation.")
        return record

    def get_parameters_for_import(self, caller: Caller, key_id: str, wrapping_algorithm: str,
                                  wrapping_key_spec: str) -> ImportParameters:
        if wrapping_algorithm not in WRAPPING_ALGORITHMS:
            if wrapping_algorithm in ("RSAES_PKCS1_V1_5", "SM2PKE"):
                raise UnsupportedOperationException(f"WrappingAlgorithm {wrapping_algorithm} is not supported.")
            raise member_error("wrappingAlgorithm", f"satisfy enum value set: {list(WRAPPING_ALGORITHMS)}", wrapping_algorithm)
        if wrapping_key_spec not in WRAPPING_KEY_SPECS:
            if wrapping_key_spec == "SM2":
                raise UnsupportedOperationException("WrappingKeySpec SM2 is not supported.")
            raise member_error("wrappingKeySpec", f"satisfy enum value set: {list(WRAPPING_KEY_SPECS)}", wrapping_key_spec)
        record = self._external(caller, key_id, "GetParametersForImport",
                                **{"kms:wrappingalgorithm": (wrapping_algorithm,), "kms:wrappingkeyspec": (wrapping_key_spec,)})
        private = rsa.generate_private_key(public_exponent=65537, key_size=WRAPPING_KEY_SPECS[wrapping_key_spec])
        token = _TOKEN_MAGIC + self._rand(57)
        valid_to = self._clock() + PARAMETERS_LIFETIME
        stored = {
            "token": _token_hash(token), "algorithm": wrapping_algorithm, "valid_to": valid_to,
            "key": base64.b64encode(private.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())).decode(),
        }
        self._registry.update_key(record.key_id, lambda r: replace(r, import_parameters=stored))
        public = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return ImportParameters(record.arn, token, public, valid_to)

    def import_key_material(self, caller: Caller, key_id: str, import_token: bytes, encrypted_key_material: bytes,
                            expiration_model: str | None = None, valid_to: float | None = None,
                            import_type: str | None = None) -> tuple[str, str]:
        """(key ARN, key material id) once the material is in and the key Enabled."""
        model = expiration_model or EXPIRES
        if model not in (EXPIRES, DOES_NOT_EXPIRE):
            raise member_error("expirationModel", f"satisfy enum value set: [{EXPIRES}, {DOES_NOT_EXPIRE}]", model)
        if not 1 <= len(import_token) <= 6144:
            raise member_error("importToken", "have length between 1 and 6144")
        if not 1 <= len(encrypted_key_material) <= _MAX_WRAPPED:
            raise member_error("encryptedKeyMaterial", f"have length between 1 and {_MAX_WRAPPED}")
        now = self._clock()
        if model == EXPIRES:
            if valid_to is None:
                raise ValidationException("ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES.")
            if not now < valid_to <= now + MAX_VALID_TO:
                raise ValidationException("ValidTo must be in the future and at most 365 days from now.")
        elif valid_to is not None:
            raise ValidationException("ValidTo is not valid when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE.")
        if import_type not in (None, "NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"):
            raise member_error("importType", "satisfy enum value set: [NEW_KEY_MATERIAL, EXISTING_KEY_MATERIAL]", import_type)
        extra: dict[str, tuple[str, ...]] = {"kms:expirationmodel": (model,)}
        if valid_to is not None:
            extra["kms:validto"] = (str(int(valid_to)),)
        record = self._external(caller, key_id, "ImportKeyMaterial", **extra)
        params = record.import_parameters
        if params is None or not hmac.compare_digest(params["token"], _token_hash(import_token)):
            raise InvalidImportTokenException()
        if params["valid_to"] <= now:
            raise ExpiredImportTokenException()
        material = unwrap(params["algorithm"], base64.b64decode(params["key"]), encrypted_key_material)
        try:
            material = keys.check_material(record.key_spec, material)
        except ValidationException:
            raise IncorrectKeyMaterialException() from None
        print_ = fingerprint(material)
        if record.material_check:
            if import_type == "NEW_KEY_MATERIAL":
                raise UnsupportedOperationException(f"{record.arn} already has key material; this KMS imports one per key.")
            if not hmac.compare_digest(record.material_check, print_):
                raise IncorrectKeyMaterialException()
        elif import_type == "EXISTING_KEY_MATERIAL":
            raise IncorrectKeyMaterialException()

        def imported(r: KeyRecord) -> KeyRecord:
            if r.import_parameters != params:  # another call replaced or used the parameters meanwhile
                raise InvalidImportTokenException()
            state = lifecycle.ENABLED if r.state == lifecycle.PENDING_IMPORT else r.state
            return replace(r, materials=(material,), material_check=print_, expiration_model=model, valid_to=valid_to,
                           state=state, import_parameters=None)

        done = self._registry.update_key(record.key_id, imported)
        self._changed(done.arn)
        return done.arn, done.material_id()

    def delete_imported_key_material(self, caller: Caller, key_id: str, key_material_id: str | None = None) -> tuple[str, str]:
        record = self._external(caller, key_id, "DeleteImportedKeyMaterial")
        if key_material_id is not None and key_material_id != record.material_id(1):
            raise member_error("keyMaterialId", "name this key's key material", key_material_id)
        done = self._registry.update_key(record.key_id, lambda r: r.without_material())
        self._changed(done.arn)
        return done.arn, done.material_id(1)

