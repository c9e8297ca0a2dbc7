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
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Callable, Sequence

from .. import errors
from ..auth.body import RequestBody
from ..backends.base import Backend, DeleteResult, ListResult, ObjectInfo, ObjectMeta, VersionListResult, WriteCondition
from ..buffers import Body
from ..format import envelope as fmt
from ..format.chunks import DEFAULT_CHUNK_SIZE
from ..format.envelope import KEY_CHECKSUMS, KEY_ETAG, KEY_MPU
from ..format.errors import IntegrityError
from ..format.ranges import ByteRange
from ..format.sizes import ciphertext_size
from ..modes.base import EncryptionMode, ObjectRef
from ..modes.resolve import COPY_SOURCE_SSEC, NOT_APPLICABLE, ModeResolver
from ..streams import BATCH, decrypt_range, encrypt_stream
from .buckets import Buckets
from .catalog import Catalog
from .conditions import ConditionalWrites, Precondition
from .views import (
    SMALL_BODY,
    Part,
    Download,
    ListingCache,
    ObjectView,
    Stored,
    Written,
    _close,
    _one,
    current_mode_md5,
    open_checksums,
    seal_checksums,
    to_backend_metadata,
)

log = logging.getLogger("s3proxy.store")


def data_fields(stored: Stored) -> dict[str, str]:
    """The envelope fields that describe the data itself (format, sealed checksums, multipart id),
    which stay with it through a copy or a re-wrap; a multipart object's part list stays in its record."""
    kept = {k: v for k, v in stored.fields.items() if k in fmt.FORMAT_KEYS or k in (KEY_CHECKSUMS, KEY_MPU)}
    if KEY_MPU in kept:
        kept = {k: v for k, v in kept.items() if k not in (fmt.KEY_SIZE, fmt.KEY_PARTS, fmt.KEY_MAC)}
    return kept


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


@dataclass
class Opened:
    """A stored object found and its mode resolved, before any plaintext is read (ObjectStore.open)."""

    ref: ObjectRef
    stored: Stored
    view: ObjectView
    mode: EncryptionMode | None  # None: a delete marker, or an object that predates the proxy (plaintext)
    data_key: bytes | None = field(default=None, repr=False)  # recovered already: an SSE-C key was checked
    body: Body | None = None  # a whole-object GET's backend body, fetched with the metadata

    async def close(self) -> None:
        """Release what `read` did not take (the backend body of a whole-object GET)."""
        if self.body is not None:
            body, self.body = self.body, None
            await _close(body)


