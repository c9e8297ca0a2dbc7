"""What the object store shows and keeps beside the data: client views, envelope helpers, caches.

Internal metadata keys start with `s3proxy-`; a client's own key with that prefix is stored
escaped under `s3proxy-user-`, so no client can forge an envelope field.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import sys
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import ObjectInfo, ObjectMeta
from ..buffers import Body
from ..cse import envelope as cse_envelope
from ..format import envelope as fmt
from ..format.trailer import open_checksums, seal_checksums
from ..kms.datakeys import DataKeySource
from ..modes.base import ObjectRef
from ..modes.kms_modes import service_unwrap, service_wrap

log = logging.getLogger("s3proxy.store")

INTERNAL = fmt.INTERNAL_PREFIX
ESCAPED = fmt.ESCAPED_PREFIX
__all__ = ["open_checksums", "seal_checksums"]  # sealed checksums are the format's (format/trailer.py); re-exported
SMALL_BODY = 256 * 1024  # bodies up to this size are read before the backend write: one request, complete envelope


def to_backend_metadata(user: Mapping[str, str], internal: Mapping[str, str]) -> dict[str, str]:
    out = {(ESCAPED + k[len(INTERNAL):] if k.startswith(INTERNAL) else k): v for k, v in user.items()}
    out.update(internal)
    return out


def split_backend_metadata(stored: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(user metadata as the client wrote it, internal fields)."""
    user: dict[str, str] = {}
    internal: dict[str, str] = {}
    for k, v in stored.items():
        if k.startswith(ESCAPED):
            user[INTERNAL + k[len(ESCAPED):]] = v
        elif k.startswith(INTERNAL):
            internal[k] = v
        else:
            user[k] = v
    return user, internal


# client-side encryption -------------------------------------------------------------------------

CSE_HEADER = "x-s3proxy-client-side-encryption"


def client_side_format(user: Mapping[str, str]) -> str | None:
    """Which AWS S3 Encryption Client format the object's own metadata shows, if any.

    The proxy never needs the client's key: it stores such objects like any other (its own SSE
    layer underneath, as AWS adds SSE-S3) and only tells the reader what it is looking at.
    """
    if cse_envelope.V3_CEK_ALG in user and cse_envelope.V3_COMMITMENT in user:
        return "v3"
    if cse_envelope.KEY_V2 in user:
        return "v2"
    if cse_envelope.KEY_V1 in user:
        return "v1"
    if cse_envelope.UNENCRYPTED_LENGTH in user or cse_envelope.INSTRUCTION_MARKER in user:
        return "instruction-file"
    return None


# views --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectView:
    """An object as the client sees it."""

    key: str
    size: int
    etag: str
    last_modified: dt.datetime
    meta: ObjectMeta = field(default_factory=ObjectMeta)
    version_id: str | None = None
    storage_class: str = "STANDARD"
    delete_marker: bool = False
    is_latest: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)  # encryption echo, checksums


@dataclass(frozen=True)
class Stored:
    """A stored object's envelope fields (part list merged in) and what they say before any key is
    used. Version 2: every field here was authenticated by the metadata MAC (catalog.py)."""

    info: ObjectInfo
    fields: Mapping[str, str]
    user: Mapping[str, str]
    size: int
    etag: str | None  # None: the ETag is in the trailer and was not read yet (SSE-S3, FORMAT.md §9)
    version: int = 0  # the format version: 0 not an s3proxy object, 1 (unauthenticated metadata), 2
    md5_etag: bool = False  # the ETag is the MD5 of the plaintext (S3's single-part SSE-S3 ETag)

    @property
    def encrypted(self) -> bool:
        return fmt.KEY_VERSION in self.fields

    @property
    def client_etag(self) -> str:
        """The ETag, which the store resolved before showing the object (ObjectStore.open)."""
        if self.etag is None:
            raise ValueError("the ETag in the trailer was not read")
        return self.etag


@dataclass(frozen=True)
class Download:
    view: ObjectView
    body: Body
    range: tuple[int, int] | None  # inclusive plaintext offsets when a range was served
    parts_count: int | None = None  # ?partNumber=N of a multipart object: how many parts it has


@dataclass(frozen=True)
class Part:
    """A multipart object's part as GetObjectAttributes lists it."""

    number: int
    size: int
    checksums: Mapping[str, str] = field(default_factory=dict)  # algorithm -> base64 value


@dataclass(frozen=True)
class Written:
    etag: str
    version_id: str | None = None
    last_modified: dt.datetime | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


LISTING_CACHE_BYTES = 16 * 1024 * 1024
_ENTRY_OVERHEAD = 104  # an OrderedDict slot and its link node, measured (CPython 3.11-3.13, 64-bit)


