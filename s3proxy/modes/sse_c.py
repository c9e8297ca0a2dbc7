"""SSE-C: the customer sends a 256-bit key with every request; the proxy never stores or logs it.

The object's random data key is wrapped with AES-256-GCM under a key-encryption key derived from
the customer key by HKDF-SHA-256 with a random 16-byte salt, and the wrap's associated data is
the object's ARN. Only `salt || nonce || wrapped key || tag` is stored: a salted, keyed check
that recognises the right customer key (the GCM tag) and reveals nothing about it. A wrong key
and a wrap moved to another object name both fail the tag: 403 AccessDenied, as S3 answers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .. import errors
from .base import KEY_MODE, KEY_WRAPPED, ObjectRef, Sealed, b64decode, b64encode

ALGORITHM = "AES256"
SALT, NONCE, KEY = 16, 12, 32
_INFO = b"s3proxy sse-c kek v1"
WRONG_KEY = (
    "Requests specifying Server Side Encryption with Customer provided keys must provide the correct secret key."
)


@dataclass(frozen=True)
class CustomerKey:
    """A validated SSE-C key from request headers. Never printed."""

    key: bytes = field(repr=False)
    key_md5: str  # base64 MD5 of the raw key, as sent (echoed back)


def parse_customer_key(headers: Mapping[str, str], prefix: str = "x-amz-server-side-encryption-customer-") -> CustomerKey | None:
    """The SSE-C headers (or the copy-source ones), checked in AWS's order; None when absent."""
    algorithm = headers.get(prefix + "algorithm")
    key_b64 = headers.get(prefix + "key")
    key_md5 = headers.get(prefix + "key-md5")
    if algorithm is None and key_b64 is None and key_md5 is None:
        return None
    if algorithm is None:
        raise errors.InvalidArgument(
            "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.",
            ArgumentName=prefix + "algorithm",
        )
    if algorithm != ALGORITHM:
        raise errors.InvalidEncryptionAlgorithm(ArgumentName=prefix + "algorithm", ArgumentValue=algorithm)
    if key_b64 is None:
        raise errors.InvalidArgument(
            "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.",
            ArgumentName=prefix + "key",
        )
    try:
        key = base64.b64decode(key_b64.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeError, ValueError):
        key = b""
    if len(key) != KEY:
        raise errors.InvalidArgument("The secret key was invalid for the specified algorithm.", ArgumentName=prefix + "key")
    if key_md5 is None:
        raise errors.InvalidArgument(
            "Requests specifying Server Side Encryption with Customer provided keys "
            "must provide the client calculated MD5 of the secret key.",
            ArgumentName=prefix + "key-MD5",
        )
    expected = base64.b64encode(hashlib.md5(key).digest()).decode()
    if not hmac.compare_digest(expected.encode(), key_md5.encode("utf-8", "replace")):
        raise errors.InvalidArgument(
            "The calculated MD5 hash of the key did not match the hash that was provided.", ArgumentName=prefix + "key-MD5"
        )
    return CustomerKey(key, key_md5)


def _kek(customer_key: bytes, salt: bytes) -> AESGCM:
    return AESGCM(HKDF(hashes.SHA256(), KEY, salt, _INFO).derive(customer_key))


@dataclass(frozen=True)
class SseC:
    customer: CustomerKey
    rand: Callable[[int], bytes] = os.urandom
    name: str = "SSE-C"
    mismatch: type[errors.S3Error] = errors.AccessDenied
    mismatch_message: str = WRONG_KEY

    async def seal(self, ref: ObjectRef, data_key: bytes | None = None) -> Sealed:
        data_key = data_key if data_key is not None else self.rand(KEY)
        salt, nonce = self.rand(SALT), self.rand(NONCE)
        wrapped = _kek(self.customer.key, salt).encrypt(nonce, data_key, ref.arn.encode())
        return Sealed(data_key, {KEY_MODE: self.name, KEY_WRAPPED: b64encode(salt + nonce + wrapped)})

    async def unseal(self, ref: ObjectRef, fields: Mapping[str, str]) -> bytes:
        blob = b64decode(fields[KEY_WRAPPED])
        if len(blob) != SALT + NONCE + KEY + 16:
            raise self.mismatch(self.mismatch_message)
        salt, nonce, wrapped = blob[:SALT], blob[SALT : SALT + NONCE], blob[SALT + NONCE :]
        try:
            return _kek(self.customer.key, salt).decrypt(nonce, wrapped, ref.arn.encode())
        except InvalidTag:
            raise self.mismatch(self.mismatch_message) from None

    def response_headers(self, fields: Mapping[str, str], *, on_write: bool) -> dict[str, str]:
        return {
            "x-amz-server-side-encryption-customer-algorithm": ALGORITHM,
            "x-amz-server-side-encryption-customer-key-MD5": self.customer.key_md5,
        }
