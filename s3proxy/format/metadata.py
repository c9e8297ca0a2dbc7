"""Version-2 object metadata: the metadata MAC `s3proxy-mm`, the sealed SSE-S3 ETag, and where an
object's ETag lives (FORMAT.md §11-14). Everything here is keyed by IK_meta, never by the data
key, so HEAD and listings verify an object without a key service call.

At a write (`metadata` is what the backend will store: envelope, mode and store fields plus the
client's own metadata in stored form; `headers` the bound content headers):

    fields[KEY_SEALED_ETAG] = seal_etag(ik_meta, arn, md5_hex)           # SSE-S3, MD5 known
    stored = seal_metadata(ik_meta, arn, metadata, headers)              # adds s3proxy-mm

At a read, before anything else:

    version = open_metadata(ik_meta, arn, stored, headers)   # 0: not ours; 1: §19 rules; 2: verified
    where = etag_source(stored)                               # "s3proxy-etag" | "s3proxy-setag" | "trailer" | "record"
    etag = metadata_etag(ik_meta, arn, stored)                # None when it is in the trailer or the record
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping

from s3proxy.format.envelope import (
    ESCAPED_PREFIX,
    INTERNAL_PREFIX,
    KEY_CHECKSUMS,
    KEY_CHUNK_SIZE,
    KEY_ETAG,
    KEY_MAC,
    KEY_METADATA_MAC,
    KEY_MODE,
    KEY_MPU,
    KEY_PARTS,
    KEY_SEALED_ETAG,
    KEY_SIZE,
    KEY_TRAILER,
    KEY_VERSION,
    KEY_WRAPPED,
    KNOWN_KEYS,
)
from s3proxy.format.errors import IntegrityError
from s3proxy.format.keys import Rand, b64u, from_b64u, lp, open_sealed, seal, text
from s3proxy.format.trailer import MD5_SIZE, TRAILER_CHECKSUM, TRAILER_MD5

# the headers the proxy returns from what it stored, all bound (§12); lower-case, sorted
BOUND_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-type",
    "expires",
    "x-amz-website-redirect-location",
)
DEFAULT_CONTENT_TYPE = "binary/octet-stream"  # what S3 serves for an object stored without one
MODES = ("AES256", "aws:kms", "SSE-C")
SSE_S3 = "AES256"
MAC_SIZE = 32

ETAG_CLEAR = KEY_ETAG
ETAG_SEALED = KEY_SEALED_ETAG
ETAG_TRAILER = "trailer"
ETAG_RECORD = "record"

_MM_LABEL = b"s3proxy.format@v2 metadata\x00"
_ETAG_LABEL = b"s3proxy.format@v2 etag"
_SEALED_ETAG_SIZE = 16 + MD5_SIZE + 16  # salt, MD5, tag
_REQUIRED_V2 = (KEY_VERSION, KEY_CHUNK_SIZE, KEY_MODE, KEY_WRAPPED, KEY_METADATA_MAC)
_V2_ONLY = (KEY_METADATA_MAC, KEY_TRAILER, KEY_SEALED_ETAG)
_HEX32 = re.compile(r"[0-9a-f]{32}")


def object_arn(bucket: str, key: str) -> str:
    """The name the metadata MAC and the sealed ETag bind: arn:aws:s3:::bucket/key."""
    return f"arn:aws:s3:::{bucket}/{key}"


def _pairs(entries: Mapping[str, str]) -> bytes:
    encoded = sorted((text(k), text(v)) for k, v in entries.items())
    return len(encoded).to_bytes(4, "big") + b"".join(lp(k) + lp(v) for k, v in encoded)


def metadata_mac_input(arn: str, metadata: Mapping[str, str], headers: Mapping[str, str]) -> bytes:
    """The exact bytes §12 MACs: label, the name, every metadata entry but s3proxy-mm, the bound
    headers; each string length-prefixed, each list counted and sorted. ValueError for a header
    name that is not one of BOUND_HEADERS (the caller passes only those)."""
    unknown = set(headers) - set(BOUND_HEADERS)
    if unknown:
        raise ValueError(f"not a bound header: {sorted(unknown)}")
    meta = {k: v for k, v in metadata.items() if k != KEY_METADATA_MAC}
    return _MM_LABEL + lp(text(arn)) + _pairs(meta) + _pairs(headers)


def metadata_mac(ik_meta: bytes, arn: str, metadata: Mapping[str, str], headers: Mapping[str, str]) -> str:
    """s3proxy-mm's value: b64u(HMAC-SHA-256(IK_meta, metadata_mac_input(...)))."""
    return b64u(hmac.new(ik_meta, metadata_mac_input(arn, metadata, headers), hashlib.sha256).digest())


def seal_metadata(ik_meta: bytes, arn: str, metadata: Mapping[str, str], headers: Mapping[str, str]) -> dict[str, str]:
    """`metadata` with s3proxy-mm (re)computed: what the backend stores. Use at every write and
    every re-seal (copy, metadata-only copy, rewrap, upgrade)."""
    out = {k: v for k, v in metadata.items() if k != KEY_METADATA_MAC}
    out[KEY_METADATA_MAC] = metadata_mac(ik_meta, arn, out, headers)
    return out


