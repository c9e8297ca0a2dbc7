"""ObjectStore: the client's view of objects (plaintext sizes, client ETags, user metadata) over a backend.

The S3 operations in `ops/` speak only to this layer; what is stored in the backend (and how it
is encrypted) is decided here, so the operations never see ciphertext, envelopes or internal keys.
Internal metadata keys start with `s3proxy-`; a client's own metadata key that starts with that
prefix is stored escaped under `s3proxy-user-` so that no client can forge an internal key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import AsyncIterator, Callable, Mapping, Sequence

from . import errors
from .backends.base import Backend, Body, ObjectInfo, ObjectMeta, PartInfo, UploadInfo
from .http.headers import ByteRange

INTERNAL = "s3proxy-"
ESCAPED = "s3proxy-user-"
ETAG_KEY = "s3proxy-etag"


def to_backend_metadata(user: Mapping[str, str], internal: Mapping[str, str]) -> dict[str, str]:
    out = {(ESCAPED + k[len(INTERNAL):] if k.startswith(INTERNAL) else k): v for k, v in user.items()}
    out.update(internal)
    return out


def split_backend_metadata(stored: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(user metadata as the client wrote it, internal metadata)."""
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
    headers: Mapping[str, str] = field(default_factory=dict)  # extra response headers (encryption echo, ...)


@dataclass(frozen=True)
class Download:
    view: ObjectView
    body: Body
    range: tuple[int, int] | None  # inclusive plaintext offsets when a range was served


@dataclass(frozen=True)
class Written:
    etag: str
    version_id: str | None = None
    last_modified: dt.datetime | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class ObjectStore:
    """Plaintext pass-through today; the encryption modes plug in behind these same methods."""

    def __init__(self, backend: Backend, *, clock: Callable[[], float]) -> None:
        self.backend = backend
        self.clock = clock

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc)

    def view(self, info: ObjectInfo) -> ObjectView:
        user, internal = split_backend_metadata(info.meta.metadata)
        return ObjectView(
            key=info.key,
            size=info.size,
            etag=internal.get(ETAG_KEY, info.etag),
            last_modified=info.last_modified,
            meta=replace(info.meta, metadata=user),
            version_id=info.version_id,
            storage_class=info.storage_class,
            delete_marker=info.delete_marker,
            is_latest=info.is_latest,
        )

    # single objects ---------------------------------------------------------------------------
    async def put_object(self, bucket: str, key: str, body: "SizedBody", meta: ObjectMeta) -> Written:
        stored = replace(meta, metadata=to_backend_metadata(meta.metadata, {}))
        result = await self.backend.put_object(bucket, key, body, body.size, stored)
        return Written(etag=result.etag, version_id=result.version_id, last_modified=self._now())

    async def head_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectView:
        return self.view(await self.backend.head_object(bucket, key, version_id))

    async def get_object(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None = None,
        byte_range: ByteRange | None = None,
        check: Callable[[ObjectView], None] = lambda view: None,
    ) -> Download:
        if byte_range is None:
            got = await self.backend.get_object(bucket, key, None, version_id)
            view = self.view(got.info)
            try:
                check(view)
            except BaseException:
                await _close(got.body)
                raise
            return Download(view, got.body, None)
        view = await self.head_object(bucket, key, version_id)
        check(view)
        first, last = byte_range.resolve(view.size)
        got = await self.backend.get_object(bucket, key, (first, last), version_id or view.version_id)
        return Download(view, got.body, (first, last))

    async def copy_object(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        src_version_id: str | None,
        meta: ObjectMeta | None,
        tagging: str | None,
        check: Callable[[ObjectView], None],
    ) -> tuple[ObjectView, Written]:
        """Server-side copy. `meta` None keeps the source's metadata (directive COPY); `tagging`
        None keeps the source's tags, a string (maybe empty) replaces them."""
        source = await self.backend.head_object(src_bucket, src_key, src_version_id)
        src_view = self.view(source)
        check(src_view)
        _, internal = split_backend_metadata(source.meta.metadata)
        if meta is None:
            stored = replace(source.meta, tagging=tagging)
        else:
            stored = replace(meta, metadata=to_backend_metadata(meta.metadata, internal), tagging=tagging)
        result = await self.backend.copy_object(
            src_bucket, src_key, dst_bucket, dst_key, stored, src_version_id or source.version_id
        )
        etag = internal.get(ETAG_KEY, result.etag)
        return src_view, Written(etag=etag, version_id=result.version_id, last_modified=self._now())

    async def delete_object(self, bucket: str, key: str, version_id: str | None = None):
        return await self.backend.delete_object(bucket, key, version_id)

    # multipart ------------------------------------------------------------------------------------
    async def create_multipart(self, bucket: str, key: str, meta: ObjectMeta) -> str:
        return await self.backend.create_multipart(bucket, key, replace(meta, metadata=to_backend_metadata(meta.metadata, {})))

    async def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int, body: "SizedBody") -> str:
        return await self.backend.upload_part(bucket, key, upload_id, part_number, body, body.size)

    async def upload_part_copy(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        src_bucket: str,
        src_key: str,
        *,
        src_version_id: str | None,
        byte_range: ByteRange | None,
        check: Callable[[ObjectView], None],
    ) -> tuple[ObjectView, str]:
        download = await self.get_object(src_bucket, src_key, version_id=src_version_id, byte_range=byte_range, check=check)
        size = download.view.size if download.range is None else download.range[1] - download.range[0] + 1
        etag = await self.backend.upload_part(bucket, key, upload_id, part_number, download.body, size)
        return download.view, etag

    async def complete_multipart(self, bucket: str, key: str, upload_id: str, parts: Sequence[tuple[int, str]]) -> Written:
        result = await self.backend.complete_multipart(bucket, key, upload_id, parts)
        return Written(etag=result.etag, version_id=result.version_id)

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        await self.backend.abort_multipart(bucket, key, upload_id)

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> list[PartInfo]:
        return await self.backend.list_parts(bucket, key, upload_id)

    async def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[UploadInfo]:
        return await self.backend.list_multipart_uploads(bucket, prefix)

    # listings ---------------------------------------------------------------------------------------
    async def list_objects(self, bucket: str, *, prefix: str, delimiter: str, after: str, max_keys: int):
        result = await self.backend.list_objects(bucket, prefix, delimiter, after, max_keys)
        return [self.view(o) for o in result.objects], result

    async def list_object_versions(self, bucket: str, **kwargs):
        result = await self.backend.list_object_versions(bucket, **kwargs)
        return [self.view(o) for o in result.versions], result


class SizedBody:
    """An async byte iterator with its length known up front (what the backend needs)."""

    size: int

    def __aiter__(self) -> AsyncIterator[bytes]:  # pragma: no cover - protocol
        raise NotImplementedError


async def _close(body: Body) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()
