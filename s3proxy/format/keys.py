"""Key derivation and the one sealing construction of format v2 (FORMAT.md §1.1, §2).

* `integrity_keys(IK)` derives IK_meta, IK_records and IK_audit from the keystore's integrity key;
* `seal` / `open_sealed` are `Seal`/`Open` of §1.1: a fresh 16-byte salt per message derives a
  single-use AES-256-GCM key by HKDF-Expand, so the fixed zero nonce is never reused under a key;
* `lp`, `b64u`, `from_b64u` are the byte encodings every other module shares.
Pure functions; randomness comes in through a `rand(n) -> bytes` argument.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from s3proxy.format.errors import IntegrityError

KEY_SIZE = 32
SALT_SIZE = 16
GCM_TAG_SIZE = 16
SEAL_OVERHEAD = SALT_SIZE + GCM_TAG_SIZE
_ZERO_NONCE = bytes(12)

_IK_META = b"s3proxy.format@v2 ik-meta"
_IK_RECORDS = b"s3proxy.format@v2 ik-records"
_IK_AUDIT = b"s3proxy.format@v2 ik-audit"

Rand = Callable[[int], bytes]


def expand(prk: bytes, info: bytes, length: int = KEY_SIZE) -> bytes:
    """HKDF-Expand-SHA-256 (RFC 5869 §2.3) of a uniformly random 32-byte key."""
    if len(prk) != KEY_SIZE:
        raise ValueError("key must be 32 bytes")
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


@dataclass(frozen=True)
class IntegrityKeys:
    """The sub-keys of the integrity key IK (§2). Never printed."""

    meta: bytes = field(repr=False)  # metadata MAC and sealed ETag
    records: bytes = field(repr=False)  # internal records
    audit: bytes = field(repr=False)  # audit chain


def integrity_keys(ik: bytes) -> IntegrityKeys:
    """IK_meta, IK_records, IK_audit = HKDF-Expand(IK, distinct labels)."""
    return IntegrityKeys(expand(ik, _IK_META), expand(ik, _IK_RECORDS), expand(ik, _IK_AUDIT))


def lp(data: bytes) -> bytes:
    """u32be(len(data)) || data: the length prefix that makes every concatenation unambiguous."""
    if len(data) >= 1 << 32:
        raise ValueError("field too long")
    return len(data).to_bytes(4, "big") + data


def text(value: str) -> bytes:
    """The bytes of a stored string: UTF-8, with undecodable bytes kept as they were received."""
    return value.encode("utf-8", "surrogateescape")


def b64u(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64u(value: str, size: int, field_name: str) -> bytes:
    """Strict inverse of `b64u` for a value of exactly `size` bytes; IntegrityError otherwise."""
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii") + b"=" * (-len(value) % 4))
    except (binascii.Error, ValueError, UnicodeError):
        raise IntegrityError(field_name) from None
    if len(raw) != size or b64u(raw) != value:
        raise IntegrityError(field_name)
    return raw


def _cipher(prk: bytes, label: bytes, salt: bytes) -> AESGCM:
    return AESGCM(expand(prk, label + b"\x00" + salt))


def seal(prk: bytes, label: bytes, plaintext: bytes, aad: bytes, rand: Rand = os.urandom) -> bytes:
    """Seal of §1.1: salt || AES-256-GCM(Expand(prk, label || 0x00 || salt), 0^12, plaintext, aad)."""
    salt = rand(SALT_SIZE)
    if len(salt) != SALT_SIZE:
        raise ValueError("rand returned the wrong length")
    return salt + _cipher(prk, label, salt).encrypt(_ZERO_NONCE, plaintext, aad)


def open_sealed(prk: bytes, label: bytes, sealed: bytes, aad: bytes, field_name: str) -> bytes:
    """Open of §1.1; IntegrityError(field_name) if it is too short or the tag fails."""
    if len(sealed) < SEAL_OVERHEAD:
        raise IntegrityError(field_name)
    try:
        return _cipher(prk, label, sealed[:SALT_SIZE]).decrypt(_ZERO_NONCE, sealed[SALT_SIZE:], aad)
    except InvalidTag:
        raise IntegrityError(field_name) from None