def open_metadata(
    ik_meta: bytes, arn: str, metadata: Mapping[str, str], headers: Mapping[str, str], *, accept_v1: bool = True
) -> int:
    """Verify an object's metadata as stored (§14 steps 1-2); its format version.

    0: no s3proxy-v, not an s3proxy object (the caller refuses to serve its body).
    1: a version-1 object (nothing here is authenticated: §19.1), if `accept_v1`.
    2: the metadata MAC verified, every s3proxy-* key known, the shape valid, one ETag source.
    IntegrityError otherwise.
    """
    version = metadata.get(KEY_VERSION)
    if version is None:
        return 0
    if version == "1":
        if not accept_v1:
            raise IntegrityError(KEY_VERSION)
        for key in _V2_ONLY:
            if key in metadata:
                raise IntegrityError(key)
        return 1
    if version != "2":
        raise IntegrityError(KEY_VERSION)
    expected = metadata_mac(ik_meta, arn, metadata, headers)
    if not hmac.compare_digest(expected.encode(), metadata.get(KEY_METADATA_MAC, "").encode("utf-8", "surrogateescape")):
        raise IntegrityError(KEY_METADATA_MAC)
    check_shape(metadata)
    return 2


def check_shape(metadata: Mapping[str, str]) -> None:
    """The rules of §7 and §11 for an authentic version-2 metadata map; IntegrityError(field) if
    a key is unknown or missing, or fields that exclude each other are both there."""
    for key in metadata:
        if key.startswith(INTERNAL_PREFIX) and key not in KNOWN_KEYS and not key.startswith(ESCAPED_PREFIX):
            raise IntegrityError(key)
    for key in _REQUIRED_V2:
        if key not in metadata:
            raise IntegrityError(key)
    if metadata[KEY_MODE] not in MODES:
        raise IntegrityError(KEY_MODE)
    if KEY_PARTS in metadata:  # version 2 keeps the part list in the record parts/<id> only
        raise IntegrityError(KEY_PARTS)
    trailer = _trailer_flags(metadata)
    multipart = KEY_MPU in metadata
    for key in (KEY_SIZE, KEY_MAC):
        if (key in metadata) == multipart:
            raise IntegrityError(key)
    if multipart and KEY_TRAILER in metadata:
        raise IntegrityError(KEY_TRAILER)
    if KEY_CHECKSUMS in metadata and trailer & TRAILER_CHECKSUM:  # one place per checksum
        raise IntegrityError(KEY_CHECKSUMS)
    for key in (KEY_ETAG, KEY_MPU):  # random ids: 32 lower-case hex digits
        if key in metadata and not _HEX32.fullmatch(metadata[key]):
            raise IntegrityError(key)
    etag_source(metadata)


def _trailer_flags(metadata: Mapping[str, str]) -> int:
    value = metadata.get(KEY_TRAILER)
    if value is None:
        return 0
    if value not in ("1", "2", "3"):
        raise IntegrityError(KEY_TRAILER)
    return int(value)


def etag_source(metadata: Mapping[str, str]) -> str:
    """Where a version-2 object's client ETag is (§11): ETAG_CLEAR, ETAG_SEALED, ETAG_TRAILER or
    ETAG_RECORD, in that order of precedence (a copy or a re-wrap keeps the data's trailer and the
    multipart record, and names its own ETag in the metadata). IntegrityError("etag") for none, for
    both metadata fields, for a clear ETag on SSE-S3 (whose ETag is an MD5 of the plaintext), and for
    an ETag only in the trailer of an object that is not SSE-S3 (HEAD would need its data key)."""
    sse_s3 = metadata.get(KEY_MODE) == SSE_S3
    clear, sealed = KEY_ETAG in metadata, KEY_SEALED_ETAG in metadata
    if clear and sealed:
        raise IntegrityError("etag")
    if clear:
        if sse_s3:
            raise IntegrityError("etag")
        return ETAG_CLEAR
    if sealed:
        return ETAG_SEALED
    if _trailer_flags(metadata) & TRAILER_MD5:
        if not sse_s3:
            raise IntegrityError("etag")
        return ETAG_TRAILER
    if KEY_MPU in metadata:
        return ETAG_RECORD
    raise IntegrityError("etag")


def seal_etag(ik_meta: bytes, arn: str, md5_hex: str, rand: Rand = os.urandom) -> str:
    """s3proxy-setag: the SSE-S3 ETag (32 lower-case hex) sealed under IK_meta for this name (§11)."""
    md5 = bytes.fromhex(md5_hex)
    if len(md5) != MD5_SIZE or md5.hex() != md5_hex:
        raise ValueError("md5 must be 32 lower-case hex digits")
    return b64u(seal(ik_meta, _ETAG_LABEL, md5, lp(text(arn)), rand))


def open_etag(ik_meta: bytes, arn: str, sealed: str) -> str:
    """The ETag in s3proxy-setag; IntegrityError if it is malformed, edited, or another name's."""
    raw = from_b64u(sealed, _SEALED_ETAG_SIZE, KEY_SEALED_ETAG)
    return open_sealed(ik_meta, _ETAG_LABEL, raw, lp(text(arn)), KEY_SEALED_ETAG).hex()


def metadata_etag(ik_meta: bytes, arn: str, metadata: Mapping[str, str]) -> str | None:
    """A version-2 object's client ETag when the metadata holds it (clear or sealed); None when it
    is in the trailer or the multipart record (the caller reads those)."""
    where = etag_source(metadata)
    if where == ETAG_CLEAR:
        return metadata[KEY_ETAG]
    if where == ETAG_SEALED:
        return open_etag(ik_meta, arn, metadata[KEY_SEALED_ETAG])
    return None
