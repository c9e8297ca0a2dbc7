"""ObjectStore: the client's view of objects (plaintext, plaintext sizes, client ETags) over a backend
that only ever holds ciphertext.

The S3 operations in `ops/` speak only to this layer. Every write resolves one encryption mode,
seals a data key with it and streams the body through the at-rest format (docs/FORMAT.md); every
read recovers the key through the stored mode, checks the envelope MAC and decrypts only the
chunks it needs. There is no plaintext path. Internal metadata keys start with `s3proxy-`; a
client's own key with that prefix is stored escaped under `s3proxy-user-`, so no client can
forge an envelope field.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import urllib.parse
from dataclasses import replace
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, Sequence, TypeVar

from .. import errors
from ..backends.base import Backend, ObjectInfo, ObjectMeta, WriteCondition
from ..format import envelope as fmt
from ..format.chunks import DEFAULT_CHUNK_SIZE
from ..format.envelope import KEY_CHECKSUMS, KEY_ETAG, KEY_MPU
from ..format.errors import IntegrityError
from ..format.sizes import ciphertext_size
from ..http.headers import ByteRange
from ..internal import InternalRecords
from ..modes.base import EncryptionMode, ObjectRef
from ..modes.resolve import (
    COPY_SOURCE_SSEC,
    NOT_APPLICABLE,
    BucketEncryption,
    ModeResolver,
)
from ..streams import BATCH, decrypt_range, encrypt_stream

log = logging.getLogger("s3proxy.store")
T = TypeVar("T")

from . import conditions
from .conditions import Precondition
from .multipart import MultipartUploads
from .views import (
    CSE_HEADER,
    SMALL_BODY,
    Download,
    ListingCache,
    ObjectView,
    Stored,
    Written,
    _close,
    _one,
    client_side_format,
    current_mode_md5,
    open_checksums,
    seal_checksums,
    split_backend_metadata,
    to_backend_metadata,
)


def data_fields(stored: Stored) -> dict[str, str]:
    """The envelope fields that describe the data itself (format, sealed checksums, multipart id),
    which stay with it through a copy or a re-wrap; a multipart object's part list stays in its record."""
    kept = {k: v for k, v in stored.fields.items() if k in fmt.FORMAT_KEYS or k in (KEY_CHECKSUMS, KEY_MPU)}
    if KEY_MPU in kept:
        kept = {k: v for k, v in kept.items() if k not in (fmt.KEY_SIZE, fmt.KEY_PARTS, fmt.KEY_MAC)}
    return kept