class ObjectStore:
    def __init__(
        self,
        backend: Backend,
        catalog: Catalog,
        buckets: Buckets,
        conditions: ConditionalWrites,
        *,
        clock: Callable[[], float],
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        rand: Callable[[int], bytes] = os.urandom,
        small_body: int = SMALL_BODY,
        listing: ListingCache | None = None,
    ) -> None:
        self.backend = backend
        self.catalog = catalog
        self.buckets = buckets
        self.conditions = conditions
        self.clock = clock
        self.chunk_size = chunk_size
        self.rand = rand
        self.small_body = small_body
        self.listing = listing or ListingCache()

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc)

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

    async def put_object(
        self, ref: ObjectRef, body: RequestBody, mode: EncryptionMode, meta: ObjectMeta, *, declared_md5: str | None = None,
        precondition: Precondition | None = None, condition: WriteCondition | None = None,
    ) -> Written:
        """Store the verified request `body` (opened with want_md5 = md5_wanted(mode, declared_md5))
        under `mode`; `declared_md5` is the Content-MD5 as hex. A conditional write carries the
        client's `precondition` and the backend's `condition` for it (from `condition`), which the
        backend decides together with the write."""
        want_md5 = self.md5_wanted(mode, declared_md5)
        size = body.require_length()
        sealed = await mode.seal(ref)
        key, fields = sealed.data_key, dict(sealed.fields)
        fields.update(fmt.seal_envelope(fmt.Envelope.single(size, self.chunk_size), key))
        if mode.name != "AES256":  # S3: not an MD5 under SSE-KMS and SSE-C; never anything from ciphertext
            fields[KEY_ETAG] = self.rand(16).hex()
        elif declared_md5:
            fields[KEY_ETAG] = declared_md5
        small = size <= self.small_body
        source: Any = body
        if small:  # read first: one backend request with a complete envelope
            data = bytearray()
            async for piece in body:
                data += piece
            self._late_fields(fields, body, key, want_md5)
            source = _one(bytes(data))
        stored_meta = replace(meta, metadata=to_backend_metadata(meta.metadata, fields))
        stream = encrypt_stream(source, key, chunk_size=self.chunk_size, batch_size=BATCH)
        result = await self.conditions.written(precondition, self.backend.put_object(
            ref.bucket, ref.key, stream, ciphertext_size(size, self.chunk_size), stored_meta, condition))
        if not small:
            late = self._late_fields({}, body, key, want_md5)
            if late:
                fields.update(late)
                await self._record_late(ref, meta, fields, result.etag)
        etag = fields.get(KEY_ETAG, result.etag)
        self.listing.put(ref.bucket, ref.key, result.etag, size, etag)
        headers = dict(mode.response_headers(sealed.fields, on_write=True))
        headers.update({f"x-amz-checksum-{k}": v for k, v in body.checksums.items()})
        return Written(etag, result.version_id, self._now(), headers)

    def _late_fields(self, fields: dict[str, str], body: RequestBody, key: bytes, want_md5: bool) -> dict[str, str]:
        """Envelope fields known only once the body was read: the MD5 ETag and the sealed checksums."""
        if want_md5 and body.md5_hex:
            fields[KEY_ETAG] = body.md5_hex
        if body.checksums:
            fields[KEY_CHECKSUMS] = seal_checksums(key, body.checksums, self.rand)
        return fields

    async def _record_late(self, ref: ObjectRef, meta: ObjectMeta, fields: dict[str, str], backend_etag: str) -> None:
        stored_meta = replace(meta, metadata=to_backend_metadata(meta.metadata, fields), tagging=None)
        try:
            await self.backend.replace_metadata(ref.bucket, ref.key, stored_meta, backend_etag)
        except errors.S3Error as exc:  # overwritten meanwhile, or too large for the backend's copy
            log.warning("could not record ETag/checksums of %s/%s after upload: %s", ref.bucket, ref.key, exc.code)

    async def exists(self, ref: ObjectRef) -> bool:
        try:
            await self.backend.head_object(ref.bucket, ref.key)
        except errors.NoSuchKey:
            return False
        return True

    # reads ---------------------------------------------------------------------------------------------
    async def open(
        self, ref: ObjectRef, modes: ModeResolver, *, version_id: str | None = None, whole: bool = False,
        copy_source: bool = False, plaintext: bool = False,
    ) -> Opened:
        """Find the object and resolve its mode; an SSE-C object's key is checked here, first.

        `whole`: the caller will read all of it, so the backend GET that brings the metadata also
        brings the body (one request); else a HEAD. `copy_source`: the object is a copy's source
        (x-amz-copy-source-server-side-encryption-customer-* headers). `plaintext`: an object that
        predates the proxy is opened (no mode) instead of refused with InvalidObjectState."""
        if not copy_source:
            modes.reject_sse_header()
        body: Body | None = None
        if whole:
            got = await self.backend.get_object(ref.bucket, ref.key, None, version_id)
            info, body = got.info, got.body
        else:
            info = await self.backend.head_object(ref.bucket, ref.key, version_id)
        try:
            stored = await self.catalog.stored(info)
            if info.delete_marker:
                return Opened(ref, stored, self.catalog.view(stored, None), None, body=body)
            if not stored.encrypted:
                if not plaintext:
                    Catalog.require_encrypted(stored)
                if copy_source and modes.customer_key(COPY_SOURCE_SSEC) is not None:
                    raise errors.InvalidRequest(NOT_APPLICABLE)
                return Opened(ref, stored, self.catalog.view(stored, None), None, body=body)
            mode = modes.for_stored(stored.fields, copy_source=copy_source)
            key = await mode.unseal(ref, stored.fields) if mode.name == "SSE-C" else None
            return Opened(ref, stored, self.catalog.view(stored, mode), mode, key, body)
        except BaseException:
            if body is not None:
                await _close(body)
            raise

    async def data_key(self, opened: Opened) -> bytes:
        """The object's data key (recovered through its mode, once)."""
        if opened.data_key is None:
            if opened.mode is None:
                Catalog.require_encrypted(opened.stored)
                raise errors.InvalidObjectState()
            opened.data_key = await opened.mode.unseal(opened.ref, opened.stored.fields)
        return opened.data_key

    async def with_checksums(self, opened: Opened) -> ObjectView:
        """The view with its flexible checksums (ChecksumMode ENABLED), which needs the data key."""
        if opened.mode is None:
            return opened.view
        headers = Catalog.checksum_headers(opened.stored, await self.data_key(opened))
        return replace(opened.view, headers={**opened.view.headers, **headers})

    async def read(
        self, opened: Opened, *, byte_range: ByteRange | None = None, part_number: int | None = None,
        checksums: bool = False,
    ) -> Download:
        """The plaintext of an opened object: whole, `byte_range`, or part `part_number`."""
        try:
            key = await self.data_key(opened)
            stored = opened.stored
            envelope = Catalog.envelope(stored, key)
            if stored.info.size != envelope.ciphertext_size:  # bytes appended or cut at rest: refuse before any byte
                raise IntegrityError()
            view = await self.with_checksums(opened) if checksums else opened.view
            if byte_range is None and part_number is None:
                body = opened.body
                opened.body = None  # the Download owns it now
                if body is None:
                    body = (await self.backend.get_object(opened.ref.bucket, opened.ref.key, None, stored.info.version_id)).body
                return Download(view, decrypt_range(body, key, envelope.plan_all(), batch_size=BATCH), None)
            await opened.close()
            parts_count = None
            if part_number is not None:
                first, last, parts_count = part_span(stored, part_number)
            else:
                assert byte_range is not None
                first, last = byte_range.resolve(view.size)
            plan = envelope.plan(first, last)
            got = await self.backend.get_object(
                opened.ref.bucket, opened.ref.key, (plan.ciphertext_start, plan.ciphertext_end), stored.info.version_id
            )
            if got.info.etag != stored.info.etag:  # replaced between HEAD and GET: never mix two objects
                await _close(got.body)
                raise errors.PreconditionFailed("The object was replaced while it was being read; retry the request.")
            return Download(view, decrypt_range(got.body, key, plan, batch_size=BATCH), (first, last), parts_count)
        except BaseException:
            await opened.close()
            raise

    async def parts(self, opened: Opened) -> tuple[Part, ...] | None:
        """A multipart object's parts (plaintext sizes, and the flexible checksums each was uploaded
        with, kept sealed under the data key), for GetObjectAttributes; None for a single-part object."""
        stored = opened.stored
        if opened.mode is None or not stored.fields.get(fmt.KEY_PARTS) or KEY_MPU not in stored.fields:
            return None
        record = await self.catalog.records.get(f"parts/{stored.fields[KEY_MPU]}", immutable=True)
        sealed: dict[str, str] = record.get("checksums", {}) if isinstance(record, dict) else {}
        key = await self.data_key(opened) if sealed else b""
        return tuple(
            Part(number, size, open_checksums(key, sealed.get(str(number))) if sealed else {})
            for number, size in fmt.decode_parts(stored.fields[fmt.KEY_PARTS])
        )

    # copies and re-wraps ----------------------------------------------------------------------------------
    async def copy(
        self, src: Opened, dst: ObjectRef, modes: ModeResolver, *, meta: ObjectMeta | None, tagging: str | None,
        precondition: Precondition | None = None,
    ) -> Written:
        """Server-side copy of an opened source (open(..., copy_source=True, plaintext=True)): its data
        key re-wrapped for the target, no data re-encrypted. `meta` None keeps the source's metadata
        (COPY); `tagging` None keeps its tags; `precondition` is on the target (a conditional write).
        A source that predates the proxy is encrypted on the way."""
        if src.mode is None:
            return await self._encrypt_copy(src, dst, modes, meta=meta, tagging=tagging, precondition=precondition)
        stored, info = src.stored, src.stored.info
        key = await self.data_key(src)
        Catalog.envelope(stored, key)  # the source must be whole before it is copied
        condition = await self.conditions.condition("copy", dst, precondition)
        dst_mode = await self.mode_for_write(dst.bucket, modes)
        sealed = await dst_mode.seal(dst, key)
        fields = data_fields(stored)
        if dst_mode.name != "AES256":
            fields[KEY_ETAG] = self.rand(16).hex()
        elif current_mode_md5(stored):  # S3: a copy under SSE-S3 has the MD5 of its content as ETag
            fields[KEY_ETAG] = stored.fields[KEY_ETAG]
        else:
            fields[KEY_ETAG] = await self._plaintext_md5(src.ref, stored, key)
        fields.update(sealed.fields)
        user = stored.user if meta is None else meta.metadata
        base = replace(info.meta, tagging=tagging) if meta is None else replace(meta, tagging=tagging)
        stored_meta = replace(base, metadata=to_backend_metadata(user, fields))
        result = await self.conditions.written(precondition, self.backend.copy_object(
            src.ref.bucket, src.ref.key, dst.bucket, dst.key, stored_meta, info.version_id, condition))
        etag = fields.get(KEY_ETAG, result.etag)
        self.listing.put(dst.bucket, dst.key, result.etag, stored.size, etag)
        return Written(etag, result.version_id, self._now(), dst_mode.response_headers(sealed.fields, on_write=True))

    async def _plaintext_md5(self, ref: ObjectRef, stored: Stored, key: bytes) -> str:
        """MD5 of an object's plaintext, read and decrypted once (a copy into SSE-S3 from a source
        whose ETag is not already that MD5). Reads the data; writes nothing."""
        md5 = hashlib.md5()
        got = await self.backend.get_object(ref.bucket, ref.key, None, stored.info.version_id)
        async for piece in decrypt_range(got.body, key, Catalog.envelope(stored, key).plan_all()):
            if len(piece) >= 1 << 20:  # hashlib releases the GIL for large buffers
                await asyncio.to_thread(md5.update, piece)
            else:
                md5.update(piece)
        return md5.hexdigest()

    async def _encrypt_copy(
        self, src: Opened, dst: ObjectRef, modes: ModeResolver, *, meta: ObjectMeta | None, tagging: str | None,
        precondition: Precondition | None,
    ) -> Written:
        """Copy from an object that predates the proxy (plaintext in the backend): stream it through
        the format under the target mode. In place, this is how existing data gets encrypted."""
        stored = src.stored
        condition = await self.conditions.condition("put", dst, precondition)
        mode = await self.mode_for_write(dst.bucket, modes)
        sealed = await mode.seal(dst)
        key, size = sealed.data_key, stored.size
        fields = {**sealed.fields, **fmt.seal_envelope(fmt.Envelope.single(size, self.chunk_size), key)}
        got = await self.backend.get_object(src.ref.bucket, src.ref.key, None, stored.info.version_id)
        if got.info.etag != stored.info.etag:
            await _close(got.body)
            raise errors.PreconditionFailed("The source object changed while it was being copied; retry the request.")
        md5 = hashlib.md5() if mode.name == "AES256" else None

        async def tapped() -> AsyncIterator[bytes]:
            async for piece in got.body:
                if md5 is not None:
                    md5.update(piece)
                yield piece

        if tagging is None and self.backend.capabilities.tagging:  # a write does not carry tags over by itself
            tags = await self.backend.get_object_tagging(src.ref.bucket, src.ref.key, stored.info.version_id)
            tagging = urllib.parse.urlencode(tags)
        user = stored.user if meta is None else meta.metadata
        base = replace(stored.info.meta, tagging=tagging) if meta is None else replace(meta, tagging=tagging)
        stored_meta = replace(base, metadata=to_backend_metadata(user, fields))
        result = await self.conditions.written(precondition, self.backend.put_object(
            dst.bucket, dst.key, encrypt_stream(tapped(), key, chunk_size=self.chunk_size, batch_size=BATCH),
            ciphertext_size(size, self.chunk_size), stored_meta, condition,
        ))
        if md5 is not None:
            fields[KEY_ETAG] = md5.hexdigest()
            await self._record_late(dst, replace(base, metadata=user), fields, result.etag)
        etag = fields.get(KEY_ETAG, result.etag)
        self.listing.put(dst.bucket, dst.key, result.etag, size, etag)
        return Written(etag, result.version_id, self._now(), mode.response_headers(sealed.fields, on_write=True))

    async def rewrap(
        self, ref: ObjectRef, modes: ModeResolver, target: EncryptionMode | None = None, *, expect_etag: str | None = None
    ) -> Written:
        """Re-wrap the latest version's data key under `target` (None: its own mode, newest key
        material), metadata only: data, ETag, checksums and size unchanged. UpdateObjectEncryption
        and `s3proxy rewrap` both come here. `expect_etag` (backend ETag) guards a concurrent writer."""
        info = await self.backend.head_object(ref.bucket, ref.key)
        if expect_etag is not None and info.etag != expect_etag:
            raise errors.PreconditionFailed("The object changed since it was listed.")
        stored = await self.catalog.stored(info)
        if not stored.encrypted:
            raise errors.InvalidRequest("The object is not encrypted; UpdateObjectEncryption needs an encrypted source object.")
        current = modes.for_stored(stored.fields)
        if current.name == "SSE-C":
            raise errors.InvalidRequest("UpdateObjectEncryption is not supported for objects encrypted with SSE-C.")
        key = await current.unseal(ref, stored.fields)
        Catalog.envelope(stored, key)  # only a whole, authentic object is re-wrapped
        sealed = await (target or current).seal(ref, key)
        kept = data_fields(stored)
        fields = {**kept, **sealed.fields, KEY_ETAG: stored.etag}  # the client's ETag survives any backend copy
        stored_meta = replace(info.meta, metadata=to_backend_metadata(stored.user, fields), tagging=None)
        result = await self.backend.replace_metadata(ref.bucket, ref.key, stored_meta, info.etag)
        self.listing.put(ref.bucket, ref.key, result.etag, stored.size, stored.etag)
        return Written(stored.etag, result.version_id, self._now(), (target or current).response_headers(sealed.fields, on_write=False))

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
        stored = await self.catalog.stored(info)
        self.listing.put(bucket, info.key, info.etag, stored.size, stored.etag)
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
