"""ObjectStore: the client's view of objects (plaintext, plaintext sizes, client ETags) over a backend
that only ever holds ciphertext.

The S3 operations in `ops/` speak only to the store (this, `multipart.MultipartUploads` and
`buckets.Buckets`). Every write resolves one encryption mode, seals a data key with it and streams
the body through the at-rest format (docs/FORMAT.md); every read recovers the key through the
stored mode, checks the envelope MAC and decrypts only the chunks it needs. There is no plaintext
path. Internal metadata keys start with `s3proxy-`; a client's own key with that prefix is stored
escaped under `s3proxy-user-`, so no client can forge an envelope field.

A read is two steps, so the operation decides in between without the store calling back up:

    opened = await store.open(ref, modes)      # found, mode resolved, an SSE-C key already checked
    ... preconditions on opened.view ...        # the operation's own rules (If-Match, delete markers)
    download = await store.read(opened, byte_range=...)   # other modes' keys recovered, bytes opened

An SSE-C key is checked in `open`, before anything else is said about the object (its size, its
parts, whether a precondition holds); every other mode recovers its key in `read`, so a 304 or
412 costs no KMS call.

`open` brings the metadata with the bytes a read will need, in one backend GET: the whole object,
or, for a byte range, the stored bytes that range needs if the object is a single-part one written
with this proxy's chunk size (pure arithmetic, FORMAT.md §6, without knowing the size). `read`
uses them only if the plan made from the authenticated envelope lies inside what came back;
otherwise (another chunk size, a multipart object whose range crosses into a later part) it reads
the planned bytes with a second GET, as it would have after a HEAD.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .. import errors
from ..auth.body import RequestBody
from ..backends.base import (
    Backend,
    DeleteResult,
    ListResult,
    ObjectInfo,
    ObjectMeta,
    PutResult,
    StoredRange,
    VersionListResult,
    WriteCondition,
)
from ..buffers import Body, Buffer
from ..format import envelope as fmt
from ..format.chunks import DEFAULT_CHUNK_SIZE, TAG_SIZE
from ..format.envelope import KEY_CHECKSUMS, KEY_ETAG, KEY_MPU, KEY_SEALED_ETAG
from ..format.errors import IntegrityError
from ..format.metadata import seal_etag
from ..format.ranges import ByteRange
from ..format.records import SHARED
from ..format.trailer import (
    TRAILER_CHECKSUM,
    TRAILER_MD5,
    TRAILER_SIZE,
    TrailerValues,
    open_checksums,
    open_trailer,
    seal_checksums,
    seal_trailer,
)
from ..kms.datakeys import DataKeySource
from ..kms.errors import KmsError
from ..modes.base import EncryptionMode, ObjectRef, Sealed
from ..modes.kms_modes import SseS3
from ..modes.resolve import COPY_SOURCE_SSEC, NOT_APPLICABLE, ModeResolver
from ..streams import BATCH, decrypt_range, encrypt_stream
from .buckets import Buckets
from .catalog import Catalog, record_name
from .conditions import ConditionalWrites, Enforcement, Precondition
from .views import (
    SMALL_BODY,
    Download,
    ListingCache,
    ObjectView,
    Part,
    Stored,
    Written,
    _close,
    _one,
)

log = logging.getLogger("s3proxy.store")

# a key service answer about a wrap that does not open is an integrity failure (FORMAT.md §14 step 3,
# §17); in version 1, whose wrap nothing authenticated, so is a key that is not there (a relabelled wrap)
_BROKEN_WRAP = {2: frozenset({"InvalidCiphertextException", "IncorrectKeyException"}),
                1: frozenset({"InvalidCiphertextException", "IncorrectKeyException", "NotFoundException"})}


async def unseal(mode: EncryptionMode, ref: ObjectRef, stored: Stored) -> bytes:
    """The object's data key through its mode, key service failures mapped as FORMAT.md §14 says."""
    try:
        return await mode.unseal(ref, stored.fields)
    except KmsError as exc:
        if exc.code in _BROKEN_WRAP.get(stored.version, _BROKEN_WRAP[1]):
            raise IntegrityError(fmt.KEY_WRAPPED) from None
        raise


def part_span(stored: Stored, part_number: int) -> tuple[int, int, int | None]:
    """(first, last, parts count) of part `part_number`: S3's "ranged GET of the part". A single-part
    object has only part 1 (the whole object, no parts count)."""
    multipart = fmt.KEY_PARTS in stored.fields
    parts = fmt.decode_parts(stored.fields[fmt.KEY_PARTS]) if multipart else ((1, stored.size),)
    offset = 0
    for number, size in parts:
        if number == part_number and size:
            return offset, offset + size - 1, len(parts) if multipart else None
        offset += size
    raise errors.InvalidPartNumber(PartNumberRequested=str(part_number), ActualPartCount=str(len(parts)))


