"""The S3 flexible checksums and Content-MD5: incremental hashers and header-value validation.

Algorithms (names as in `x-amz-checksum-<name>` and `x-amz-sdk-checksum-algorithm`, lower-case):
crc32, crc32c, crc64nvme, sha1, sha256. Values travel base64-encoded, big-endian for the CRCs
(S3 User Guide, "Checking object integrity"). CRC32 uses zlib; CRC32C and CRC64NVME use awscrt
(AWS's own C runtime, hardware-accelerated, the same code botocore uses for them when installed).
If awscrt is missing those two algorithms are answered as unsupported, like an invalid one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Callable
from typing import Protocol

try:  # optional accelerated CRCs
    from awscrt import checksums as _crt
except ImportError:  # pragma: no cover - exercised only where awscrt is absent
    _crt = None


class Hasher(Protocol):
    def update(self, data: bytes) -> None: ...

    def digest(self) -> bytes: ...


class _Crc:
    """A running CRC with the hashlib update/digest shape."""

    def __init__(self, fn: Callable[[bytes, int], int], width: int) -> None:
        self._fn = fn
        self._width = width
        self._value = 0

    def update(self, data: bytes) -> None:
        self._value = self._fn(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width, "big")


def _zlib_crc32(data: bytes, previous: int) -> int:
    return zlib.crc32(data, previous)


_FACTORIES: dict[str, Callable[[], Hasher]] = {
    "crc32": lambda: _Crc(_zlib_crc32, 4),
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
}
if _crt is not None:
    _FACTORIES["crc32c"] = lambda: _Crc(_crt.crc32c, 4)
    _FACTORIES["crc64nvme"] = lambda: _Crc(_crt.crc64nvme, 8)

# decoded digest length of each algorithm S3 knows, supported here or not
DIGEST_SIZES = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32}
# the spelling AWS uses in messages ("The CRC32 you specified did not match ...")
DISPLAY_NAMES = {"crc32": "CRC32", "crc32c": "CRC32C", "crc64nvme": "CRC64NVME", "sha1": "SHA1", "sha256": "SHA256"}
HEADER_PREFIX = "x-amz-checksum-"


def supported() -> frozenset[str]:
    """The algorithms this process can compute."""
    return frozenset(_FACTORIES)


def new_hasher(algorithm: str) -> Hasher:
    """A fresh incremental hasher for a supported algorithm name (lower-case)."""
    return _FACTORIES[algorithm]()


def decode_value(value: str, size: int) -> bytes | None:
    """The digest bytes of a base64 header value, or None when it is not exactly `size` bytes."""
    value = value.strip()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


def encode(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")