def _pack(etag: str) -> bytes | None:
    """An ETag in a few bytes: 0x00 and 16 raw bytes for 32 lower-case hex digits (an MD5, the usual
    case), else 1 + its length and its ASCII bytes; None for one that is neither (not cached)."""
    if len(etag) == 32:
        try:
            raw = bytes.fromhex(etag)
        except ValueError:
            raw = b""
        if raw and raw.hex() == etag:
            return b"\x00" + raw
    if len(etag) < 255 and etag.isascii():
        return bytes((len(etag) + 1,)) + etag.encode("ascii")
    return None


def _packed_len(data: bytes, at: int) -> int:
    return 17 if data[at] == 0 else data[at]


def _unpack(data: bytes, at: int) -> str:
    return data[at + 1:at + 17].hex() if data[at] == 0 else data[at + 1:at + data[at]].decode("ascii")


def _records(value: bytes) -> list[tuple[bytes, bytes]]:
    """The (packed backend ETag, the rest of the record) of each version a cache value holds, oldest first."""
    out, at = [], 0
    while at < len(value):
        mid = at + _packed_len(value, at)
        end = mid + 8 + _packed_len(value, mid + 8)
        out.append((value[at:mid], value[mid:end]))
        at = end
    return out


class ListingCache:
    """(bucket, key, backend ETag) -> (plaintext size, client ETag): listings need no HEAD per object
    for what this proxy wrote or already looked at. Rebuildable from the backend at any time.

    Held per object name, least recently used first out past `max_bytes` (the setting
    `listing_cache_bytes`), with the newest `versions_per_key` backend ETags of each: an overwrite
    pushes out what it replaced instead of keeping it until the whole table cycles, and a versioned
    key's recent versions still hit. Compact: one str ("bucket/key": a bucket name holds no "/") and
    one bytes value per name, each version packed as backend ETag, size (8 bytes) and client ETag,
    an MD5-shaped ETag as its 16 raw bytes: about 250 bytes for a 40-character "bucket/key" with one
    version (700 before, as a dict of tuples), counted as what the two objects and their table slot take.
    """

    def __init__(self, max_bytes: int = LISTING_CACHE_BYTES, versions_per_key: int = 4) -> None:
        self.max_bytes = max_bytes
        self.versions_per_key = versions_per_key
        self.bytes = 0  # what the entries take, as counted by `_cost`
        self._entries: OrderedDict[str, bytes] = OrderedDict()

    @staticmethod
    def _cost(name: str, value: bytes) -> int:
        return sys.getsizeof(name) + sys.getsizeof(value) + _ENTRY_OVERHEAD

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, bucket: str, key: str, backend_etag: str) -> tuple[int, str] | None:
        name = f"{bucket}/{key}"
        value = self._entries.get(name)
        if value is None:
            return None
        self._entries.move_to_end(name)
        wanted = _pack(backend_etag)
        for packed, rest in _records(value):
            if packed == wanted:
                return int.from_bytes(rest[:8], "big"), _unpack(rest, 8)
        return None

    def put(self, bucket: str, key: str, backend_etag: str, size: int, etag: str) -> None:
        packed, client = _pack(backend_etag), _pack(etag)
        if packed is None or client is None or not 0 <= size < 1 << 64:
            return  # not expressible compactly: such an object is looked up as if never seen
        name = f"{bucket}/{key}"
        old = self._entries.pop(name, None)
        kept = [] if old is None else [r for r in _records(old) if r[0] != packed]
        kept.append((packed, size.to_bytes(8, "big") + client))  # the last is the newest
        value = b"".join(p + rest for p, rest in kept[-self.versions_per_key:])
        if old is not None:
            self.bytes -= self._cost(name, old)
        self._entries[name] = value
        self.bytes += self._cost(name, value)
        while self.bytes > self.max_bytes and self._entries:
            gone, gone_value = self._entries.popitem(last=False)
            self.bytes -= self._cost(gone, gone_value)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _hashed(source: Body, md5: Any) -> Body:
    """Pass `source` through, feeding `md5` (if any) on the way."""
    async for piece in source:
        if md5 is not None:
            md5.update(piece)
        yield piece


async def _service_wrap(kms: DataKeySource, secret: bytes, ref: ObjectRef, request_id: str | None) -> str:
    """`secret` wrapped by the proxy's own service key, bound to the object's ARN (base64), as SSE-S3 wraps."""
    _, blob = await service_wrap(kms, ref, request_id, secret)
    return base64.b64encode(blob).decode()


async def _service_unwrap(kms: DataKeySource, wrapped: str, ref: ObjectRef, request_id: str | None) -> bytes:
    return await service_unwrap(kms, ref, request_id, base64.b64decode(wrapped))


async def _close(body: Any) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()
