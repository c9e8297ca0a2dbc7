"""The Crypto part of the key service: the cryptographic operations, each behind the Authorizer.

Symmetric blobs use the format in `wrapping`; RSA ciphertext is raw OAEP output (so Decrypt needs
the KeyId, as in AWS). Every call checks usage, authorization and state before touching material.
Auditing is the facade's (`service.KeyService`); this part neither knows nor needs it.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from . import keys, wrapping
from .authorizer import Authorizer
from .caller import Caller
from .custom_stores import CustomKeyStores
from .datakeys import DataKey, Encrypted
from .errors import (
    IncorrectKeyException,
    InvalidCiphertextException,
    InvalidKeyUsageException,
    KMSInvalidMacException,
    KMSInvalidSignatureException,
    UnsupportedOperationException,
    ValidationException,
    member_error,
)
from .registry import KeyRecord
from .wrapping import Aead

_DATA_KEY_BYTES = {"AES_256": 32, "AES_128": 16}
MAX_BLOB = 6144


@dataclass(frozen=True)
class Decrypted:
    plaintext: bytes = field(repr=False)
    key_arn: str
    encryption_algorithm: str
    key_material_id: str


@dataclass(frozen=True)
class ReEncrypted:
    ciphertext_blob: bytes = field(repr=False)
    source_key_arn: str
    key_arn: str
    source_encryption_algorithm: str
    destination_encryption_algorithm: str


@dataclass(frozen=True)
class DataKeyPair:
    key_arn: str
    key_pair_spec: str
    public_key: bytes
    private_key_ciphertext_blob: bytes = field(repr=False)
    private_key_plaintext: bytes = field(repr=False)  # empty for ...WithoutPlaintext


@dataclass(frozen=True)
class PublicKey:
    key_arn: str
    public_key: bytes
    key_spec: str
    key_usage: str
    encryption_algorithms: tuple[str, ...]
    signing_algorithms: tuple[str, ...]
    key_agreement_algorithms: tuple[str, ...] = ()


@dataclass(frozen=True)
class SharedSecret:
    key_arn: str
    shared_secret: bytes = field(repr=False)
    key_agreement_algorithm: str
    key_origin: str


def _check_usage(record: KeyRecord, usage: str, op: str) -> None:
    data_key_op = op.startswith("GenerateDataKey")
    if record.key_usage != usage or (usage == keys.ENCRYPT_DECRYPT and data_key_op and record.key_spec != keys.SYMMETRIC):
        raise InvalidKeyUsageException(f"{record.arn} key usage is {record.key_usage} which is not valid for {op}.")


def _check_message(value: bytes, name: str, limit: int = keys.MAX_MESSAGE) -> None:
    if not 1 <= len(value) <= limit:
        raise member_error(name, f"have length {f'less than or equal to {limit}' if value else 'greater than or equal to 1'}")


class Crypto:
    """Encrypt, Decrypt, ReEncrypt, data keys and key pairs, random bytes, Sign/Verify, MACs."""

    def __init__(self, authorizer: Authorizer, *, rand: Callable[[int], bytes] = os.urandom,
                 stores: CustomKeyStores | None = None) -> None:
        self._authz = authorizer
        self.rand = rand
        self._stores = stores  # the token side of keys in custom key stores

    # symmetric core ---------------------------------------------------------------------------
    def _in_token(self, record: KeyRecord) -> Aead | None:
        """The AES-GCM inside a token of a key in a custom key store; None for a key whose material is here."""
        if record.custom_key_store_id is None:
            return None
        if self._stores is None:
            raise InvalidCiphertextException()
        return self._stores.aead(record)

    def _seal(self, record: KeyRecord, plaintext: bytes, context: Mapping[str, str] | None) -> bytes:
        aead = self._in_token(record)
        if aead is not None:
            return wrapping.seal_blob_in(aead, record.key_id, plaintext, context, self.rand)
        return wrapping.seal_blob(record.key_id, record.version, record.materials[-1], plaintext, context, self.rand)

    def _open(self, caller: Caller, blob: bytes, context: Mapping[str, str] | None, key_id: str | None,
              algorithm: str | None, op: str, action: str) -> Decrypted:
        if not 1 <= len(blob) <= MAX_BLOB:
            _check_message(blob, "ciphertextBlob", MAX_BLOB)
        asymmetric = algorithm not in (None, keys.SYMMETRIC)
        if asymmetric or (key_id and blob[:2] != wrapping.BLOB_MAGIC and self._is_rsa(caller, key_id)):
            return self._rsa_open(caller, blob, key_id, algorithm or keys.SYMMETRIC, context, op, action)
        header = wrapping.parse_blob(blob)
        if key_id is not None:
            wanted = self._authz.lookup(caller, key_id)
            if wanted.key_id != header.key_id:
                raise IncorrectKeyException("The key ID in the request does not identify a CMK that can perform this operation.")
        record = self._authz.lookup(caller, header.key_id, anywhere=True)  # the blob names its key, in any account
        self._authz.authorize(caller, record, action, context)
        self._authz.check_state(op, record)
        _check_usage(record, keys.ENCRYPT_DECRYPT, op)
        if not 1 <= header.material_version <= record.version or record.key_spec != keys.SYMMETRIC:
            raise InvalidCiphertextException()
        aead = self._in_token(record)
        if aead is not None:
            plaintext = wrapping.open_blob_in(aead, header, blob, context)
        else:
            plaintext = wrapping.open_blob(header, record.materials[header.material_version - 1], blob, context)
        return Decrypted(plaintext, record.arn, keys.SYMMETRIC, record.material_id(header.material_version))

    def _is_rsa(self, caller: Caller, key_id: str) -> bool:
        return self._authz.lookup(caller, key_id).key_spec.startswith("RSA")

    def _rsa_open(self, caller: Caller, blob: bytes, key_id: str | None, algorithm: str,
                  context: Mapping[str, str] | None, op: str, action: str) -> Decrypted:
        if key_id is None:
            raise InvalidCiphertextException()
        record = self._authz.usable(caller, key_id, op, action, context)
        _check_usage(record, keys.ENCRYPT_DECRYPT, op)
        if context:
            raise ValidationException("EncryptionContext is not supported with asymmetric KMS keys.")
        if algorithm == keys.SYMMETRIC:
            raise IncorrectKeyException("The key ID in the request does not identify a CMK that can perform this operation.")
        return Decrypted(keys.rsa_decrypt(record.materials[-1], algorithm, blob), record.arn, algorithm, record.material_id())

    # operations -------------------------------------------------------------------------------
    def encrypt(self, caller: Caller, key_id: str, plaintext: bytes, context: Mapping[str, str] | None = None,
                encryption_algorithm: str = keys.SYMMETRIC) -> Encrypted:
        _check_message(plaintext, "plaintext")
        record = self._authz.usable(caller, key_id, "Encrypt", context=context)
        _check_usage(record, keys.ENCRYPT_DECRYPT, "Encrypt")
        if record.key_spec == keys.SYMMETRIC:
            if encryption_algorithm != keys.SYMMETRIC:
                raise InvalidKeyUsageException(
                    f"The encryption algorithm {encryption_algorithm} is not compatible with {record.arn}."
                )
            return Encrypted(self._seal(record, plaintext, context), record.arn, keys.SYMMETRIC)
        if context:
            raise ValidationException("EncryptionContext is not supported with asymmetric KMS keys.")
        blob = keys.rsa_encrypt(record.materials[-1], encryption_algorithm, plaintext)
        return Encrypted(blob, record.arn, encryption_algorithm)

    def decrypt(self, caller: Caller, ciphertext_blob: bytes, context: Mapping[str, str] | None = None,
                key_id: str | None = None, encryption_algorithm: str | None = None) -> Decrypted:
        return self._open(caller, ciphertext_blob, context, key_id, encryption_algorithm, "Decrypt", "Decrypt")

    def re_encrypt(self, caller: Caller, ciphertext_blob: bytes, destination_key_id: str,
                   source_context: Mapping[str, str] | None = None, destination_context: Mapping[str, str] | None = None,
                   source_key_id: str | None = None, source_encryption_algorithm: str | None = None,
                   destination_encryption_algorithm: str = keys.SYMMETRIC) -> ReEncrypted:
        opened = self._open(caller, ciphertext_blob, source_context, source_key_id, source_encryption_algorithm,
                            "ReEncrypt", "ReEncryptFrom")
        dest = self._authz.usable(caller, destination_key_id, "ReEncrypt", "ReEncryptTo", destination_context)
        _check_usage(dest, keys.ENCRYPT_DECRYPT, "ReEncrypt")
        if dest.key_spec == keys.SYMMETRIC:
            blob = self._seal(dest, opened.plaintext, destination_context)
        else:
            blob = keys.rsa_encrypt(dest.materials[-1], destination_encryption_algorithm, opened.plaintext)
        return ReEncrypted(blob, opened.key_arn, dest.arn, opened.encryption_algorithm,
                           keys.SYMMETRIC if dest.key_spec == keys.SYMMETRIC else destination_encryption_algorithm)

    def _data_key(self, caller: Caller, key_id: str, context: Mapping[str, str] | None, op: str,
                  key_spec: str | None, number_of_bytes: int | None) -> tuple[KeyRecord, bytes, bytes]:
        if key_spec is not None and number_of_bytes is not None:
            raise ValidationException("Please specify either number of bytes or key spec, not both.")
        if number_of_bytes is not None:
            if not 1 <= number_of_bytes <= 1024:
                raise member_error("numberOfBytes", "have value less than or equal to 1024", number_of_bytes)
            size = number_of_bytes
        else:
            if (key_spec or "AES_256") not in _DATA_KEY_BYTES:
                raise member_error("keySpec", "satisfy enum value set: [AES_256, AES_128]", key_spec)
            size = _DATA_KEY_BYTES[key_spec or "AES_256"]
        record = self._authz.usable(caller, key_id, op, context=context)
        _check_usage(record, keys.ENCRYPT_DECRYPT, op)
        plaintext = self.rand(size)
        return record, plaintext, self._seal(record, plaintext, context)

    def generate_data_key(self, caller: Caller, key_id: str, context: Mapping[str, str] | None = None,
                          key_spec: str | None = None, number_of_bytes: int | None = None) -> DataKey:
        record, plaintext, blob = self._data_key(caller, key_id, context, "GenerateDataKey", key_spec, number_of_bytes)
        return DataKey(record.arn, plaintext, blob, record.material_id())

    def generate_data_key_without_plaintext(self, caller: Caller, key_id: str, context: Mapping[str, str] | None = None,
                                            key_spec: str | None = None, number_of_bytes: int | None = None) -> DataKey:
        record, _, blob = self._data_key(caller, key_id, context, "GenerateDataKeyWithoutPlaintext", key_spec, number_of_bytes)
        return DataKey(record.arn, b"", blob, record.material_id())

    def _key_pair(self, caller: Caller, key_id: str, key_pair_spec: str, context: Mapping[str, str] | None,
                  op: str) -> DataKeyPair:
        if key_pair_spec not in keys.DATA_KEY_PAIR_SPECS:
            raise member_error("keyPairSpec", f"satisfy enum value set: {list(keys.DATA_KEY_PAIR_SPECS)}", key_pair_spec)
        record = self._authz.usable(caller, key_id, op, context=context)
        _check_usage(record, keys.ENCRYPT_DECRYPT, "GenerateDataKey")
        private, public = keys.generate_key_pair(key_pair_spec)
        return DataKeyPair(record.arn, key_pair_spec, public, self._seal(record, private, context), private)

    def generate_data_key_pair(self, caller: Caller, key_id: str, key_pair_spec: str,
                               context: Mapping[str, str] | None = None) -> DataKeyPair:
        return self._key_pair(caller, key_id, key_pair_spec, context, "GenerateDataKeyPair")

    def generate_data_key_pair_without_plaintext(self, caller: Caller, key_id: str, key_pair_spec: str,
                                                 context: Mapping[str, str] | None = None) -> DataKeyPair:
        pair = self._key_pair(caller, key_id, key_pair_spec, context, "GenerateDataKeyPairWithoutPlaintext")
        return DataKeyPair(pair.key_arn, pair.key_pair_spec, pair.public_key, pair.private_key_ciphertext_blob, b"")

    def generate_random(self, caller: Caller, number_of_bytes: int, custom_key_store_id: str | None = None) -> bytes:
        if not 1 <= number_of_bytes <= 1024:
            raise member_error("numberOfBytes", "have value between 1 and 1024", number_of_bytes)
        self._authz.authorize_account(caller, "GenerateRandom")
        if custom_key_store_id is not None:  # from the store's token
            if self._stores is None:
                raise UnsupportedOperationException("This KMS has no custom key stores.")
            return self._stores.random(caller, custom_key_store_id, number_of_bytes)
        return self.rand(number_of_bytes)

    def _signing_key(self, caller: Caller, key_id: str, algorithm: str, op: str) -> KeyRecord:
        record = self._authz.usable(caller, key_id, op)
        _check_usage(record, keys.SIGN_VERIFY, op)
        if algorithm not in keys.spec_info(record.key_spec, record.key_usage).signing:
            raise InvalidKeyUsageException(f"Signing algorithm {algorithm} is not valid for {record.arn}.")
        return record

    def sign(self, caller: Caller, key_id: str, message: bytes, signing_algorithm: str,
             message_type: str = "RAW") -> tuple[str, bytes]:
        _check_message(message, "message")
        record = self._signing_key(caller, key_id, signing_algorithm, "Sign")
        return record.arn, keys.sign(record.materials[-1], signing_algorithm, message, message_type)

    def verify(self, caller: Caller, key_id: str, message: bytes, signature: bytes, signing_algorithm: str,
               message_type: str = "RAW") -> str:
        """The key ARN if the signature is valid; KMSInvalidSignatureException otherwise (as AWS)."""
        _check_message(message, "message")
        record = self._signing_key(caller, key_id, signing_algorithm, "Verify")
        if not keys.verify(record.materials[-1], signing_algorithm, message, message_type, signature):
            raise KMSInvalidSignatureException()
        return record.arn

    def get_public_key(self, caller: Caller, key_id: str) -> PublicKey:
        record = self._authz.usable(caller, key_id, "GetPublicKey")
        if record.key_spec in (keys.SYMMETRIC,) or record.key_usage == keys.GENERATE_VERIFY_MAC:
            raise UnsupportedOperationException(
                f"{record.arn} key usage is {record.key_usage} which is not valid for GetPublicKey."
            )
        info = keys.spec_info(record.key_spec, record.key_usage)
        return PublicKey(record.arn, keys.public_key_der(record.materials[-1]), record.key_spec, record.key_usage,
                         info.encryption, info.signing, info.key_agreement)

    def derive_shared_secret(self, caller: Caller, key_id: str, key_agreement_algorithm: str,
                             public_key: bytes) -> SharedSecret:
        """ECDH between this KMS key's private half and a peer's public key (SPKI DER): the raw shared secret."""
        if key_agreement_algorithm != keys.ECDH:
            raise member_error("keyAgreementAlgorithm", "satisfy enum value set: [ECDH]", key_agreement_algorithm)
        if not 1 <= len(public_key) <= 8192:
            raise member_error("publicKey", "have length between 1 and 8192")
        record = self._authz.usable(caller, key_id, "DeriveSharedSecret",
                                    extra={"kms:keyagreementalgorithm": (key_agreement_algorithm,)})
        _check_usage(record, keys.KEY_AGREEMENT, "DeriveSharedSecret")
        secret = keys.derive_shared_secret(record.materials[-1], public_key)
        return SharedSecret(record.arn, secret, key_agreement_algorithm, record.origin)

    def _mac_key(self, caller: Caller, key_id: str, algorithm: str, op: str) -> KeyRecord:
        record = self._authz.usable(caller, key_id, op)
        _check_usage(record, keys.GENERATE_VERIFY_MAC, op)
        if algorithm not in keys.spec_info(record.key_spec, record.key_usage).mac:
            raise InvalidKeyUsageException(f"MAC algorithm {algorithm} is not valid for {record.arn}.")
        return record

    def generate_mac(self, caller: Caller, key_id: str, message: bytes, mac_algorithm: str) -> tuple[str, bytes]:
        _check_message(message, "message")
        record = self._mac_key(caller, key_id, mac_algorithm, "GenerateMac")
        return record.arn, keys.mac(record.materials[-1], mac_algorithm, message)

    def verify_mac(self, caller: Caller, key_id: str, message: bytes, mac: bytes, mac_algorithm: str) -> str:
        _check_message(message, "message")
        record = self._mac_key(caller, key_id, mac_algorithm, "VerifyMac")
        if not hmac.compare_digest(keys.mac(record.materials[-1], mac_algorithm, message), mac):
            raise KMSInvalidMacException()
        return record.arn

    # the DataKeySource seam -------------------------------------------------------------------
    def decrypt_data_key(self, caller: Caller, blob: bytes, context: Mapping[str, str] | None = None) -> DataKey:
        opened = self._open(caller, blob, context, None, None, "Decrypt", "Decrypt")
        return DataKey(opened.key_arn, opened.plaintext, blob, opened.key_material_id)

    def check_use(self, caller: Caller, key_id: str, key_arn: str, op: str, context: Mapping[str, str] | None) -> bool:
        """May `caller` use, now, the data key it got earlier from `key_arn` for `op` (Decrypt, GenerateDataKey) with
        `context`? The lookup, policies, grants, state and usage are checked as that call would check them. False
        when `key_id` (as the request names it) no longer names `key_arn`; the error the call would raise otherwise."""
        record = self._authz.lookup(caller, key_id)
        if record.arn != key_arn:
            return False
        self._authz.authorize(caller, record, op, context)
        self._authz.check_state(op, record)
        _check_usage(record, keys.ENCRYPT_DECRYPT, op)
        return True

    def resolve_key(self, caller: Caller, key_id: str) -> str:
        """The ARN of a key the caller may use for data keys now (NotFound / Disabled / InvalidState otherwise)."""
        record = self._authz.usable(caller, key_id, "GenerateDataKey")
        _check_usage(record, keys.ENCRYPT_DECRYPT, "GenerateDataKey")
        return record.arn

