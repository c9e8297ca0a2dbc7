"""Content encryption of an object body, streamed: AES-GCM (v2), key-committing AES-GCM (v3), AES-CBC (v1 read).

Facts (shared/reference/client-side-formats.md; S3EC spec key-derivation.md):
* v2: AES-256-GCM, random 12-byte IV, no AAD, body = ciphertext || tag(16).
* v3 (suite 115 = 0x0073): HKDF-SHA512, salt = message id (28 B), IKM = data key;
  DEK = Expand(0x0073 || "DERIVEKEY", 32), commitment = Expand(0x0073 || "COMMITKEY", 28);
  AES-256-GCM under DEK with the fixed IV 0x01 * 12 and AAD = 0x0073; body = ciphertext || tag(16).
* v1: AES-256-CBC, PKCS#5 padding, 16-byte IV; unauthenticated.
* GCM's keystream is AES-CTR starting at counter IV || 00000002, which gives unauthenticated
  ranged reads (spec decryption.md "ranged gets"; opt-in only).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import (
    AEADDecryptionContext,
    AEADEncryptionContext,
    Cipher,
    CipherContext,
    algorithms,
    modes,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from s3proxy.cse.envelope import CEK_CBC, CEK_GCM, CEK_V3_COMMITTING, Envelope
from s3proxy.cse.errors import DecryptionFailed, UnsupportedAlgorithm

TAG_BYTES = 16
GCM_IV_BYTES = 12
CBC_IV_BYTES = 16
BLOCK = 16
V3_SUITE_ID = b"\x00\x73"
V3_IV = b"\x01" * GCM_IV_BYTES
V3_MESSAGE_ID_BYTES = 28
V3_COMMITMENT_BYTES = 28
DEK_BYTES = 32


def derive_v3_keys(data_key: bytes, message_id: bytes) -> tuple[bytes, bytes]:
    """(content key, key commitment) for suite 115 from the data key and the message id."""
    if len(data_key) != DEK_BYTES:
        raise DecryptionFailed()
    prk = hmac.new(message_id, data_key, hashlib.sha512).digest()
    dek = HKDFExpand(hashes.SHA512(), DEK_BYTES, V3_SUITE_ID + b"DERIVEKEY").derive(prk)
    commitment = HKDFExpand(hashes.SHA512(), V3_COMMITMENT_BYTES, V3_SUITE_ID + b"COMMITKEY").derive(prk)
    return dek, commitment


@dataclass(frozen=True)
class ContentParams:
    """What encryption chose and the envelope must record (IV for v2; message id and commitment for v3)."""

    iv: bytes = b""
    message_id: bytes = b""
    commitment: bytes = b""


@dataclass
class BodyEncryptor:
    """Encrypts a body piece by piece; `finalize()` returns the tag to append."""

    _ctx: AEADEncryptionContext = field(repr=False)

    def update(self, data: bytes) -> bytes:
        return self._ctx.update(data)

    def finalize(self) -> bytes:
        self._ctx.finalize()
        return self._ctx.tag


def start_encryption(version: int, data_key: bytes,
                     rand: Callable[[int], bytes] = os.urandom) -> tuple[BodyEncryptor, ContentParams]:
    """A body encryptor for a new object in format `version` (2 or 3)."""
    if version == 3:
        message_id = rand(V3_MESSAGE_ID_BYTES)
        dek, commitment = derive_v3_keys(data_key, message_id)
        ctx = Cipher(algorithms.AES(dek), modes.GCM(V3_IV)).encryptor()
        ctx.authenticate_additional_data(V3_SUITE_ID)
        return BodyEncryptor(ctx), ContentParams(message_id=message_id, commitment=commitment)
    if version == 2:
        iv = rand(GCM_IV_BYTES)
        return BodyEncryptor(Cipher(algorithms.AES(data_key), modes.GCM(iv)).encryptor()), ContentParams(iv=iv)
    raise UnsupportedAlgorithm(f"cannot write format v{version}")


def cek_alg_for(version: int) -> str:
    """The content algorithm string a new object of `version` records (and binds into its KMS context)."""
    return CEK_V3_COMMITTING if version == 3 else CEK_GCM


class BodyDecryptor:
    """Decrypts a body piece by piece; the last `tail_bytes` of the body go to `finalize`, which authenticates."""

    def __init__(self, ctx: CipherContext, tail_bytes: int, unpadder: padding.PaddingContext | None = None) -> None:
        self._ctx = ctx
        self.tail_bytes = tail_bytes
        self._unpad = unpadder

    def __repr__(self) -> str:
        return f"BodyDecryptor(tail_bytes={self.tail_bytes})"

    def update(self, data: bytes) -> bytes:
        out = self._ctx.update(data)
        return self._unpad.update(out) if self._unpad is not None else out

    def finalize(self, tail: bytes | bytearray) -> bytes:
        """Check the tag (GCM) or the padding (CBC); raises DecryptionFailed, never returns wrong plaintext."""
        try:
            if self._unpad is None:
                # only GCM bodies come without an unpadder (start_decryption)
                assert isinstance(self._ctx, AEADDecryptionContext)
                return self._ctx.finalize_with_tag(bytes(tail))
            out = self._ctx.finalize()
            return self._unpad.update(out) + self._unpad.finalize()
        except (InvalidTag, ValueError):
            raise DecryptionFailed() from None


def _gcm_key_and_iv(env: Envelope, data_key: bytes) -> tuple[bytes, bytes]:
    """The GCM content key and IV of a v2/v3 body; for v3 the key commitment is checked (constant time)."""
    if env.cek_alg == CEK_V3_COMMITTING:
        dek, commitment = derive_v3_keys(data_key, env.message_id)
        if not hmac.compare_digest(commitment, env.commitment):
            raise DecryptionFailed()
        return dek, V3_IV
    if len(env.iv) != GCM_IV_BYTES:
        raise DecryptionFailed()
    return data_key, env.iv


def start_decryption(env: Envelope, data_key: bytes) -> BodyDecryptor:
    """A body decryptor for `env`; for v3 the key commitment is checked before any byte is decrypted."""
    if env.cek_alg in (CEK_V3_COMMITTING, CEK_GCM):
        key, iv = _gcm_key_and_iv(env, data_key)
        gcm = Cipher(algorithms.AES(key), modes.GCM(iv)).decryptor()
        if env.cek_alg == CEK_V3_COMMITTING:
            gcm.authenticate_additional_data(V3_SUITE_ID)
        return BodyDecryptor(gcm, TAG_BYTES)
    if env.cek_alg == CEK_CBC:
        if len(env.iv) != CBC_IV_BYTES:
            raise DecryptionFailed()
        cbc = Cipher(algorithms.AES(data_key), modes.CBC(env.iv)).decryptor()
        return BodyDecryptor(cbc, 0, padding.PKCS7(128).unpadder())
    raise UnsupportedAlgorithm(f"content algorithm {env.cek_alg!r}")


def gcm_keystream_decryptor(env: Envelope, data_key: bytes, first_block: int) -> Callable[[bytes], bytes]:
    """UNAUTHENTICATED: AES-CTR over a GCM body from 16-byte block `first_block` on (for ranged reads)."""
    if env.cek_alg not in (CEK_V3_COMMITTING, CEK_GCM):
        raise UnsupportedAlgorithm(f"ranged reads need a GCM body, not {env.cek_alg!r}")
    key, iv = _gcm_key_and_iv(env, data_key)
    counter = (2 + first_block) & 0xFFFFFFFF  # GCM's first data block uses IV || 00000002
    return Cipher(algorithms.AES(key), modes.CTR(iv + counter.to_bytes(4, "big"))).decryptor().update
