"""The in-memory twin of a Backend: dicts of bytes with S3 semantics, for fast tests of the layers above.

It lives with the tests, not in s3proxy/: nothing in production builds it. It keeps the Backend
contract (tests/backends/test_backend_contract.py runs it beside the fs and S3 backends), so the
store, the operations and the front door can be tested over it without sockets or files.
ETags are real MD5s (objects here are small). Versioning and tagging are supported. Listing
sorts the keys per call: fine for tests, not for a million keys.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace

from s3proxy import errors
from s3proxy.backends import common
from s3proxy.backends.base import (
    Body,
    BucketInfo,
    Capabilities,
    DeleteResult,
    GetResult,
    ListResult,
    ObjectInfo,
    ObjectMeta,
    PartInfo,
    PutResult,
    StoredRange,
    UploadInfo,
    VersionListResult,
    WriteCondition,
)
from s3proxy.backends.listing import list_page

_CHUNK = 1 << 20


@dataclass
class _Version:
    info: ObjectInfo  # version_id always set ("null" when unversioned)
    data: bytes
    tags: list[tuple[str, str]] = field(default_factory=list)
    seq: int = 0  # the write's place among all writes: orders a key's versions


@dataclass
class _Upload:
    info: UploadInfo
    meta: ObjectMeta
    parts: dict[int, tuple[PartInfo, bytes]] = field(default_factory=dict)


@dataclass
class _Bucket:
    created: BucketInfo
    versioning: str | None = None
    keys: dict[str, list[_Version]] = field(default_factory=dict)  # oldest first
    uploads: dict[str, _Upload] = field(default_factory=dict)


class MemoryBackend:
    """A Backend held in process memory."""

    capabilities = Capabilities(versioning=True, tagging=True)

    def __init__(self, *, clock: common.Clock = time.time, rand: common.Rand = os.urandom,
                 min_part_size: int = common.MIN_PART_SIZE) -> None:
        self._clock = clock
        self._rand = rand
        self._min_part_size = min_part_size
        self._buckets: dict[str, _Bucket] = {}
        self._ids = common.VersionIds(rand(16))
        self._writes = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # buckets

    async def list_buckets(self) -> list[BucketInfo]:
        return [b.created for _, b in sorted(self._buckets.items())]

    async def create_bucket(self, bucket: str) -> None:
        if bucket in self._buckets:
            raise errors.BucketAlreadyOwnedByYou(BucketName=bucket)
        self._buckets[bucket] = _Bucket(BucketInfo(bucket, common.timestamp(self._clock)))

    async def delete_bucket(self, bucket: str) -> None:
        b = self._bucket(bucket)
        if b.keys:  # unfinished uploads go with the bucket, as on AWS
            raise errors.BucketNotEmpty(BucketName=bucket)
        del self._buckets[bucket]

    async def head_bucket(self, bucket: str) -> None:
        self._bucket(bucket)

    # objects

    async def put_object(self, bucket: str, key: str, body: Body, size: int, meta: ObjectMeta,
                         condition: WriteCondition | None = None) -> PutResult:
        self._bucket(bucket)
        data = await _collect(body, size)
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        self._check(bucket, key, condition)  # no await between the check and the store: atomic
        return self._store(bucket, key, data, digest, meta)

    async def get_object(self, bucket: str, key: str, range: StoredRange | None = None,
                         version_id: str | None = None) -> GetResult:
        v = self._readable(bucket, key, version_id)
        got = common.resolve_range(range, len(v.data)) if range is not None else None
        data = v.data if got is None else v.data[got[0] : got[1] + 1]
        return GetResult(self._shown(bucket, v.info), _chunks(data), got)

    async def head_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
        return self._shown(bucket, self._readable(bucket, key, version_id).info)

    async def delete_object(self, bucket: str, key: str, version_id: str | None = None) -> DeleteResult:
        b = self._bucket(bucket)
        if version_id is not None:
            return self._delete_version(b, key, version_id)
        if b.versioning is None:
            self._drop(b, key, common.NULL_VERSION)
            return DeleteResult()
        seq, vid = self._next_version(b)
        info = ObjectInfo(key, 0, "", common.timestamp(self._clock), version_id=vid, delete_marker=True)
        self._push(b, key, _Version(info, b"", seq=seq))
        return DeleteResult(version_id=info.version_id, delete_marker=True)

    async def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, meta: ObjectMeta,
                          src_version_id: str | None = None, condition: WriteCondition | None = None) -> PutResult:
        v = self._readable(src_bucket, src_key, src_version_id)
        self._bucket(dst_bucket)
        self._check(dst_bucket, dst_key, condition)
        result = self._store(dst_bucket, dst_key, v.data, v.info.etag, meta)
        if meta.tagging is None:  # S3's default tagging directive: COPY
            self._buckets[dst_bucket].keys[dst_key][-1].tags = list(v.tags)
        return result

    async def replace_metadata(self, bucket: str, key: str, meta: ObjectMeta, if_etag: str) -> PutResult:
        v = self._readable(bucket, key, None)
        if v.info.etag != if_etag:
            raise errors.PreconditionFailed(Condition="x-amz-copy-source-If-Match")
        v.info = replace(v.info, meta=replace(meta, tagging=None))
        return PutResult(if_etag, self._shown(bucket, v.info).version_id)

    async def list_objects(self, bucket: str, prefix: str = "", delimiter: str = "", after: str = "",
                           max_keys: int = 1000) -> ListResult:
        b = self._bucket(bucket)
        live = sorted(k for k, vs in b.keys.items() if not vs[-1].info.delete_marker)

        def seek(start: str, inclusive: bool) -> Iterator[tuple[str, ObjectInfo]]:
            at = (bisect.bisect_left if inclusive else bisect.bisect_right)(live, start)
            for k in live[at:]:
                yield k, replace(b.keys[k][-1].info, meta=ObjectMeta(), version_id=None)

        return common.list_result(list_page(seek, prefix, delimiter, after, max_keys))

    # multipart

    async def create_multipart(self, bucket: str, key: str, meta: ObjectMeta) -> str:
        b = self._bucket(bucket)
        upload_id = common.new_id(self._rand)
        b.uploads[upload_id] = _Upload(UploadInfo(key, upload_id, common.timestamp(self._clock)), meta)
        return upload_id

    async def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int, body: Body,
                          size: int) -> str:
        up = self._upload(bucket, key, upload_id)
        common.check_part_number(part_number)
        data = await _collect(body, size)
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        up.parts[part_number] = (PartInfo(part_number, etag, size, common.timestamp(self._clock)), data)
        return etag

    async def complete_multipart(self, bucket: str, key: str, upload_id: str,
                                 parts: Sequence[tuple[int, str]], condition: WriteCondition | None = None) -> PutResult:
        up = self._upload(bucket, key, upload_id)
        stored = {n: (p.etag, p.size) for n, (p, _) in up.parts.items()}
        numbers = common.check_complete(parts, stored, self._min_part_size)
        self._check(bucket, key, condition)
        data = b"".join(up.parts[n][1] for n in numbers)
        etag = common.multipart_etag([up.parts[n][0].etag for n in numbers])
        del self._buckets[bucket].uploads[upload_id]
        return self._store(bucket, key, data, etag, up.meta)

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        self._upload(bucket, key, upload_id)
        del self._buckets[bucket].uploads[upload_id]

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> list[PartInfo]:
        return [p for _, (p, _) in sorted(self._upload(bucket, key, upload_id).parts.items())]

    async def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[UploadInfo]:
        ups = [u.info for u in self._bucket(bucket).uploads.values() if u.info.key.startswith(prefix)]
        return sorted(ups, key=lambda u: (u.key, u.initiated))

    # versioning and tagging

    async def get_bucket_versioning(self, bucket: str) -> str | None:
        return self._bucket(bucket).versioning

    async def put_bucket_versioning(self, bucket: str, status: str) -> None:
        common.check_versioning_status(status)
        self._bucket(bucket).versioning = status

    async def list_object_versions(self, bucket: str, prefix: str = "", delimiter: str = "", key_marker: str = "",
                                   version_id_marker: str = "", max_keys: int = 1000) -> VersionListResult:
        b = self._bucket(bucket)
        keys = sorted(b.keys)

        def versions_of(k: str) -> Iterator[tuple[str, ObjectInfo]]:
            vs = b.keys[k]
            for i, v in enumerate(reversed(vs)):
                yield k, replace(v.info, meta=ObjectMeta(), is_latest=i == 0)

        def seek(start: str, inclusive: bool) -> Iterator[tuple[str, ObjectInfo]]:
            at = (bisect.bisect_left if inclusive else bisect.bisect_right)(keys, start)
            for k in keys[at:]:
                yield from versions_of(k)

        first: list[tuple[str, ObjectInfo]] = []
        if common.resumes_inside(key_marker, version_id_marker, prefix, delimiter) and key_marker in b.keys:
            # the marker is a position: found by its version, else by its id (as in fs_index.versions_after)
            vs = b.keys[key_marker]
            found = [v.seq for v in vs if v.info.version_id == version_id_marker]
            bound = found[0] if found else self._ids.position(version_id_marker)
            first = [
                (k, i) for (k, i), v in zip(versions_of(key_marker), reversed(vs), strict=True) if bound is None or v.seq < bound
            ]
        page = list_page(seek, prefix, delimiter, key_marker, max_keys, first)
        return common.version_list_result(page)

    async def get_object_tagging(self, bucket: str, key: str, version_id: str | None = None) -> list[tuple[str, str]]:
        return list(self._readable(bucket, key, version_id).tags)

    async def put_object_tagging(self, bucket: str, key: str, tags: Sequence[tuple[str, str]],
                                 version_id: str | None = None) -> None:
        self._readable(bucket, key, version_id).tags = list(tags)

    async def delete_object_tagging(self, bucket: str, key: str, version_id: str | None = None) -> None:
        self._readable(bucket, key, version_id).tags = []

    # helpers

    def _bucket(self, bucket: str) -> _Bucket:
        b = self._buckets.get(bucket)
        if b is None:
            raise errors.NoSuchBucket(BucketName=bucket)
        return b

    def _upload(self, bucket: str, key: str, upload_id: str) -> _Upload:
        up = self._bucket(bucket).uploads.get(upload_id)
        if up is None or up.info.key != key:
            raise errors.NoSuchUpload(UploadId=upload_id)
        return up

    def _readable(self, bucket: str, key: str, version_id: str | None) -> _Version:
        vs = self._bucket(bucket).keys.get(key, [])
        if version_id is None:
            if not vs or vs[-1].info.delete_marker:
                raise errors.NoSuchKey(Key=key)
            return vs[-1]
        for v in vs:
            if v.info.version_id == version_id:
                if v.info.delete_marker:
                    raise errors.MethodNotAllowed()
                return v
        raise errors.NoSuchVersion(Key=key, VersionId=version_id)

    def _check(self, bucket: str, key: str, condition: WriteCondition | None) -> None:
        """A conditional write's condition against the current object (a delete marker is none)."""
        vs = self._bucket(bucket).keys.get(key, [])
        common.check_condition(condition, vs[-1].info.etag if vs and not vs[-1].info.delete_marker else None, key)

    def _shown(self, bucket: str, info: ObjectInfo) -> ObjectInfo:
        vid = info.version_id or common.NULL_VERSION
        return replace(info, version_id=common.shown_version_id(self._buckets[bucket].versioning, vid))

    def _store(self, bucket: str, key: str, data: bytes, etag: str, meta: ObjectMeta) -> PutResult:
        b = self._bucket(bucket)
        seq, vid = self._next_version(b)
        info = ObjectInfo(key, len(data), etag, common.timestamp(self._clock),
                          replace(meta, tagging=None), version_id=vid, storage_class=meta.storage_class or "STANDARD")
        self._push(b, key, _Version(info, data, common.parse_tagging(meta.tagging), seq))
        return PutResult(etag, common.shown_version_id(b.versioning, vid))

    def _next_version(self, b: _Bucket) -> tuple[int, str]:
        """A new write's place and version id (a versioned write's id names its place)."""
        self._writes += 1
        return self._writes, self._ids.make(self._writes) if b.versioning == "Enabled" else common.NULL_VERSION

    def _push(self, b: _Bucket, key: str, v: _Version) -> None:
        self._drop(b, key, v.info.version_id or common.NULL_VERSION)
        b.keys.setdefault(key, []).append(v)

    def _drop(self, b: _Bucket, key: str, version_id: str) -> _Version | None:
        vs = b.keys.get(key, [])
        for i, v in enumerate(vs):
            if v.info.version_id == version_id:
                del vs[i]
                if not vs:
                    del b.keys[key]
                return v
        return None

    def _delete_version(self, b: _Bucket, key: str, version_id: str) -> DeleteResult:
        gone = self._drop(b, key, version_id)
        return DeleteResult(version_id=version_id, delete_marker=bool(gone and gone.info.delete_marker))


async def _collect(body: Body, size: int) -> bytes:
    return b"".join([c async for c in common.sized(body, size)])


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for at in range(0, len(data), _CHUNK):
        yield data[at : at + _CHUNK]