@dataclass(frozen=True)
class Late:
    """What a write learns only from reading its body, and so seals into the trailer (FORMAT.md §9):
    the SSE-S3 MD5, and a flexible checksum (algorithm, value) whose value was not in the headers."""

    md5: Callable[[], str | None] | None = None
    checksum: tuple[str, Callable[[], str | None]] | None = None

    @property
    def flags(self) -> int:
        return (TRAILER_MD5 if self.md5 else 0) | (TRAILER_CHECKSUM if self.checksum else 0)

    def values(self) -> TrailerValues:
        md5 = self.md5() if self.md5 else None
        algorithm, value = (self.checksum[0], self.checksum[1]()) if self.checksum else (None, None)
        values = TrailerValues(md5, algorithm if value is not None else None, value)
        if values.flags != self.flags:
            raise ValueError("the body ended without the values its trailer was promised")
        return values


@dataclass
class Opened:
    """A stored object found and its mode resolved, before any plaintext is read (ObjectStore.open)."""

    ref: ObjectRef
    stored: Stored
    view: ObjectView
    mode: EncryptionMode | None  # None: a delete marker, or an object that predates the proxy (plaintext)
    data_key: bytes | None = field(default=None, repr=False)  # recovered already: an SSE-C key was checked
    body: Body | None = None  # the backend body fetched with the metadata: the whole object, or `window`
    window: tuple[int, int] | None = None  # the stored bytes `body` holds, when it is not the whole object
    trailer: TrailerValues | None = None  # the trailer's values, once read

    async def close(self) -> None:
        """Release what `read` did not take (the backend body of a whole-object GET)."""
        if self.body is not None:
            body, self.body = self.body, None
            await _close(body)


async def _within(body: Body, skip: int, length: int) -> AsyncIterator[Buffer]:
    """`length` bytes of `body` after its first `skip`; what follows them (at most a few chunks and a
    trailer: `ObjectStore._guess` asked for no more) is read to the end, so the backend connection
    is kept, and dropped."""
    try:
        async for piece in body:
            view = memoryview(piece)
            if skip:
                cut = min(skip, len(view))
                view, skip = view[cut:], skip - cut
            if length > 0 and len(view):
                out, length = view[:length], length - min(length, len(view))
                yield out
    finally:
        await _close(body)


