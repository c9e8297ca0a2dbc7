"""Values bound to the data key: the sealed trailer after a single-part body (FORMAT.md §9) and the
sealed checksums in the metadata (§10).

The trailer carries what a PUT learns only after the body (the SSE-S3 MD5 without Content-MD5,
an aws-chunked trailing checksum), so the one backend write carries them at its end:

    values = TrailerValues(md5="…hex…", checksum_algorithm="crc32", checksum="…b64…")
    flags = values.flags                                   # -> s3proxy-tr, decided before the write
    tail = seal_trailer(data_key, values)                  # TRAILER_SIZE bytes after the final chunk
    values = open_trailer(data_key, tail, flags)           # IntegrityError if anything is off

A checksum known before the write goes to `s3proxy-cks` instead (`seal_checksums`).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from s3proxy.format.errors import IntegrityError
from s3proxy.format.keys import SEAL_OVERHEAD, Rand, lp, open_sealed, seal

TRAILER_MD5 = 1  # s3proxy-tr bit: the trailer holds the SSE-S3 ETag (MD5 of the plaintext)
TRAILER_CHECKSUM = 2  # s3proxy-tr bit: the trailer holds a flexible checksum
TRAILER_FLAGS = (1, 2, 3)
BLOCK_VERSION = 2
BLOCK_SIZE = 52
TRAILER_SIZE = SEAL_OVERHEAD + BLOCK_SIZE  # 84
MD5_SIZE = 16
MAX_DIGEST = 32
FULL_OBJECT = 1  # the one checksum type a version-2 object keeps

# algorithm id in the block -> (name, digest length)
CHECKSUM_IDS = {1: ("crc32", 4), 2: ("crc32c", 4), 3: ("crc64nvme", 8), 4: ("sha1", 20), 5: ("sha256", 32)}
CHECKSUM_ID_OF = {name: (i, size) for i, (name, size) in CHECKSUM_IDS.items()}

_TRAILER_LABEL = b"s3proxy.format@v2 trailer"
_CHECKSUMS_INFO = b"s3proxy checksums v1"
FIELD_TRAILER = "trailer"
FIELD_CHECKSUMS = "s3proxy-cks"


@dataclass(frozen=True)
class TrailerValues:
    """What a trailer holds, in the forms the store has them: the MD5 as lower-case hex, the
    checksum as S3 shows it (base64 of the digest) with its lower-case algorithm name."""

    md5: str | None = None
    checksum_algorithm: str | None = None
    checksum: str | None = None

    @property
    def flags(self) -> int:
        """The s3proxy-tr value (0 = nothing late, no trailer)."""
        return (TRAILER_MD5 if self.md5 is not None else 0) | (TRAILER_CHECKSUM if self.checksum is not None else 0)

    def checksum_headers(self) -> dict[str, str]:
        """x-amz-checksum-<alg> and x-amz-checksum-type, or nothing."""
        if self.checksum is None or self.checksum_algorithm is None:
            return {}
        return {f"x-amz-checksum-{self.checksum_algorithm}": self.checksum, "x-amz-checksum-type": "FULL_OBJECT"}


def _block(values: TrailerValues) -> bytes:
    if (values.checksum is None) != (values.checksum_algorithm is None):
        raise ValueError("a checksum needs its algorithm and the reverse")
    md5 = bytes.fromhex(values.md5) if values.md5 is not None else bytes(MD5_SIZE)
    if len(md5) != MD5_SIZE or (values.md5 is not None and values.md5 != md5.hex()):
        raise ValueError("md5 must be 32 lower-case hex digits")
    alg, kind, digest = 0, 0, b""
    if values.checksum is not None:
        if values.checksum_algorithm not in CHECKSUM_ID_OF:
            raise ValueError("unknown checksum algorithm")
        alg, size = CHECKSUM_ID_OF[values.checksum_algorithm]
        digest = base64.b64decode(values.checksum, validate=True)
        if len(digest) != size:
            raise ValueError("checksum has the wrong length for its algorithm")
        kind = FULL_OBJECT
    return bytes([BLOCK_VERSION, values.flags]) + md5 + bytes([alg, kind]) + digest.ljust(MAX_DIGEST, b"\x00")


def _parse_block(block: bytes, flags: int) -> TrailerValues:
    bad = IntegrityError(FIELD_TRAILER)
    if len(block) != BLOCK_SIZE or block[0] != BLOCK_VERSION or block[1] != flags or flags not in TRAILER_FLAGS:
        raise bad
    md5, alg, kind, digest = block[2:18], block[18], block[19], block[20:]
    md5_hex = None
    if flags & TRAILER_MD5:
        md5_hex = md5.hex()
    elif any(md5):
        raise bad
    if not flags & TRAILER_CHECKSUM:
        if alg or kind or any(digest):
            raise bad
        return TrailerValues(md5_hex)
    if alg not in CHECKSUM_IDS or kind != FULL_OBJECT:
        raise bad
    name, size = CHECKSUM_IDS[alg]
    if any(digest[size:]):
        raise bad
    return TrailerValues(md5_hex, name, base64.b64encode(digest[:size]).decode("ascii"))


def seal_trailer(data_key: bytes, values: TrailerValues, context: bytes = b"", rand: Rand = os.urandom) -> bytes:
    """The TRAILER_SIZE bytes to append after the final chunk; `values.flags` must be non-zero and
    equal to the s3proxy-tr the envelope was sealed with."""
    if values.flags == 0:
        raise ValueError("an empty trailer is no trailer")
    return seal(data_key, _TRAILER_LABEL, _block(values), lp(context), rand)


def open_trailer(data_key: bytes, trailer: bytes | bytearray | memoryview, flags: int, context: bytes = b"") -> TrailerValues:
    """The values of a stored trailer whose envelope says `flags` (s3proxy-tr); IntegrityError if
    its length, tag, version, flags or padding is wrong."""
    if len(trailer) != TRAILER_SIZE:
        raise IntegrityError(FIELD_TRAILER)
    return _parse_block(open_sealed(data_key, _TRAILER_LABEL, bytes(trailer), lp(context), FIELD_TRAILER), flags)


# --- s3proxy-cks (§10): the same encoding in versions 1 and 2 ---


def _checksum_cipher(data_key: bytes) -> AESGCM:
    return AESGCM(HKDF(hashes.SHA256(), 32, None, _CHECKSUMS_INFO).derive(data_key))


def seal_checksums(data_key: bytes, checksums: Mapping[str, str], rand: Rand = os.urandom) -> str:
    """s3proxy-cks: b64(nonce || GCM(HKDF(K, info "s3proxy checksums v1"), "alg=value;…" sorted))."""
    nonce = rand(12)
    body = ";".join(f"{k}={v}" for k, v in sorted(checksums.items())).encode()
    return base64.b64encode(nonce + _checksum_cipher(data_key).encrypt(nonce, body, b"")).decode()


def open_checksums(data_key: bytes, sealed: str | None) -> dict[str, str]:
    """The checksums in s3proxy-cks ({} when absent); IntegrityError if it does not open."""
    if not sealed:
        return {}
    try:
        raw = base64.b64decode(sealed, validate=True)
        body = _checksum_cipher(data_key).decrypt(raw[:12], raw[12:], b"").decode()
    except (binascii.Error, ValueError, InvalidTag, UnicodeError):
        raise IntegrityError(FIELD_CHECKSUMS) from None
    return dict(item.split("=", 1) for item in body.split(";") if "=" in item)
