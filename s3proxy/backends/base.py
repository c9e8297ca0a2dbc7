"""The Backend seam: what s3proxy asks of the store that holds its (encrypted) objects.

A backend stores bytes and string metadata; it knows nothing of encryption. Bodies are async
iterators of bytes with a known length, so nothing is ever read whole. Errors are raised as
`s3proxy.errors.S3Error` subclasses (NoSuchBucket, NoSuchKey, NoSuchUpload, InvalidPart, ...),
because a backend is itself S3-shaped and those are the errors it has.

Metadata keys are lower-case user-metadata names without the `x-amz-meta-` prefix. The standard
content headers (content-type, content-encoding, content-disposition, content-language,
cache-control, expires) travel in `ObjectMeta.headers`, lower-case names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..buffers import Body

# the standard headers S3 stores with an object and returns on GET/HEAD
CONTENT_HEADERS = (
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
)


@dataclass(frozen=True)
class ObjectMeta:
    """What is stored beside an object's bytes."""

    metadata: Mapping[str, str] = field(default_factory=dict)  # user metadata, no x-amz-meta- prefix
    headers: Mapping[str, str] = field(default_factory=dict)  # standard content headers
    tagging: str | None = None  # URL-encoded tag set as in the x-amz-tagging header, on create only
    storage_class: str | None = None


@dataclass(frozen=True)
class BucketInfo:
    name: str
    created: dt.datetime


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int  # stored bytes
    etag: str  # as S3 shows it, without quotes: hex MD5, or "hex-N" for multipart
    last_modified: dt.datetime  # aware, UTC
    meta: ObjectMeta = field(default_factory=ObjectMeta)
    version_id: str | None = None
    storage_class: str = "STANDARD"
    is_latest: bool = True
    delete_marker: bool = False


# Stored bytes to read, as an HTTP Range header names them: (first, last) inclusive, `last` None for
# "to the end", `first` None for "the last `last` bytes". The backend clamps it to the object as S3
# does (a `last` past the end, a suffix longer than the object) and answers InvalidRange when no byte
# satisfies it.
StoredRange = tuple[int | None, int | None]


@dataclass(frozen=True)
class GetResult:
    info: ObjectInfo  # info.size is the whole object's stored size, also for a range
    body: Body
    # the stored byte range actually returned, inclusive; None when the whole object
    range: tuple[int, int] | None = None


@dataclass(frozen=True)
class PutResult:
    etag: str
    version_id: str | None = None


@dataclass(frozen=True)
class DeleteResult:
    version_id: str | None = None
    delete_marker: bool = False


@dataclass(frozen=True)
class ListResult:
    objects: Sequence[ObjectInfo]  # meta may be empty: listings carry no metadata
    common_prefixes: Sequence[str]
    is_truncated: bool
    next_marker: str | None  # the key (or prefix) to continue after, when truncated


@dataclass(frozen=True)
class VersionListResult:
    versions: Sequence[ObjectInfo]  # delete markers have delete_marker=True
    common_prefixes: Sequence[str]
    is_truncated: bool
    next_key_marker: str | None
    next_version_id_marker: str | None


@dataclass(frozen=True)
class PartInfo:
    part_number: int
    etag: str
    size: int
    last_modified: dt.datetime


@dataclass(frozen=True)
class UploadInfo:
    key: str
    upload_id: str
    initiated: dt.datetime


@dataclass(frozen=True)
class WriteCondition:
    """A conditional write (S3's, since 2024), decided atomically with the write itself: create only
    when the key has no current object (a delete marker counts as none), or replace only the
    current object with this backend ETag. Refused: PreconditionFailed, or NoSuchKey for
    `if_match` with no current object. A backend that cannot enforce a condition must not accept
    it silently (the proxy probes what an S3 server enforces: store/conditions.py)."""

    if_none_match: bool = False
    if_match: str | None = None  # the backend ETag the current object must have


@dataclass(frozen=True)
class Capabilities:
    versioning: bool = False
    tagging: bool = False


@runtime_checkable
class Backend(Protocol):
    capabilities: Capabilities

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    # buckets
    async def list_buckets(self) -> list[BucketInfo]: ...
    async def create_bucket(self, bucket: str) -> None: ...  # BucketAlreadyOwnedByYou if it exists
    async def delete_bucket(self, bucket: str) -> None: ...  # BucketNotEmpty / NoSuchBucket
    async def head_bucket(self, bucket: str) -> None: ...  # NoSuchBucket

    # objects
    async def put_object(
        self, bucket: str, key: str, body: Body, size: int, meta: ObjectMeta, condition: WriteCondition | None = None
    ) -> PutResult: ...
    async def get_object(
        self, bucket: str, key: str, range: StoredRange | None = None, version_id: str | None = None
    ) -> GetResult: ...  # range: see StoredRange; GetResult.range says what was returned
    async def head_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo: ...
    async def delete_object(self, bucket: str, key: str, version_id: str | None = None) -> DeleteResult: ...
    async def copy_object(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        meta: ObjectMeta,
        src_version_id: str | None = None,
        condition: WriteCondition | None = None,  # on the destination
    ) -> PutResult: ...  # server-side copy of the stored bytes, metadata replaced by `meta`
    async def replace_metadata(self, bucket: str, key: str, meta: ObjectMeta, if_etag: str) -> PutResult:
        """Replace the latest version's metadata, bytes untouched, if its ETag is still `if_etag`
        (else PreconditionFailed). Tags stay. Used to record what is known only after a body was
        stored, and to re-wrap keys without moving data."""
        ...

    async def list_objects(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        after: str = "",
        max_keys: int = 1000,
    ) -> ListResult: ...  # keys strictly greater than `after`, in UTF-8 binary order

    # multipart
    async def create_multipart(self, bucket: str, key: str, meta: ObjectMeta) -> str: ...
    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: Body, size: int
    ) -> str: ...  # the part's ETag (no quotes)
    async def complete_multipart(
        self, bucket: str, key: str, upload_id: str, parts: Sequence[tuple[int, str]],
        condition: WriteCondition | None = None,
    ) -> PutResult: ...
    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None: ...
    async def list_parts(self, bucket: str, key: str, upload_id: str) -> list[PartInfo]: ...
    async def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[UploadInfo]: ...

    # versioning and tagging, where capabilities say so (else NotImplemented)
    async def get_bucket_versioning(self, bucket: str) -> str | None: ...  # "Enabled" | "Suspended" | None
    async def put_bucket_versioning(self, bucket: str, status: str) -> None: ...
    async def list_object_versions(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        max_keys: int = 1000,
    ) -> VersionListResult:
        """Markers are positions, not entries: a page after a version that was deleted meanwhile (a
        tool emptying a bucket page by page) goes on from where that version was; when that place
        is unknown, with the key's remaining versions (a repeat, never a skip). The markers a
        result gives back are only ever passed back to the same backend."""
        ...
    async def get_object_tagging(self, bucket: str, key: str, version_id: str | None = None) -> list[tuple[str, str]]: ...
    async def put_object_tagging(
        self, bucket: str, key: str, tags: Sequence[tuple[str, str]], version_id: str | None = None
    ) -> None: ...
    async def delete_object_tagging(self, bucket: str, key: str, version_id: str | None = None) -> None: ...
