"""Multipart uploads in the object store: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts.

A part of its own with its collaborators named: the backend, the proxy's records, the buckets
(for a bucket's default encryption) and the listing cache it shares with ObjectStore. An
UploadPartCopy's source is read by the ObjectStore (open, the operation's checks, read) and
arrives here as plaintext, so this class never reads objects.

The upload's mode fields live in the record uploads/<id> (S3 has no way to read an upload's
metadata back); each part's client ETag (MD5 of its plaintext under SSE-S3, random otherwise:
never anything computed from ciphertext) lives beside its backend ETag in uploads/<id>/<n>.
The envelope MAC key M (one-way from the data key) is kept wrapped by the proxy's service key,
so Complete can seal the part list without the customer's SSE-C key, as S3 allows. Every record
is sealed and bound to its name and bucket (internal.py); the object's metadata MAC is computed
at Create, from what is known then (docs/FORMAT.md §7, §12), and Complete writes the sealed record
parts/<mpu id> the object names. An upload begun in format version 1 completes as version 1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .. import errors
from ..auth.body import RequestBody
from ..backends.base import Backend, ObjectMeta, PartInfo, UploadInfo
from ..buffers import Body
from ..format import envelope as fmt
from ..format.chunks import DEFAULT_CHUNK_SIZE
from ..format.envelope import KEY_MODE, KEY_MPU
from ..format.errors import IntegrityError
from ..format.records import SHARED
from ..format.sizes import ciphertext_size, plaintext_size
from ..internal import InternalRecords
from ..modes.base import EncryptionMode, ObjectRef
from ..modes.resolve import ModeResolver
from ..streams import BATCH, encrypt_stream
from .buckets import Buckets
from .catalog import Catalog, record_name
from .conditions import ConditionalWrites, Precondition
from .views import ListingCache, Written, _hashed, _service_unwrap, _service_wrap, seal_checksums

log = logging.getLogger("s3proxy.store")


@dataclass
class Upload:
    """An open multipart upload as UploadPart and UploadPartCopy need it: its mode and data key."""

    ref: ObjectRef
    upload_id: str
    fields: Mapping[str, str]
    mode: EncryptionMode
    data_key: bytes = field(repr=False)
    legacy: bool = False  # begun in format version 1: its records are bare JSON

    @property
    def wants_md5(self) -> bool:
        """Parts of an SSE-S3 upload have the MD5 of their plaintext as ETag."""
        return self.fields.get(KEY_MODE) == "AES256"


REQUESTED_ENCRYPTION = ("x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
                        "x-amz-server-side-encryption-customer-algorithm")


class MultipartUploads:
    def __init__(
        self,
        backend: Backend,
        catalog: Catalog,
        buckets: Buckets,
        conditions: ConditionalWrites,
        *,
        clock: Callable[[], float],
        listing: ListingCache,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        rand: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.backend = backend
        self.catalog = catalog
        self.records: InternalRecords = catalog.records
        self.buckets = buckets
        self.conditions = conditions
        self.clock = clock
        self.listing = listing
        self.chunk_size = chunk_size
        self.rand = rand

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    async def create(self, ref: ObjectRef, meta: ObjectMeta, modes: ModeResolver) -> tuple[str, dict[str, str]]:
        mode = modes.for_write(await self.buckets.default_encryption(ref.bucket))
        sealed = await mode.seal(ref)
        mpu = self.rand(16).hex()
        fields = {**sealed.fields, fmt.KEY_VERSION: str(fmt.VERSION_2), fmt.KEY_CHUNK_SIZE: str(self.chunk_size), KEY_MPU: mpu}
        mac_key = await _service_wrap(modes.kms, fmt.envelope_mac_key(sealed.data_key), ref, modes.request_id)
        stored_meta = self.catalog.sealed_meta(ref.bucket, ref.key, meta, fields)  # s3proxy-mm over what is known now
        upload_id = await self.backend.create_multipart(ref.bucket, ref.key, stored_meta)
        # the SSE headers it was created with: what bucket policies test on its parts, as on the upload itself
        requested = {h: modes.headers[h] for h in REQUESTED_ENCRYPTION if h in modes.headers}
        await self.records.put(f"uploads/{upload_id}", ref.bucket,
                               {"bucket": ref.bucket, "key": ref.key, "fields": fields, "mac_key": mac_key,
                                "requested": requested})
        return upload_id, mode.response_headers(sealed.fields, on_write=True)

    async def requested_encryption(self, ref: ObjectRef, upload_id: str) -> dict[str, str]:
        """The SSE headers the upload was created with (none for an unknown upload: its parts are refused anyway)."""
        try:
            record, _ = await self._record(ref, upload_id)
        except (errors.NoSuchUpload, IntegrityError):
            return {}
        requested = record.get("requested")
        return dict(requested) if isinstance(requested, dict) else {}

    async def _record(self, ref: ObjectRef, upload_id: str) -> tuple[dict[str, Any], bool]:
        """(the upload's record, whether it is a version-1 one); NoSuchUpload for another bucket's or
        key's upload id, IntegrityError for a record that does not open although the upload exists."""
        name = f"uploads/{upload_id}"
        try:
            found = await self.records.get(name, ref.bucket, legacy=True)
        except IntegrityError:
            await self.backend.list_parts(ref.bucket, ref.key, upload_id)  # NoSuchUpload: the client named another bucket's
            raise
        if found is None or (found.value.get("bucket"), found.value.get("key")) != (ref.bucket, ref.key):
            raise errors.NoSuchUpload(UploadId=upload_id)
        fields = found.value.get("fields")
        if not isinstance(fields, dict) or found.legacy != (fields.get(fmt.KEY_VERSION) == str(fmt.VERSION_1)):
            raise IntegrityError(f"record:{name}")  # a bare record can only describe a version-1 upload
        return found.value, found.legacy

    async def open(self, ref: ObjectRef, upload_id: str, modes: ModeResolver) -> Upload:
        """The upload a part is written to; an SSE-C upload's key must come with every part."""
        modes.reject_sse_header()
        record, legacy = await self._record(ref, upload_id)
        fields = record["fields"]
        mode = modes.for_upload(fields)
        return Upload(ref, upload_id, fields, mode, await mode.unseal(ref, fields), legacy)

    async def _store_part(self, upload: Upload, number: int, plain: Any, size: int, md5: Callable[[], str] | None,
                          checksums: Callable[[], Mapping[str, str]] = dict) -> str:
        """`md5` and `checksums` are read once the part is stored: the part's client ETag and its
        flexible checksums, which are kept sealed under the data key (GetObjectAttributes shows them)."""
        ref, chunk = upload.ref, int(upload.fields[fmt.KEY_CHUNK_SIZE])
        stream = encrypt_stream(plain, upload.data_key, part_number=number, chunk_size=chunk, batch_size=BATCH)
        backend_etag = await self.backend.upload_part(
            ref.bucket, ref.key, upload.upload_id, number, stream, ciphertext_size(size, chunk)
        )
        etag = md5() if md5 is not None else self.rand(16).hex()
        name, value = f"uploads/{upload.upload_id}/{number}", {"etag": etag, "backend": backend_etag}
        if (sums := checksums()) and not upload.legacy:
            value["checksums"] = seal_checksums(upload.data_key, sums, self.rand)
        if upload.legacy:
            await self.records.put_legacy(name, value)
        else:
            await self.records.put(name, ref.bucket, value)
        return etag

    async def upload_part(self, upload: Upload, number: int, body: RequestBody) -> tuple[str, dict[str, str]]:
        """(client ETag, response headers) of part `number`, from the verified request `body`
        (opened with want_md5 = upload.wants_md5)."""
        size = body.require_length()
        md5 = (lambda: body.md5_hex or "") if upload.wants_md5 else None
        etag = await self._store_part(upload, number, body, size, md5, lambda: body.checksums)
        return etag, upload.mode.response_headers(upload.fields, on_write=False)

    async def upload_part_copy(self, upload: Upload, number: int, plain: Body, size: int) -> tuple[str, dict[str, str]]:
        """(client ETag, response headers) of part `number`, from `size` bytes of plaintext (the copy
        source's range, read by the ObjectStore)."""
        md5 = hashlib.md5() if upload.wants_md5 else None
        etag = await self._store_part(upload, number, _hashed(plain, md5), size, (lambda: md5.hexdigest()) if md5 else None)
        return etag, upload.mode.response_headers(upload.fields, on_write=False)

    async def _parts(self, ref: ObjectRef, upload_id: str, record: Mapping[str, Any],
                     legacy: bool) -> list[tuple[PartInfo, str, str | None]]:
        """(part with its client ETag and plaintext size, backend ETag, sealed checksums) for every uploaded part."""
        chunk = int(record["fields"][fmt.KEY_CHUNK_SIZE])
        parts = await self.backend.list_parts(ref.bucket, ref.key, upload_id)
        limit = asyncio.Semaphore(16)

        async def one(p: PartInfo) -> tuple[PartInfo, str, str | None]:
            async with limit:
                name = f"uploads/{upload_id}/{p.part_number}"
                found = await self.records.get(name, ref.bucket, legacy=legacy, immutable=True)
                if found is None or found.value.get("backend") != p.etag:  # re-uploaded through another proxy
                    found = await self.records.get(name, ref.bucket, legacy=legacy, fresh=True)
            if found is None or found.value.get("backend") != p.etag:
                raise errors.InternalError(f"Part {p.part_number} of this upload has no record; upload it again.")
            try:
                return (replace(p, etag=found.value["etag"], size=plaintext_size(p.size, chunk)), p.etag,
                        found.value.get("checksums"))
            except IntegrityError:
                raise errors.InternalError("A stored part of this upload is damaged.") from None

        return list(await asyncio.gather(*(one(p) for p in parts)))

    async def list_parts(self, ref: ObjectRef, upload_id: str) -> list[PartInfo]:
        """The uploaded parts as the client sees them: its ETags, plaintext sizes."""
        return [p for p, _, _ in await self._parts(ref, upload_id, *await self._record(ref, upload_id))]

    async def complete(
        self, ref: ObjectRef, upload_id: str, requested: Sequence[tuple[int, str]], modes: ModeResolver, *, min_part_size: int,
        precondition: Precondition | None = None,
    ) -> Written:
        """`requested`: (part number, client ETag) in ascending order (the caller checked the order).
        A Complete re-sent after one that succeeded gets that success again (S3 does the same for a
        while), as long as the key still holds what the upload made."""
        try:
            record, legacy = await self._record(ref, upload_id)
        except errors.NoSuchUpload:
            return await self._completed(ref, upload_id, requested, modes)
        fields = record["fields"]
        mode = modes.for_complete(fields)
        if mode is not None:  # an SSE-C key was sent: it must be the upload's
            await mode.unseal(ref, fields)
        uploaded = {p.part_number: (p, backend_etag, sums)
                    for p, backend_etag, sums in await self._parts(ref, upload_id, record, legacy)}
        for i, (number, etag) in enumerate(requested):
            found = uploaded.get(number)
            if found is None or found[0].etag != etag:
                raise errors.InvalidPart(UploadId=upload_id, PartNumber=str(number), ETag=etag)
            if i < len(requested) - 1 and found[0].size < min_part_size:
                raise errors.EntityTooSmall(
                    ProposedSize=str(found[0].size), MinSizeAllowed=str(min_part_size), PartNumber=str(number), ETag=etag
                )
        condition = await self.conditions.condition("complete", ref, precondition)
        version = fmt.VERSION_1 if legacy else fmt.VERSION_2
        envelope = fmt.Envelope.multipart([(n, uploaded[n][0].size) for n, _ in requested], int(fields[fmt.KEY_CHUNK_SIZE]),
                                          version=version)
        mac_key = await _service_unwrap(modes.kms, record["mac_key"], ref, modes.request_id)
        sealed = fmt.seal_envelope(envelope, b"", mac_key=mac_key)
        etag = _multipart_etag(requested)
        value = {"size": sealed[fmt.KEY_SIZE], "parts": sealed.get(fmt.KEY_PARTS, ""), "mac": sealed[fmt.KEY_MAC], "etag": etag,
                 "upload": upload_id, "bucket": ref.bucket, "key": ref.key,
                 "checksums": {str(n): uploaded[n][2] for n, _ in requested if uploaded[n][2]}}
        if legacy:  # the object's own metadata says version 1: so must its record (the upgrade re-seals both)
            await self.records.put_legacy(record_name(fields[KEY_MPU]), value)
        else:
            await self.records.put(record_name(fields[KEY_MPU]), SHARED, value)
        try:
            result = await self.conditions.written(precondition, self.backend.complete_multipart(
                ref.bucket, ref.key, upload_id, [(n, uploaded[n][1]) for n, _ in requested], condition))
        except errors.NoSuchUpload:  # completed meanwhile by a twin of this request
            return await self._completed(ref, upload_id, requested, modes)
        await self._forget_upload(upload_id, uploaded)
        self.listing.put(ref.bucket, ref.key, result.etag, envelope.plaintext_size, etag)
        return Written(etag, result.version_id, self._now(), _complete_headers(modes, fields))

    async def _completed(
        self, ref: ObjectRef, upload_id: str, requested: Sequence[tuple[int, str]], modes: ModeResolver
    ) -> Written:
        """The result of the Complete that already made the object at `ref` from `upload_id` with these
        parts; NoSuchUpload when the key holds anything else (another upload, a later write)."""
        try:
            info = await self.backend.head_object(ref.bucket, ref.key)
        except (errors.NoSuchKey, errors.NoSuchBucket):
            raise errors.NoSuchUpload(UploadId=upload_id) from None
        if info.delete_marker:
            raise errors.NoSuchUpload(UploadId=upload_id)
        try:
            stored = await self.catalog.stored(ref.bucket, info)
            mpu = stored.fields.get(KEY_MPU)
            made = await self.records.get(record_name(mpu), SHARED, immutable=True) if mpu else None
        except IntegrityError:
            raise errors.NoSuchUpload(UploadId=upload_id) from None
        value = made.value if made is not None else None
        if (
            not isinstance(value, dict)
            or (value.get("upload"), value.get("bucket"), value.get("key")) != (upload_id, ref.bucket, ref.key)
            or not all(_is_hex(e) for _, e in requested)
            or stored.etag != _multipart_etag(requested)
        ):
            raise errors.NoSuchUpload(UploadId=upload_id)
        mode = modes.for_complete(stored.fields)
        if mode is not None:  # an SSE-C key was sent: it must be the object's
            await mode.unseal(ref, stored.fields)
        return Written(stored.client_etag, info.version_id, info.last_modified, _complete_headers(modes, stored.fields))

    async def _forget_upload(self, upload_id: str, parts: Mapping[int, Any]) -> None:
        limit = asyncio.Semaphore(16)

        async def drop(name: str) -> None:
            async with limit:
                await self.records.delete(name)

        await asyncio.gather(drop(f"uploads/{upload_id}"), *(drop(f"uploads/{upload_id}/{n}") for n in parts))

    async def abort(self, ref: ObjectRef, upload_id: str) -> None:
        numbers = {p.part_number: None for p in await self.backend.list_parts(ref.bucket, ref.key, upload_id)}
        await self.backend.abort_multipart(ref.bucket, ref.key, upload_id)
        await self._forget_upload(upload_id, numbers)

    async def list_uploads(self, bucket: str, prefix: str = "") -> list[UploadInfo]:
        return await self.backend.list_multipart_uploads(bucket, prefix)


def _multipart_etag(requested: Sequence[tuple[int, str]]) -> str:
    """S3's ETag of a multipart object: MD5 of the parts' binary ETags, then "-N"."""
    return hashlib.md5(b"".join(bytes.fromhex(e) for _, e in requested)).hexdigest() + f"-{len(requested)}"


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _complete_headers(modes: ModeResolver, fields: Mapping[str, str]) -> dict[str, str]:
    """S3 echoes SSE-S3 and SSE-KMS on Complete, and nothing of SSE-C (reference §1.1)."""
    return {} if fields.get(KEY_MODE) == "SSE-C" else dict(modes.for_stored(fields).response_headers(fields, on_write=False))
