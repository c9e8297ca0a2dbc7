"""Keyrings: generate, wrap and unwrap an object's data key (kms+context, AES/GCM, RSA-OAEP-SHA1, v1 legacy).

Byte layouts from shared/reference/client-side-formats.md §4 (Ruby utils.rb, Python kms_keyring.py):
* kms+context: KMS GenerateDataKey/Encrypt/Decrypt with the caller's context plus the reserved key
  `aws:x-amz-cek-alg` = the content algorithm string ("AES/GCM/NoPadding" for v2, "115" for v3).
* AES/GCM: IV(12) || AES-GCM(master key, data key, AAD = content algorithm string) || tag(16).
* RSA-OAEP-SHA1: OAEP(SHA-1, MGF1-SHA-1) over len(key) as one byte || key || content algorithm string.
* v1 (read only): AES/ECB/PKCS5 or RSA PKCS#1 v1.5 of the bare key; `kms` wrap with no context;
  Java's AESWrap (RFC 3394).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP, PKCS1v15
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

from s3proxy.cse.envelope import (
    RESERVED_CEK_CONTEXT_KEY,
    RESERVED_V1_KMS_CONTEXT_KEY,
    WRAP_AES_GCM,
    WRAP_AES_WRAP,
    WRAP_KMS_CONTEXT,
    WRAP_KMS_V1,
    WRAP_RSA_OAEP_SHA1,
    WRAP_V1_RAW,
    Envelope,
)
from s3proxy.cse.errors import CseError, DecryptionFailed, EncryptionContextMismatch, KeyringMismatch

DATA_KEY_BYTES = 32
_GCM_IV = 12
_GCM_TAG = 16
_KMS_AUTH_FAILURES = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


@dataclass(frozen=True)
class WrappedKey:
    """A wrapped data key and what must be stored with it to unwrap it again."""

    wrapped: bytes = field(repr=False)
    wrap_alg: str
    stored_context: Mapping[str, str]  # KMS context (with reserved key) or materials description


class Keyring(Protocol):
    """What the client asks of a wrapping key; implementations never expose the key itself."""

    def generate(self, cek_alg: str, context: Mapping[str, str]) -> tuple[bytes, WrappedKey]: ...

    def wrap(self, data_key: bytes, cek_alg: str, context: Mapping[str, str]) -> WrappedKey: ...

    def unwrap(self, env: Envelope, context: Mapping[str, str]) -> bytes: ...


def _no_context(context: Mapping[str, str], what: str) -> None:
    if context:
        raise EncryptionContextMismatch(f"an encryption context needs kms+context wrapping, not {what}")


class KmsKeyring:
    """kms+context wrapping through any AWS-compatible KMS endpoint (a boto3 KMS client)."""

    def __init__(self, kms_client: Any, key_id: str | None) -> None:
        """`key_id` None means decrypt-only "any key" mode: KMS picks the key from the ciphertext."""
        self._kms = kms_client
        self.key_id = key_id

    def __repr__(self) -> str:
        return f"KmsKeyring(key_id={self.key_id!r})"

    def _context(self, cek_alg: str, context: Mapping[str, str]) -> dict[str, str]:
        if RESERVED_CEK_CONTEXT_KEY in context:
            raise CseError(f"{RESERVED_CEK_CONTEXT_KEY} is reserved for the S3 encryption client")
        if self.key_id is None:
            raise CseError("a KMS key id is needed to encrypt")
        return {**context, RESERVED_CEK_CONTEXT_KEY: cek_alg}

    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = getattr(self._kms, op)(**kwargs)
            return answer
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _KMS_AUTH_FAILURES:
                raise DecryptionFailed() from None
            raise CseError(f"KMS {op} failed: {code}: {exc.response.get('Error', {}).get('Message', '')}") from None

    def generate(self, cek_alg: str, context: Mapping[str, str]) -> tuple[bytes, WrappedKey]:
        ctx = self._context(cek_alg, context)
        resp = self._call("generate_data_key", KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=ctx)
        return resp["Plaintext"], WrappedKey(resp["CiphertextBlob"], WRAP_KMS_CONTEXT, ctx)

    def wrap(self, data_key: bytes, cek_alg: str, context: Mapping[str, str]) -> WrappedKey:
        ctx = self._context(cek_alg, context)
        resp = self._call("encrypt", KeyId=self.key_id, Plaintext=data_key, EncryptionContext=ctx)
        return WrappedKey(resp["CiphertextBlob"], WRAP_KMS_CONTEXT, ctx)

    def unwrap(self, env: Envelope, context: Mapping[str, str]) -> bytes:
        stored = dict(env.stored_context)
        if env.wrap_alg == WRAP_KMS_CONTEXT:
            if RESERVED_CEK_CONTEXT_KEY in context:
                raise CseError(f"{RESERVED_CEK_CONTEXT_KEY} is reserved for the S3 encryption client")
            if stored.get(RESERVED_CEK_CONTEXT_KEY) != env.cek_alg:
                raise DecryptionFailed()
            given = {k: v for k, v in stored.items() if k != RESERVED_CEK_CONTEXT_KEY}
            if given != dict(context):
                raise EncryptionContextMismatch("the encryption context given does not match the object's")
        elif env.wrap_alg == WRAP_KMS_V1:
            _no_context(context, "legacy kms wrapping")
            if set(stored) - {RESERVED_V1_KMS_CONTEXT_KEY}:
                raise DecryptionFailed()
        else:
            raise KeyringMismatch(f"object key is wrapped with {env.wrap_alg or 'a v1 master key'}, not KMS")
        kwargs: dict[str, Any] = {"CiphertextBlob": env.wrapped_key, "EncryptionContext": stored}
        if self.key_id is not None:
            kwargs["KeyId"] = self.key_id
        key: bytes = self._call("decrypt", **kwargs)["Plaintext"]
        if len(key) != DATA_KEY_BYTES:
            raise DecryptionFailed()
        return key


class AesGcmKeyring:
    """AES/GCM wrapping with a local 128/192/256-bit master key; reads v1 AES/ECB and AESWrap too."""

    def __init__(self, key: bytes, description: Mapping[str, str] | None = None,
                 rand: Callable[[int], bytes] = os.urandom) -> None:
        if len(key) not in (16, 24, 32):
            raise CseError("an AES master key is 16, 24 or 32 bytes")
        self._key = key
        self._aead = AESGCM(key)
        self.description = dict(description or {})
        self._rand = rand

    def __repr__(self) -> str:
        return f"AesGcmKeyring(bits={len(self._key) * 8}, description={self.description!r})"

    def generate(self, cek_alg: str, context: Mapping[str, str]) -> tuple[bytes, WrappedKey]:
        data_key = self._rand(DATA_KEY_BYTES)
        return data_key, self.wrap(data_key, cek_alg, context)

    def wrap(self, data_key: bytes, cek_alg: str, context: Mapping[str, str]) -> WrappedKey:
        _no_context(context, WRAP_AES_GCM)
        iv = self._rand(_GCM_IV)
        blob = iv + self._aead.encrypt(iv, data_key, cek_alg.encode("ascii"))
        return WrappedKey(blob, WRAP_AES_GCM, dict(self.description))

    def unwrap(self, env: Envelope, context: Mapping[str, str]) -> bytes:
        _no_context(context, env.wrap_alg or "v1 AES")
        blob = env.wrapped_key
        try:
            if env.wrap_alg == WRAP_AES_GCM:
                if len(blob) < _GCM_IV + _GCM_TAG:
                    raise DecryptionFailed()
                key = self._aead.decrypt(blob[:_GCM_IV], blob[_GCM_IV:], env.cek_alg.encode("ascii"))
            elif env.wrap_alg == WRAP_V1_RAW and env.version == 1:
                dec = Cipher(algorithms.AES(self._key), modes.ECB()).decryptor()
                unpad = padding.PKCS7(128).unpadder()
                key = unpad.update(dec.update(blob) + dec.finalize()) + unpad.finalize()
            elif env.wrap_alg == WRAP_AES_WRAP:
                key = aes_key_unwrap(self._key, blob)
            else:
                raise KeyringMismatch(f"object key is wrapped with {env.wrap_alg}, not an AES master key")
        except (InvalidTag, InvalidUnwrap, ValueError):
            raise DecryptionFailed() from None
        if len(key) not in (16, 24, 32):
            raise DecryptionFailed()
        return key


class RsaOaepKeyring:
    """RSA-OAEP-SHA1 wrapping (public key to write, private key to read); reads v1 RSA PKCS#1 v1.5 too."""

    def __init__(self, private_key: rsa.RSAPrivateKey | None = None, public_key: rsa.RSAPublicKey | None = None,
                 description: Mapping[str, str] | None = None, rand: Callable[[int], bytes] = os.urandom) -> None:
        if private_key is None and public_key is None:
            raise CseError("an RSA keyring needs a public or a private key")
        self._private = private_key
        self._public = public_key if public_key is not None else private_key.public_key()  # type: ignore[union-attr]
        self.description = dict(description or {})
        self._rand = rand

    def __repr__(self) -> str:
        return f"RsaOaepKeyring(bits={self._public.key_size}, private={self._private is not None})"

    @staticmethod
    def _oaep() -> OAEP:
        return OAEP(mgf=MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)

    def generate(self, cek_alg: str, context: Mapping[str, str]) -> tuple[bytes, WrappedKey]:
        data_key = self._rand(DATA_KEY_BYTES)
        return data_key, self.wrap(data_key, cek_alg, context)

    def wrap(self, data_key: bytes, cek_alg: str, context: Mapping[str, str]) -> WrappedKey:
        _no_context(context, WRAP_RSA_OAEP_SHA1)
        message = bytes([len(data_key)]) + data_key + cek_alg.encode("ascii")
        return WrappedKey(self._public.encrypt(message, self._oaep()), WRAP_RSA_OAEP_SHA1, dict(self.description))

    def unwrap(self, env: Envelope, context: Mapping[str, str]) -> bytes:
        _no_context(context, env.wrap_alg or "v1 RSA")
        if self._private is None:
            raise CseError("decrypting needs the RSA private key")
        try:
            if env.wrap_alg == WRAP_RSA_OAEP_SHA1:
                message = self._private.decrypt(env.wrapped_key, self._oaep())
                size = message[0] if message else 0
                key, suffix = message[1:1 + size], message[1 + size:]
                if suffix != env.cek_alg.encode("ascii"):
                    raise DecryptionFailed()
            elif env.wrap_alg == WRAP_V1_RAW and env.version == 1:
                key = self._private.decrypt(env.wrapped_key, PKCS1v15())
            else:
                raise KeyringMismatch(f"object key is wrapped with {env.wrap_alg}, not RSA")
        except ValueError:
            raise DecryptionFailed() from None
        if len(key) not in (16, 24, 32):
            raise DecryptionFailed()
        return key