class ObjectStore:
    def __init__(
        self,
        backend: Backend,
        catalog: Catalog,
        buckets: Buckets,
        enforcement: Enforcement,
        *,
        kms: DataKeySource,
        clock: Callable[[], float],
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        rand: Callable[[int], bytes] = os.urandom,
        small_body: int = SMALL_BODY,
        listing: ListingCache | None = None,
    ) -> None:
        self.backend = backend
        self.catalog = catalog
        self.buckets = buckets
        # conditional writes (PutObject, CopyObject here; CompleteMultipartUpload in MultipartUploads,
        # which shares this): a client's If-Match names the client ETag, which the store resolves
        self.conditions = ConditionalWrites(backend, self.client_etag, enforcement)
        self.kms = kms  # the service key: an SSE-S3 ETag in a trailer is read without the caller's permission
        self.clock = clock
        self.chunk_size = chunk_size
        self.rand = rand
        self.small_body = small_body
        self.listing = listing or ListingCache()

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    # writes ------------------------------------------------------------------------------------------
    async def mode_for_write(self, bucket: str, modes: ModeResolver) -> EncryptionMode:
        """The mode a write into `bucket` gets: the request's SSE headers, else the bucket's default."""
        return modes.for_write(await self.buckets.default_encryption(bucket))

    @staticmethod
    def md5_wanted(mode: EncryptionMode, declared_md5: str | None) -> bool:
        """Whether a write must hash its plaintext: an SSE-S3 ETag is the MD5 of the plaintext, unless a
        Content-MD5 (which the body is checked against anyway) already says what it is."""
        return mode.name == "AES256" and declared_md5 is None

    async def condition(self, operation: str, ref: ObjectRef, pre: Precondition | None) -> WriteCondition | None:
        """The backend's condition for a conditional write (store/conditions.py), checked against the
        current object first, so a false one costs no upload."""
        return await self.conditions.condition(operation, ref, pre)

    async def client_etag(self, bucket: str, info: ObjectInfo) -> str:
        """The ETag a client sees for the object `info` describes (an SSE-S3 ETag kept in the trailer is
        read through the service key, once: see `_etag_from_trailer`)."""
        stored = await self.catalog.stored(bucket, info)
        if stored.etag is None:
            opened = Opened(ObjectRef(bucket, info.key), stored, self.catalog.view(replace(stored, etag=""), None),
                            SseS3(self.kms))
            stored = await self._etag_from_trailer(opened)
        return stored.client_etag

    async def put_object(
        self, ref: ObjectRef, body: RequestBody, mode: EncryptionMode, meta: ObjectMeta, *, declared_md5: str | None = None,
        precondition: Precondition | None = None, condition: WriteCondition | None = None,
    ) -> Written:
        """Store the verified request `body` (opened with want_md5 = md5_wanted(mode, declared_md5))
        under `mode`; `declared_md5` is the Content-MD5 as hex. One backend write: what is known only
        after the body goes into the trailer (FORMAT.md §9). A conditional write carries the client's
        `precondition` and the backend's `condition` for it (from `condition`), which the backend
        decides together with the write."""
        size = body.require_length()
        sealed = await mode.seal(ref)
        sse_s3 = mode.name == "AES256"
        headers = {k: v for k, v in meta.headers.items() if k != "content-encoding"}
        if body.content_encoding:  # aws-chunked is how this request travelled, not what the object is
            headers["content-encoding"] = body.content_encoding
        meta = replace(meta, headers=headers)
        algorithm = body.checksum_algorithm
        if size <= self.small_body:  # read first: everything is known before the one write
            data = bytearray()
            async for piece in body:
                data += piece
            result, etag = await self._write(ref, sealed, sse_s3, meta, _one(bytes(data)), size,
                                             md5=(declared_md5 or body.md5_hex) if sse_s3 else None,
                                             checksums=body.checksums, precondition=precondition, condition=condition)
        else:
            early = body.checksum_from_headers
            late = Late(md5=(lambda: body.md5_hex) if sse_s3 and not declared_md5 else None,
                        checksum=(algorithm, lambda: body.checksums.get(algorithm or "")) if algorithm and not early else None)
            result, etag = await self._write(ref, sealed, sse_s3, meta, body, size, md5=declared_md5 if sse_s3 else None,
                                             checksums={algorithm: early} if algorithm and early else {}, late=late,
                                             precondition=precondition, condition=condition)
        headers = dict(mode.response_headers(sealed.fields, on_write=True))
        headers.update({f"x-amz-checksum-{k}": v for k, v in body.checksums.items()})
        return Written(etag, result.version_id, self._now(), headers)

    async def _write(self, ref: ObjectRef, sealed: Sealed, sse_s3: bool, meta: ObjectMeta, source: Any, size: int, *,
                     md5: str | None, checksums: Mapping[str, str], late: Late | None = None,
                     precondition: Precondition | None = None, condition: WriteCondition | None = None,
                     ) -> tuple[PutResult, str]:
        """One backend PUT of `size` plaintext bytes from `source` in format version 2; (its result,
        the client ETag). `md5`: the SSE-S3 ETag when known before the write; `late`: what the
        trailer will hold."""
        late = late or Late()
        key = sealed.data_key
        envelope = fmt.Envelope.single(size, self.chunk_size, version=fmt.VERSION_2, trailer=late.flags)
        fields = {**sealed.fields, **fmt.seal_envelope(envelope, key)}
        etag = md5
        if not sse_s3:  # S3: not an MD5 under SSE-KMS and SSE-C; never anything from ciphertext
            etag = fields[KEY_ETAG] = self.rand(16).hex()
        elif md5 is not None:
            fields[KEY_SEALED_ETAG] = seal_etag(self.catalog.keys.meta, ref.arn, md5, self.rand)
        if checksums:
            fields[KEY_CHECKSUMS] = seal_checksums(key, checksums, self.rand)
        stored_meta = self.catalog.sealed_meta(ref.bucket, ref.key, meta, fields)
        trailer = (lambda: seal_trailer(key, late.values(), rand=self.rand)) if late.flags else None
        stream = encrypt_stream(source, key, chunk_size=self.chunk_size, batch_size=BATCH, trailer=trailer)
        result = await self.conditions.written(precondition, self.backend.put_object(
            ref.bucket, ref.key, stream, envelope.stored_size, stored_meta, condition))
        if etag is None:
            assert late.md5 is not None
            etag = late.md5() or ""
        self.listing.put(ref.bucket, ref.key, result.etag, size, etag)
        return result, etag

    async def exists(self, ref: ObjectRef, version_id: str | None = None) -> bool:
        try:
            await self.backend.head_object(ref.bucket, ref.key, version_id)
        except errors.NoSuchKey:
            return False
        return True

    # reads ---------------------------------------------------------------------------------------------
    async def open(
        self, ref: ObjectRef, modes: ModeResolver, *, version_id: str | None = None, whole: bool = False,
        byte_range: ByteRange | None = None, copy_source: bool = False, plaintext: bool = False,
    ) -> Opened:
        """Find the object and resolve its mode; an SSE-C object's key is checked here, first.

        `whole`: the caller will read all of it, so the backend GET that brings the metadata also
        brings the body (one request). `byte_range`: the caller will read that range, so the GET
        brings the stored bytes it needs if the layout is the usual one (`_guess`); a guess that no
        stored byte satisfies falls back to a HEAD. Else a HEAD. `copy_source`: the object is a copy's source
        (x-amz-copy-source-server-side-encryption-customer-* headers). `plaintext`: an object that
        predates the proxy is opened (no mode) instead of refused with InvalidObjectState."""
        if not copy_source:
            modes.reject_sse_header()
        body: Body | None = None
        window: tuple[int, int] | None = None
        info: ObjectInfo | None = None
        if whole or byte_range is not None:
            try:
                got = await self.backend.get_object(ref.bucket, ref.key, None if whole else self._guess(byte_range),
                                                    version_id)
            except errors.S3Error as exc:
                if whole or exc.code != "InvalidRange":
                    raise
            else:
                info, body = got.info, got.body
                window = None if whole else (got.range or (0, info.size - 1))
        if info is None:
            info = await self.backend.head_object(ref.bucket, ref.key, version_id)
        try:
            stored = await self.catalog.stored(ref.bucket, info)
            if info.delete_marker:
                return Opened(ref, stored, self.catalog.view(stored, None), None, body=body, window=window)
            if not stored.encrypted:
                if not plaintext:
                    Catalog.require_encrypted(stored)
                if copy_source and modes.customer_key(COPY_SOURCE_SSEC) is not None:
                    raise errors.InvalidRequest(NOT_APPLICABLE)
                return Opened(ref, stored, self.catalog.view(stored, None), None, body=body, window=window)
            mode = modes.for_stored(stored.fields, copy_source=copy_source)
            opened = Opened(ref, stored, self.catalog.view(replace(stored, etag=""), mode), mode, body=body,
                            window=window)
            if mode.name == "SSE-C":  # its key comes first (and with it in hand, the envelope is checked too)
                Catalog.envelope(stored, await self.data_key(opened))
            if stored.etag is None:
                opened.stored = await self._etag_from_trailer(opened)
            opened.view = self.catalog.view(opened.stored, mode)
            return opened
        except BaseException:
            if body is not None:
                await _close(body)
            raise

    def _guess(self, byte_range: ByteRange | None) -> StoredRange:
        """The stored bytes plaintext `byte_range` needs if the object is single-part with this proxy's
        chunk size (FORMAT.md §6), whatever its size: from the first byte of the chunk holding the
        range's first byte to the last byte of the chunk holding its last (the backend clamps that to
        the object); for a suffix of n bytes, the last (n div C + 2) chunks and a trailer, which hold
        the chunks of the last n bytes whatever the final chunk's length."""
        assert byte_range is not None
        step = self.chunk_size + TAG_SIZE
        if byte_range.first is None:
            return None, (((byte_range.last or 0) // self.chunk_size) + 2) * step + TRAILER_SIZE
        last = None if byte_range.last is None else (byte_range.last // self.chunk_size + 1) * step - 1
        return byte_range.first // self.chunk_size * step, last

    async def _etag_from_trailer(self, opened: Opened) -> Stored:
        """An SSE-S3 object whose ETag is in its trailer (FORMAT.md §9): from the listing cache, else
        one ranged read of the trailer, its key through the service key; then cached."""
        stored, ref = opened.stored, opened.ref
        hit = self.listing.get(ref.bucket, ref.key, stored.info.etag)
        if hit is not None:
            return replace(stored, etag=hit[1])
        values = await self.trailer(opened)
        if values.md5 is None:
            raise IntegrityError("trailer")
        self.listing.put(ref.bucket, ref.key, stored.info.etag, stored.size, values.md5)
        return replace(stored, etag=values.md5)

    async def trailer(self, opened: Opened) -> TrailerValues:
        """The values of the object's trailer: one ranged read of its TRAILER_SIZE bytes, opened with
        the data key (kept on `opened`)."""
        if opened.trailer is None:
            stored, ref = opened.stored, opened.ref
            envelope = Catalog.envelope(stored, await self.data_key(opened))
            where = envelope.trailer_range
            if where is None:
                raise IntegrityError("trailer")
            got = await self.backend.get_object(ref.bucket, ref.key, where, stored.info.version_id)
            raw = bytearray()
            try:
                if got.info.etag != stored.info.etag:  # replaced meanwhile: never mix two objects
                    raise errors.PreconditionFailed("The object was replaced while it was being read; retry the request.")
                async for piece in got.body:
                    raw += piece
            finally:
                await _close(got.body)
            opened.trailer = open_trailer(await self.data_key(opened), raw, envelope.trailer)
        return opened.trailer

    async def data_key(self, opened: Opened) -> bytes:
        """The object's data key (recovered through its mode, once)."""
        if opened.data_key is None:
            if opened.mode is None:
                Catalog.require_encrypted(opened.stored)
                raise errors.InvalidObjectState()
            opened.data_key = await unseal(opened.mode, opened.ref, opened.stored)
        return opened.data_key

    async def with_checksums(self, opened: Opened) -> ObjectView:
        """The view with its flexible checksums (ChecksumMode ENABLED), which needs the data key."""
        if opened.mode is None:
            return opened.view
        key = await self.data_key(opened)
        flags = Catalog.envelope(opened.stored, key).trailer
        trailer = await self.trailer(opened) if flags & TRAILER_CHECKSUM else None
        headers = Catalog.checksum_headers(opened.stored, key, trailer)
        return replace(opened.view, headers={**opened.view.headers, **headers})

    @staticmethod
    def _trailer_check(key: bytes, envelope: fmt.Envelope) -> Callable[[bytes], object] | None:
        """What a whole read checks after the last chunk: the trailer, if the object has one."""
        flags = envelope.trailer
        return (lambda raw: open_trailer(key, raw, flags)) if flags else None

    async def read(
        self, opened: Opened, *, byte_range: ByteRange | None = None, part_number: int | None = None,
        checksums: bool = False,
    ) -> Download:
        """The plaintext of an opened object: whole, `byte_range`, or part `part_number`."""
        try:
            key = await self.data_key(opened)
            stored = opened.stored
            envelope = Catalog.envelope(stored, key)
            view = await self.with_checksums(opened) if checksums else opened.view
            if byte_range is None and part_number is None:
                body = opened.body if opened.window is None else None
                if body is not None:
                    opened.body = None  # the Download owns it now
                else:
                    await opened.close()
                    body = (await self.backend.get_object(opened.ref.bucket, opened.ref.key, None, stored.info.version_id)).body
                plain = decrypt_range(body, key, envelope.plan_all(), batch_size=BATCH,
                                      trailer=self._trailer_check(key, envelope))
                return Download(view, plain, None)
            parts_count = None
            if part_number is not None:
                first, last, parts_count = part_span(stored, part_number)
            else:
                assert byte_range is not None
                first, last = byte_range.resolve(view.size)
            plan = envelope.plan(first, last)
            window, source = opened.window, opened.body
            if source is not None and window is not None and window[0] <= plan.ciphertext_start \
                    and plan.ciphertext_end <= window[1]:  # the bytes came with the metadata: the same object
                opened.body = None  # the Download owns it now
                source = _within(source, plan.ciphertext_start - window[0], plan.ciphertext_length)
            else:
                await opened.close()
                got = await self.backend.get_object(
                    opened.ref.bucket, opened.ref.key, (plan.ciphertext_start, plan.ciphertext_end), stored.info.version_id
                )
                if got.info.etag != stored.info.etag:  # replaced between HEAD and GET: never mix two objects
                    await _close(got.body)
                    raise errors.PreconditionFailed("The object was replaced while it was being read; retry the request.")
                source = got.body
            return Download(view, decrypt_range(source, key, plan, batch_size=BATCH), (first, last), parts_count)
        except BaseException:
            await opened.close()
            raise

    async def parts(self, opened: Opened) -> tuple[Part, ...] | None:
        """A multipart object's parts (plaintext sizes, and the flexible checksums each was uploaded
        with, kept sealed under the data key), for GetObjectAttributes; None for a single-part object."""
        stored = opened.stored
        if opened.mode is None or not stored.fields.get(fmt.KEY_PARTS) or KEY_MPU not in stored.fields:
            return None
        record = await self.catalog.records.get(record_name(stored.fields[KEY_MPU]), SHARED, immutable=True)
        value = record.value if record is not None else {}
        sealed: dict[str, str] = value.get("checksums", {}) if isinstance(value, dict) else {}
        key = await self.data_key(opened) if sealed else b""
        return tuple(
            Part(number, size, open_checksums(key, sealed.get(str(number))) if sealed else {})
            for number, size in fmt.decode_parts(stored.fields[fmt.KEY_PARTS])
        )

    async def _plaintext_md5(self, opened: Opened) -> str:
        """MD5 of an object's plaintext, read and decrypted once (a copy into SSE-S3 from a source
        whose ETag is not already that MD5, the upgrade of one whose ETag was never recorded)."""
        md5 = hashlib.md5()
        stored, key = opened.stored, await self.data_key(opened)
        envelope = Catalog.envelope(stored, key)
        got = await self.backend.get_object(opened.ref.bucket, opened.ref.key, None, stored.info.version_id)
        if got.info.etag != stored.info.etag:
            await _close(got.body)
            raise errors.PreconditionFailed("The object changed while it was being read; retry the request.")
        async for piece in decrypt_range(got.body, key, envelope.plan_all(), trailer=self._trailer_check(key, envelope)):
            if len(piece) >= 1 << 20:  # hashlib releases the GIL for large buffers
                await asyncio.to_thread(md5.update, piece)
            else:
                md5.update(piece)
        return md5.hexdigest()

    # copies and re-wraps: the data stays, the metadata is sealed again for its (new) name --------------
    async def _data_fields(self, opened: Opened, envelope: fmt.Envelope) -> dict[str, str]:
        """The version-2 envelope fields that describe the data itself and stay with it through a
        copy or a re-wrap: format fields, trailer flags, sealed checksums, multipart id. A version-1
        source is upgraded on the way (FORMAT.md §19.2): its envelope MAC recomputed for version 2
        and, if multipart, a new sealed record `parts/<new id>`."""
        stored, key = opened.stored, await self.data_key(opened)
        kept = {k: v for k, v in stored.fields.items() if k in (fmt.KEY_TRAILER, KEY_CHECKSUMS, KEY_MPU)}
        if stored.version == fmt.VERSION_2:
            own = (fmt.KEY_VERSION, fmt.KEY_CHUNK_SIZE) if KEY_MPU in stored.fields else fmt.FORMAT_KEYS
            kept.update({k: v for k, v in stored.fields.items() if k in own and k != fmt.KEY_PARTS})
            return kept
        upgraded = fmt.seal_envelope(replace(envelope, version=fmt.VERSION_2), key)
        if KEY_MPU not in stored.fields:
            return {**kept, **upgraded}
        mpu = self.rand(16).hex()
        await self.catalog.records.put(record_name(mpu), SHARED, {
            "size": upgraded[fmt.KEY_SIZE], "parts": upgraded[fmt.KEY_PARTS], "mac": upgraded[fmt.KEY_MAC],
            "etag": stored.client_etag,
        })
        return {**kept, fmt.KEY_VERSION: upgraded[fmt.KEY_VERSION], fmt.KEY_CHUNK_SIZE: upgraded[fmt.KEY_CHUNK_SIZE],
                KEY_MPU: mpu}

    def _etag_fields(self, ref: ObjectRef, stored: Stored) -> dict[str, str]:
        """Where a re-wrapped object keeps its (unchanged) ETag: sealed if it is an MD5 of the
        plaintext (whatever the mode now), in the record if it came from there, else in clear."""
        etag = stored.client_etag
        if stored.md5_etag:
            return {KEY_SEALED_ETAG: seal_etag(self.catalog.keys.meta, ref.arn, etag, self.rand)}
        if KEY_MPU in stored.fields and KEY_ETAG not in stored.fields and KEY_SEALED_ETAG not in stored.fields:
            return {}  # the multipart record holds it
        return {KEY_ETAG: etag}

    async def copy(
        self, src: Opened, dst: ObjectRef, modes: ModeResolver, *, meta: ObjectMeta | None, tagging: str | None,
        precondition: Precondition | None = None,
    ) -> Written:
        """Server-side copy of an opened source (open(..., copy_source=True, plaintext=True)): its data
        key re-wrapped for the target, no data re-encrypted, the metadata sealed for the new name.
        `meta` None keeps the source's metadata (COPY); `tagging` None keeps its tags. A source that
        predates the proxy is encrypted on the way. `precondition` is on the target (a conditional write)."""
        if src.mode is None:
            return await self._encrypt_copy(src, dst, modes, meta=meta, tagging=tagging, precondition=precondition)
        stored, info = src.stored, src.stored.info
        key = await self.data_key(src)
        envelope = Catalog.envelope(stored, key)  # the source must be whole before it is copied
        condition = await self.conditions.condition("copy", dst, precondition)
        dst_mode = await self.mode_for_write(dst.bucket, modes)
        sealed = await dst_mode.seal(dst, key)
        fields = await self._data_fields(src, envelope)
        if dst_mode.name != "AES256":
            etag = fields[KEY_ETAG] = self.rand(16).hex()
        else:  # S3: a copy under SSE-S3 has the MD5 of its content as ETag
            etag = stored.client_etag if stored.md5_etag else await self._plaintext_md5(src)
            fields[KEY_SEALED_ETAG] = seal_etag(self.catalog.keys.meta, dst.arn, etag, self.rand)
        fields.update(sealed.fields)
        user = stored.user if meta is None else meta.metadata
        base = replace(info.meta, tagging=tagging) if meta is None else replace(meta, tagging=tagging)
        stored_meta = self.catalog.sealed_meta(dst.bucket, dst.key, replace(base, metadata=user), fields)
        result = await self.conditions.written(precondition, self.backend.copy_object(
            src.ref.bucket, src.ref.key, dst.bucket, dst.key, stored_meta, info.version_id, condition))
        self.listing.put(dst.bucket, dst.key, result.etag, stored.size, etag)
        return Written(etag, result.version_id, self._now(), dst_mode.response_headers(sealed.fields, on_write=True))

    async def _encrypt_copy(
        self, src: Opened, dst: ObjectRef, modes: ModeResolver, *, meta: ObjectMeta | None, tagging: str | None,
        precondition: Precondition | None,
    ) -> Written:
        """Copy from an object that predates the proxy (plaintext in the backend): stream it through
        the format under the target mode, one backend write. In place, this is how existing data
        gets encrypted."""
        stored = src.stored
        condition = await self.conditions.condition("put", dst, precondition)
        mode = await self.mode_for_write(dst.bucket, modes)
        sealed = await mode.seal(dst)
        size, sse_s3 = stored.size, mode.name == "AES256"
        got = await self.backend.get_object(src.ref.bucket, src.ref.key, None, stored.info.version_id)
        if got.info.etag != stored.info.etag:
            await _close(got.body)
            raise errors.PreconditionFailed("The source object changed while it was being copied; retry the request.")
        md5 = hashlib.md5()

        async def tapped() -> Body:
            async for piece in got.body:
                md5.update(piece)
                yield piece

        if tagging is None and self.backend.capabilities.tagging:  # a write does not carry tags over by itself
            tags = await self.backend.get_object_tagging(src.ref.bucket, src.ref.key, stored.info.version_id)
            tagging = urllib.parse.urlencode(tags)
        user = stored.user if meta is None else meta.metadata
        base = replace(stored.info.meta, tagging=tagging) if meta is None else replace(meta, tagging=tagging)
        target = replace(base, metadata=user)
        if sse_s3 and size <= self.small_body:  # read first: the MD5 is known before the one write
            data = bytearray()
            async for piece in tapped():
                data += piece
            result, etag = await self._write(dst, sealed, sse_s3, target, _one(bytes(data)), size, md5=md5.hexdigest(),
                                             checksums={}, precondition=precondition, condition=condition)
        else:
            late = Late(md5=md5.hexdigest) if sse_s3 else Late()
            result, etag = await self._write(dst, sealed, sse_s3, target, tapped(), size, md5=None, checksums={}, late=late,
                                             precondition=precondition, condition=condition)
        return Written(etag, result.version_id, self._now(), mode.response_headers(sealed.fields, on_write=True))

    async def rewrap(
        self, ref: ObjectRef, modes: ModeResolver, target: EncryptionMode | None = None, *, expect_etag: str | None = None
    ) -> Written:
        """Re-wrap the latest version's data key under `target` (None: its own mode, newest key
        material), metadata only: data, ETag, checksums and size unchanged, the metadata sealed again
        (a version-1 object comes out as version 2: the upgrade, FORMAT.md §19.2). UpdateObjectEncryption
        and `s3proxy rewrap` both come here. `expect_etag` (backend ETag) guards a concurrent writer."""
        info = await self.backend.head_object(ref.bucket, ref.key)
        if expect_etag is not None and info.etag != expect_etag:
            raise errors.PreconditionFailed("The object changed since it was listed.")
        stored = await self.catalog.stored(ref.bucket, info)
        if not stored.encrypted:
            raise errors.InvalidRequest("The object is not encrypted; UpdateObjectEncryption needs an encrypted source object.")
        current = modes.for_stored(stored.fields)
        if current.name == "SSE-C":
            raise errors.InvalidRequest("UpdateObjectEncryption is not supported for objects encrypted with SSE-C.")
        if target is not None and target.name == "AES256" and current.name != "AES256":
            raise errors.InvalidRequest("An object encrypted with SSE-KMS cannot be changed to SSE-S3.")
        opened = Opened(ref, stored, self.catalog.view(replace(stored, etag=""), current), current)
        envelope = Catalog.envelope(stored, await self.data_key(opened))  # only a whole, authentic object is re-wrapped
        if stored.etag is None:
            opened.stored = stored = await self._etag_from_trailer(opened)
        elif stored.version == fmt.VERSION_1 and current.name == "AES256" and not {KEY_ETAG, KEY_MPU} & set(stored.fields):
            md5 = await self._plaintext_md5(opened)  # its MD5 was never recorded (§19.2): one whole, authenticated read
            opened.stored = stored = replace(stored, etag=md5, md5_etag=True)
        sealed = await (target or current).seal(ref, await self.data_key(opened))
        fields = {**await self._data_fields(opened, envelope), **self._etag_fields(ref, stored), **sealed.fields}
        meta = replace(info.meta, metadata=stored.user, tagging=None)
        stored_meta = self.catalog.sealed_meta(ref.bucket, ref.key, meta, fields)
        result = await self.backend.replace_metadata(ref.bucket, ref.key, stored_meta, info.etag)
        self.listing.put(ref.bucket, ref.key, result.etag, stored.size, stored.client_etag)
        return Written(stored.client_etag, result.version_id, self._now(),
                       (target or current).response_headers(sealed.fields, on_write=False))

    async def delete_object(self, ref: ObjectRef, version_id: str | None = None) -> DeleteResult:
        return await self.backend.delete_object(ref.bucket, ref.key, version_id)

    # tags: the backend's own, passed through (they are not part of the encrypted object) ---------------------
    def _require_tagging(self) -> None:
        if not self.backend.capabilities.tagging:
            raise errors.NotImplemented("Object tagging is not supported by this backend")

    async def tags(self, ref: ObjectRef, version_id: str | None) -> list[tuple[str, str]]:
        self._require_tagging()
        return list(await self.backend.get_object_tagging(ref.bucket, ref.key, version_id))

    async def put_tags(self, ref: ObjectRef, tags: list[tuple[str, str]], version_id: str | None) -> None:
        self._require_tagging()
        await self.backend.put_object_tagging(ref.bucket, ref.key, tags, version_id)

    async def delete_tags(self, ref: ObjectRef, version_id: str | None) -> None:
        self._require_tagging()
        await self.backend.delete_object_tagging(ref.bucket, ref.key, version_id)

    # listings ---------------------------------------------------------------------------------------
    async def _listed(self, bucket: str, info: ObjectInfo) -> ObjectView:
        if info.delete_marker:
            return self.catalog.view(Stored(info, {}, {}, 0, info.etag), None)
        if not info.meta.metadata:
            hit = self.listing.get(bucket, info.key, info.etag)
            if hit is not None:
                return replace(self.catalog.view(Stored(info, {}, {}, hit[0], hit[1]), None), meta=ObjectMeta())
            try:
                info = replace(await self.backend.head_object(bucket, info.key, info.version_id), is_latest=info.is_latest)
            except (errors.NoSuchKey, errors.NoSuchVersion):
                return self.catalog.view(Stored(info, {}, {}, info.size, info.etag), None)
        stored = await self.catalog.stored(bucket, info)
        if stored.etag is None:  # an SSE-S3 ETag in the trailer: read through the service key, once
            ref = ObjectRef(bucket, info.key)
            opened = Opened(ref, stored, self.catalog.view(replace(stored, etag=""), None), SseS3(self.kms))
            stored = await self._etag_from_trailer(opened)
        self.listing.put(bucket, info.key, info.etag, stored.size, stored.client_etag)
        return replace(self.catalog.view(stored, None), meta=ObjectMeta())

    async def _listed_all(self, bucket: str, infos: Sequence[ObjectInfo]) -> list[ObjectView]:
        limit = asyncio.Semaphore(32)

        async def one(info: ObjectInfo) -> ObjectView:
            async with limit:
                return await self._listed(bucket, info)

        return list(await asyncio.gather(*(one(i) for i in infos)))

    async def list_objects(
        self, bucket: str, *, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> tuple[list[ObjectView], ListResult]:
        result = await self.backend.list_objects(bucket, prefix, delimiter, after, max_keys)
        return await self._listed_all(bucket, result.objects), result

    async def list_object_versions(self, bucket: str, **kwargs: Any) -> tuple[list[ObjectView], VersionListResult]:
        result = await self.backend.list_object_versions(bucket, **kwargs)
        return await self._listed_all(bucket, result.versions), result