class ObjectStore(MultipartUploads):
    def __init__(
        self,
        backend: Backend,
        records: InternalRecords,
        *,
        clock: Callable[[], float],
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        rand: Callable[[int], bytes] = os.urandom,
        small_body: int = SMALL_BODY,
        listing: ListingCache | None = None,
    ) -> None:
        self.backend = backend
        self.records = records
        self.clock = clock
        self.chunk_size = chunk_size
        self.rand = rand
        self.small_body = small_body
        self.listing = listing or ListingCache()
        self.conditions = conditions.Enforcement(backend, records.bucket, records.ensure_bucket, rand)

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc)

    # bucket configuration ------------------------------------------------------------------------
    async def bucket_encryption(self, bucket: str) -> BucketEncryption | None:
        value = await self.records.get(f"bucket-encryption/{bucket}")
        if not value:
            return None
        return BucketEncryption(value["algorithm"], value.get("kms_key_id"), bool(value.get("bucket_key")), tuple(value.get("blocked", ())))

    async def put_bucket_encryption(self, bucket: str, config: BucketEncryption) -> None:
        await self.backend.head_bucket(bucket)
        await self.records.put(
            f"bucket-encryption/{bucket}",
            {"algorithm": config.algorithm, "kms_key_id": config.kms_key_id, "bucket_key": config.bucket_key, "blocked": list(config.blocked)},
        )

    async def delete_bucket_encryption(self, bucket: str) -> None:
        await self.backend.head_bucket(bucket)
        await self.records.delete(f"bucket-encryption/{bucket}")

    async def _default(self, bucket: str) -> BucketEncryption:
        return await self.bucket_encryption(bucket) or BucketEncryption()

    # reading envelopes ---------------------------------------------------------------------------
    async def stored(self, info: ObjectInfo) -> Stored:
        user, fields = split_backend_metadata(info.meta.metadata)
        if KEY_MPU in fields:
            record = await self.records.get(f"parts/{fields[KEY_MPU]}", immutable=True)
            if not isinstance(record, dict):
                raise IntegrityError()
            fields.update({fmt.KEY_SIZE: record["size"], fmt.KEY_PARTS: record["parts"], fmt.KEY_MAC: record["mac"]})
            if KEY_ETAG not in fields and record.get("etag"):  # a copy has its own ETag in its metadata
                fields[KEY_ETAG] = record["etag"]
        if fmt.KEY_VERSION not in fields:
            return Stored(info, fields, user, info.size, info.etag)
        try:
            size = int(fields.get(fmt.KEY_SIZE, ""))
        except ValueError:
            raise IntegrityError() from None
        return Stored(info, fields, user, size, fields.get(KEY_ETAG, info.etag))

    def view(self, stored: Stored, mode: EncryptionMode | None, *, extra: Mapping[str, str] | None = None) -> ObjectView:
        info = stored.info
        headers = dict(mode.response_headers(stored.fields, on_write=False)) if mode is not None else {}
        cse = client_side_format(stored.user)
        if cse is not None:
            headers[CSE_HEADER] = cse
        headers.update(extra or {})
        return ObjectView(
            key=info.key, size=stored.size, etag=stored.etag, last_modified=info.last_modified,
            meta=replace(info.meta, metadata=stored.user), version_id=info.version_id, storage_class=info.storage_class,
            delete_marker=info.delete_marker, is_latest=info.is_latest, headers=headers,
        )

    def _require_encrypted(self, stored: Stored) -> None:
        if not stored.encrypted:
            raise errors.InvalidObjectState(
                "This object was not written through s3proxy and is not encrypted; encrypt it in place before reading it."
            )

    def _envelope(self, stored: Stored, data_key: bytes) -> fmt.Envelope:
        return fmt.open_envelope(stored.fields, data_key)

    async def _checksum_headers(self, stored: Stored, data_key: bytes) -> dict[str, str]:
        sums = open_checksums(data_key, stored.fields.get(KEY_CHECKSUMS))
        out = {f"x-amz-checksum-{k}": v for k, v in sums.items() if k != "md5"}
        if out:
            out["x-amz-checksum-type"] = "FULL_OBJECT"
        return out

    # conditional writes ---------------------------------------------------------------------------
    async def _condition(self, operation: str, ref: ObjectRef, pre: Precondition | None) -> WriteCondition | None:
        """The backend's own condition for the client's `pre` on `ref`'s current object (see conditions)."""
        if pre is None:
            return None
        await self.conditions.require(operation, pre)
        try:
            current: ObjectInfo | None = await self.backend.head_object(ref.bucket, ref.key)
        except errors.NoSuchKey:
            current = None
        if current is not None and current.delete_marker:
            current = None
        return await conditions.resolve(pre, current, self._client_etag, ref.key)

    async def _client_etag(self, info: ObjectInfo) -> str:
        return (await self.stored(info)).etag

    async def _written(self, pre: Precondition | None, write: Awaitable[T]) -> T:
        """`write`, with a backend's refusal of its condition answered as S3 answers it."""
        try:
            return await write
        except errors.S3Error as exc:
            refused = conditions.refusal(pre, exc) if pre is not None else None
            if refused is None:
                raise
            raise refused from None

    # single objects -------------------------------------------------------------------------------
    async def put_object(
        self, ref: ObjectRef, open_body: Callable[..., Any], meta: ObjectMeta, keys: ModeResolver, *, declared_md5: str | None = None,
        precondition: Precondition | None = None,
    ) -> Written:
        """`open_body(want_md5=...)` opens the verified request body; `declared_md5` is a Content-MD5
        (hex) the body will be checked against, which spares computing it for an SSE-S3 ETag.
        `precondition`: a conditional write, decided by the backend with the write itself."""
        condition = await self._condition("put", ref, precondition)
        mode = keys.for_write(await self._default(ref.bucket))
        want_md5 = mode.name == "AES256" and declared_md5 is None
        body = open_body(want_md5=want_md5)
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
        result = await self._written(precondition, self.backend.put_object(
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

    def _late_fields(self, fields: dict[str, str], body: Any, key: bytes, want_md5: bool) -> dict[str, str]:
        """Envelope fields known only once the body was read: the MD5 ETag and the sealed checksums."""
        if want_md5 and body.md5_hex:
            fields[KEY_ETAG] = body.md5_hex
        if body.checksums:
            fields[KEY_CHECKSUMS] = seal_checksums(key, body.checksums, self.rand)
        return fields

    async def _record_late(self, ref: ObjectRef, meta: ObjectMeta, fields: Mapping[str, str], backend_etag: str) -> None:
        stored_meta = replace(meta, metadata=to_backend_metadata(meta.metadata, fields), tagging=None)
        try:
            await self.backend.replace_metadata(ref.bucket, ref.key, stored_meta, backend_etag)
        except errors.S3Error as exc:  # overwritten meanwhile, or too large for the backend's copy
            log.warning("could not record ETag/checksums of %s/%s after upload: %s", ref.bucket, ref.key, exc.code)

    async def head_object(self, ref: ObjectRef, version_id: str | None, keys: ModeResolver, *, checksums: bool = False) -> ObjectView:
        keys.reject_sse_header()
        stored = await self.stored(await self.backend.head_object(ref.bucket, ref.key, version_id))
        if stored.info.delete_marker or not stored.encrypted:  # a plaintext object shows no SSE headers
            return self.view(stored, None)
        mode = keys.for_stored(stored.fields)
        extra: dict[str, str] = {}
        if mode.name == "SSE-C" or checksums:
            key = await mode.unseal(ref, stored.fields)  # SSE-C: HEAD needs the right key, as in S3
            if checksums:
                extra = await self._checksum_headers(stored, key)
        return self.view(stored, mode, extra=extra)

    async def part_range(self, ref: ObjectRef, version_id: str | None, part_number: int) -> tuple[int, int, int | None]:
        """(first, last, parts count) of part `part_number`, for GET/HEAD ?partNumber: S3's "ranged GET
        of the part". A single-part object has only part 1 (the whole object, no parts count)."""
        stored = await self.stored(await self.backend.head_object(ref.bucket, ref.key, version_id))
        self._require_encrypted(stored)
        parts = fmt.decode_parts(stored.fields[fmt.KEY_PARTS]) if fmt.KEY_PARTS in stored.fields else ((1, stored.size),)
        offset = 0
        for number, size in parts:
            if number == part_number and size:
                return offset, offset + size - 1, len(parts) if fmt.KEY_PARTS in stored.fields else None
            offset += size
        raise errors.InvalidPartNumber(PartNumberRequested=str(part_number), ActualPartCount=str(len(parts)))

    async def get_object(
        self,
        ref: ObjectRef,
        keys: ModeResolver,
        *,
        version_id: str | None = None,
        byte_range: ByteRange | None = None,
        check: Callable[[ObjectView], None] = lambda view: None,
        checksums: bool = False,
    ) -> Download:
        keys.reject_sse_header()
        if byte_range is None:
            got = await self.backend.get_object(ref.bucket, ref.key, None, version_id)
            try:
                stored = await self.stored(got.info)
                view, key, envelope = await self._open(ref, stored, keys, check, checksums)
                return Download(view, decrypt_range(got.body, key, envelope.plan_all(), batch_size=BATCH), None)
            except BaseException:
                await _close(got.body)
                raise
        stored = await self.stored(await self.backend.head_object(ref.bucket, ref.key, version_id))
        view, key, envelope = await self._open(ref, stored, keys, check, False)
        first, last = byte_range.resolve(view.size)
        plan = envelope.plan(first, last)
        got = await self.backend.get_object(
            ref.bucket, ref.key, (plan.ciphertext_start, plan.ciphertext_end), version_id or stored.info.version_id
        )
        if got.info.etag != stored.info.etag:  # replaced between HEAD and GET: never mix two objects
            await _close(got.body)
            raise errors.PreconditionFailed("The object was replaced while it was being read; retry the request.")
        return Download(view, decrypt_range(got.body, key, plan, batch_size=BATCH), (first, last))

    async def _open(self, ref, stored: Stored, keys: ModeResolver, check, checksums: bool):
        if stored.info.delete_marker:
            check(self.view(stored, None))
        self._require_encrypted(stored)
        mode = keys.for_stored(stored.fields)
        check(self.view(stored, mode))
        key = await mode.unseal(ref, stored.fields)
        envelope = self._envelope(stored, key)
        if stored.info.size != envelope.ciphertext_size:  # bytes appended or cut at rest: refuse before any byte
            raise IntegrityError()
        extra = await self._checksum_headers(stored, key) if checksums else {}
        return self.view(stored, mode, extra=extra), key, envelope

    async def copy_object(
        self,
        src: ObjectRef,
        dst: ObjectRef,
        keys: ModeResolver,
        *,
        src_version_id: str | None,
        meta: ObjectMeta | None,
        tagging: str | None,
        check: Callable[[ObjectView], None],
        precondition: Precondition | None = None,
    ) -> tuple[ObjectView, Written]:
        """Server-side copy that re-wraps the source's data key for the target: no data re-encrypted.
        `meta` None keeps the source's metadata (COPY); `tagging` None keeps its tags; `precondition`
        is on the target (a conditional write)."""
        info = await self.backend.head_object(src.bucket, src.key, src_version_id)
        stored = await self.stored(info)
        if info.delete_marker:
            raise errors.NoSuchKey()
        if not stored.encrypted:
            return await self._encrypt_copy(src, dst, keys, stored, meta=meta, tagging=tagging, check=check,
                                             precondition=precondition)
        src_mode = keys.for_stored(stored.fields, copy_source=True)
        src_view = self.view(stored, src_mode)
        check(src_view)
        key = await src_mode.unseal(src, stored.fields)
        self._envelope(stored, key)  # the source must be whole before it is copied
        condition = await self._condition("copy", dst, precondition)
        dst_mode = keys.for_write(await self._default(dst.bucket))
        sealed = await dst_mode.seal(dst, key)
        fields = data_fields(stored)
        if dst_mode.name != "AES256":
            fields[KEY_ETAG] = self.rand(16).hex()
        elif current_mode_md5(stored):  # S3: a copy under SSE-S3 has the MD5 of its content as ETag
            fields[KEY_ETAG] = stored.fields[KEY_ETAG]
        else:
            fields[KEY_ETAG] = await self._plaintext_md5(src, stored, key)
        fields.update(sealed.fields)
        user = stored.user if meta is None else meta.metadata
        base = replace(info.meta, tagging=tagging) if meta is None else replace(meta, tagging=tagging)
        stored_meta = replace(base, metadata=to_backend_metadata(user, fields))
        result = await self._written(precondition, self.backend.copy_object(
            src.bucket, src.key, dst.bucket, dst.key, stored_meta, src_version_id or info.version_id, condition))
        etag = fields.get(KEY_ETAG, result.etag)
        self.listing.put(dst.bucket, dst.key, result.etag, stored.size, etag)
        return src_view, Written(etag, result.version_id, self._now(), dst_mode.response_headers(sealed.fields, on_write=True))

    async def _plaintext_md5(self, ref: ObjectRef, stored: Stored, key: bytes) -> str:
        """MD5 of an object's plaintext, read and decrypted once (a copy into SSE-S3 from a source
        whose ETag is not already that MD5). Reads the data; writes nothing."""
        md5 = hashlib.md5()
        got = await self.backend.get_object(ref.bucket, ref.key, None, stored.info.version_id)
        async for piece in decrypt_range(got.body, key, self._envelope(stored, key).plan_all()):
            if len(piece) >= 1 << 20:  # hashlib releases the GIL for large buffers
                await asyncio.to_thread(md5.update, piece)
            else:
                md5.update(piece)
        return md5.hexdigest()

    async def _encrypt_copy(
        self, src: ObjectRef, dst: ObjectRef, keys: ModeResolver, stored: Stored, *, meta, tagging, check, precondition=None
    ) -> tuple[ObjectView, Written]:
        """Copy from an object that predates the proxy (plaintext in the backend): stream it through
        the format under the target mode. In place, this is how existing data gets encrypted."""
        if keys.customer_key(COPY_SOURCE_SSEC) is not None:
            raise errors.InvalidRequest(NOT_APPLICABLE)
        src_view = self.view(stored, None)
        check(src_view)
        condition = await self._condition("put", dst, precondition)
        mode = keys.for_write(await self._default(dst.bucket))
        sealed = await mode.seal(dst)
        key, size = sealed.data_key, stored.size
        fields = {**sealed.fields, **fmt.seal_envelope(fmt.Envelope.single(size, self.chunk_size), key)}
        got = await self.backend.get_object(src.bucket, src.key, None, stored.info.version_id)
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
            tags = await self.backend.get_object_tagging(src.bucket, src.key, stored.info.version_id)
            tagging = urllib.parse.urlencode(tags)
        user = stored.user if meta is None else meta.metadata
        base = replace(stored.info.meta, tagging=tagging) if meta is None else replace(meta, tagging=tagging)
        stored_meta = replace(base, metadata=to_backend_metadata(user, fields))
        result = await self._written(precondition, self.backend.put_object(
            dst.bucket, dst.key, encrypt_stream(tapped(), key, chunk_size=self.chunk_size, batch_size=BATCH),
            ciphertext_size(size, self.chunk_size), stored_meta, condition))
        if md5 is not None:
            fields[KEY_ETAG] = md5.hexdigest()
            await self._record_late(dst, replace(base, metadata=user), fields, result.etag)
        etag = fields.get(KEY_ETAG, result.etag)
        self.listing.put(dst.bucket, dst.key, result.etag, size, etag)
        return src_view, Written(etag, result.version_id, self._now(), mode.response_headers(sealed.fields, on_write=True))

    async def rewrap(
        self, ref: ObjectRef, keys: ModeResolver, target: EncryptionMode | None = None, *, expect_etag: str | None = None
    ) -> Written:
        """Re-wrap the latest version's data key under `target` (None: its own mode, newest key
        material), metadata only: data, ETag, checksums and size unchanged. UpdateObjectEncryption
        and `s3proxy rewrap` both come here. `expect_etag` (backend ETag) guards a concurrent writer."""
        info = await self.backend.head_object(ref.bucket, ref.key)
        if expect_etag is not None and info.etag != expect_etag:
            raise errors.PreconditionFailed("The object changed since it was listed.")
        stored = await self.stored(info)
        if not stored.encrypted:
            raise errors.InvalidRequest("The object is not encrypted; UpdateObjectEncryption needs an encrypted source object.")
        current = keys.for_stored(stored.fields)
        if current.name == "SSE-C":
            raise errors.InvalidRequest("UpdateObjectEncryption is not supported for objects encrypted with SSE-C.")
        key = await current.unseal(ref, stored.fields)
        self._envelope(stored, key)  # only a whole, authentic object is re-wrapped
        sealed = await (target or current).seal(ref, key)
        kept = data_fields(stored)
        fields = {**kept, **sealed.fields, KEY_ETAG: stored.etag}  # the client's ETag survives any backend copy
        stored_meta = replace(info.meta, metadata=to_backend_metadata(stored.user, fields), tagging=None)
        result = await self.backend.replace_metadata(ref.bucket, ref.key, stored_meta, info.etag)
        self.listing.put(ref.bucket, ref.key, result.etag, stored.size, stored.etag)
        return Written(stored.etag, result.version_id, self._now(), (target or current).response_headers(sealed.fields, on_write=False))

    async def delete_object(self, ref: ObjectRef, version_id: str | None = None):
        return await self.backend.delete_object(ref.bucket, ref.key, version_id)

    # listings ---------------------------------------------------------------------------------------
    async def _listed(self, bucket: str, info: ObjectInfo) -> ObjectView:
        if info.delete_marker:
            return self.view(Stored(info, {}, {}, 0, info.etag), None)
        if not info.meta.metadata:
            hit = self.listing.get(bucket, info.key, info.etag)
            if hit is not None:
                return replace(self.view(Stored(info, {}, {}, hit[0], hit[1]), None), meta=ObjectMeta())
            try:
                info = replace(await self.backend.head_object(bucket, info.key, info.version_id), is_latest=info.is_latest)
            except (errors.NoSuchKey, errors.NoSuchVersion):
                return self.view(Stored(info, {}, {}, info.size, info.etag), None)
        stored = await self.stored(info)
        self.listing.put(bucket, info.key, info.etag, stored.size, stored.etag)
        return replace(self.view(stored, None), meta=ObjectMeta())

    async def _listed_all(self, bucket: str, infos: Sequence[ObjectInfo]) -> list[ObjectView]:
        limit = asyncio.Semaphore(32)

        async def one(info: ObjectInfo) -> ObjectView:
            async with limit:
                return await self._listed(bucket, info)

        return list(await asyncio.gather(*(one(i) for i in infos)))

    async def list_objects(self, bucket: str, *, prefix: str, delimiter: str, after: str, max_keys: int):
        result = await self.backend.list_objects(bucket, prefix, delimiter, after, max_keys)
        return await self._listed_all(bucket, result.objects), result

    async def list_object_versions(self, bucket: str, **kwargs: Any):
        result = await self.backend.list_object_versions(bucket, **kwargs)
        return await self._listed_all(bucket, result.versions), result
