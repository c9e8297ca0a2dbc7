"""The embedded Backend: objects as immutable blob files under one root, indexed by SQLite.

Layout under `root` (nothing in it is ever named after a key or a bucket):
    index.sqlite3   buckets, object versions, uploads, parts, tags (see fs_index)
    blobs/ab/<id>   object and part bytes; `<id>` is 32 random hex characters
    tmp/<id>        writes in progress
A write streams into tmp/ (~1 MiB per worker-thread call), fsyncs, renames into blobs/, fsyncs
the directory, and only then commits the index row; blobs the commit made garbage are unlinked
afterwards. A crash therefore leaves the old object or the new one, plus at worst orphan blobs
or temp files, which `start()` sweeps. Multipart Complete records the parts' blobs in order
(O(1), no bytes copied); copy hard-links blobs (they are immutable), falling back to a copy.

ETags are opaque random tokens (32 hex; "hex-N" after multipart), not MD5: the proxy computes
the ETags clients see, and MD5 would cost ~1.7 CPU-s per GB here. A copy keeps its source's ETag.

Blobs being read are pinned in memory so a concurrent overwrite or delete defers their unlink
until the read ends. One process per root.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import BinaryIO

from s3proxy import errors
from s3proxy.backends import common
from s3proxy.backends.base import (
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
from s3proxy.backends.fs_index import Blobs, Index, NewVersion, Version
from s3proxy.backends.listing import list_page
from s3proxy.buffers import Body
from s3proxy.private import make_dir, open_file

CHUNK = 1 << 20


class FsBackend:
    """A Backend over a local directory."""

    capabilities = Capabilities(versioning=True, tagging=True)

    def __init__(self, root: Path, *, clock: common.Clock = time.time, rand: common.Rand = os.urandom,
                 min_part_size: int = common.MIN_PART_SIZE, chunk_size: int = CHUNK, fsync: bool = True) -> None:
        """`fsync=False` (tests, benchmarks) skips every fsync, of blobs and of the index: not crash-safe."""
        self._root = Path(root)
        self._clock = clock
        self._rand = rand
        self._min_part_size = min_part_size
        self._chunk = chunk_size
        self._fsync = fsync
        self._index: Index | None = None
        self._pins: collections.Counter[str] = collections.Counter()
        self._doomed: set[str] = set()
        self._pin_lock = threading.Lock()

    async def start(self) -> None:
        await asyncio.to_thread(self._open)

    async def close(self) -> None:
        if self._index is not None:
            await asyncio.to_thread(self._index.close)
            self._index = None

    def _open(self) -> None:
        for sub in ("blobs", "tmp"):
            make_dir(self._root / sub)
        self._index = Index(self._root / "index.sqlite3", self._rand, durable=self._fsync)
        self._sweep()

    def _sweep(self) -> None:
        """Remove temp files and blobs no row names (left by a crash)."""
        for tmp in (self._root / "tmp").iterdir():
            tmp.unlink(missing_ok=True)
        keep = self._db.referenced_blobs()
        for blob in (self._root / "blobs").glob("*/*"):
            if blob.name not in keep:
                blob.unlink(missing_ok=True)

    @property
    def _db(self) -> Index:
        if self._index is None:
            raise errors.ServiceUnavailable("The storage backend is not started.")
        return self._index

    # buckets

    async def list_buckets(self) -> list[BucketInfo]:
        return await asyncio.to_thread(self._db.list_buckets)

    async def create_bucket(self, bucket: str) -> None:
        await asyncio.to_thread(self._db.create_bucket, bucket, self._now())

    async def delete_bucket(self, bucket: str) -> None:
        garbage = await asyncio.to_thread(self._db.delete_bucket, bucket)
        await asyncio.to_thread(self._discard, garbage)

    async def head_bucket(self, bucket: str) -> None:
        await asyncio.to_thread(self._db.versioning, bucket)

    # objects

    async def put_object(self, bucket: str, key: str, body: Body, size: int, meta: ObjectMeta,
                         condition: WriteCondition | None = None) -> PutResult:
        await self.head_bucket(bucket)
        blob = await self._write_blob(body, size)
        etag = common.new_id(self._rand)
        new = NewVersion(key, size, etag, self._now(), _stored_meta(meta), [(blob, size)],
                         common.parse_tagging(meta.tagging))
        return PutResult(etag, await self._commit_put(bucket, new, condition))

    async def get_object(self, bucket: str, key: str, range: StoredRange | None = None,
                         version_id: str | None = None) -> GetResult:
        info, row = await asyncio.to_thread(self._lookup, bucket, key, version_id, pin=True)
        blobs = row.blobs
        try:
            got = common.resolve_range(range, info.size) if range is not None else None
        except errors.S3Error:
            await asyncio.to_thread(self._unpin, blobs)
            raise
        start, end = got or (0, info.size - 1)
        body = common.ClosingBody(self._read(blobs, start, end), lambda: self._unpin(blobs))
        return GetResult(info, body, got)

    async def head_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
        return (await asyncio.to_thread(self._lookup, bucket, key, version_id))[0]

    async def delete_object(self, bucket: str, key: str, version_id: str | None = None) -> DeleteResult:
        if version_id is None:
            vid, marker, garbage = await asyncio.to_thread(self._db.delete, bucket, key, self._now())
        else:
            marker, garbage = await asyncio.to_thread(self._db.delete_version, bucket, key, version_id)
            vid = version_id
        await asyncio.to_thread(self._discard, garbage)
        return DeleteResult(vid, marker)

    async def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, meta: ObjectMeta,
                          src_version_id: str | None = None, condition: WriteCondition | None = None) -> PutResult:
        await self.head_bucket(dst_bucket)
        info, row = await asyncio.to_thread(self._lookup, src_bucket, src_key, src_version_id, pin=True)
        try:
            copies = await asyncio.to_thread(self._link_all, row.blobs)
        finally:
            await asyncio.to_thread(self._unpin, row.blobs)
        tags = row.tags if meta.tagging is None else common.parse_tagging(meta.tagging)  # S3's default: COPY
        new = NewVersion(dst_key, info.size, info.etag, self._now(), _stored_meta(meta), copies, tags)
        return PutResult(info.etag, await self._commit_put(dst_bucket, new, condition))

    async def replace_metadata(self, bucket: str, key: str, meta: ObjectMeta, if_etag: str) -> PutResult:
        vid = await asyncio.to_thread(self._db.replace_meta, bucket, key, _stored_meta(meta), if_etag)
        return PutResult(if_etag, vid)

    async def list_objects(self, bucket: str, prefix: str = "", delimiter: str = "", after: str = "",
                           max_keys: int = 1000) -> ListResult:
        def run() -> ListResult:
            with self._db.locked():
                page = list_page(self._db.seek_live(bucket), prefix, delimiter, after, max_keys)
            return common.list_result(page)

        return await asyncio.to_thread(run)

    # multipart

    async def create_multipart(self, bucket: str, key: str, meta: ObjectMeta) -> str:
        upload_id = common.new_id(self._rand)
        await asyncio.to_thread(self._db.create_upload, bucket, key, upload_id, self._now(), meta)
        return upload_id

    async def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int, body: Body,
                          size: int) -> str:
        common.check_part_number(part_number)
        await asyncio.to_thread(self._db.list_parts, bucket, key, upload_id)  # NoSuchUpload before the bytes
        blob = await self._write_blob(body, size)
        part = PartInfo(part_number, common.new_id(self._rand), size, common.from_epoch(self._now()))
        try:
            garbage = await asyncio.to_thread(self._db.put_part, bucket, key, upload_id, part, blob)
        except BaseException:
            await asyncio.to_thread(self._discard, [(blob, size)])
            raise
        await asyncio.to_thread(self._discard, garbage)
        return part.etag

    async def complete_multipart(self, bucket: str, key: str, upload_id: str,
                                 parts: Sequence[tuple[int, str]], condition: WriteCondition | None = None) -> PutResult:
        etag, vid, garbage = await asyncio.to_thread(
            self._db.complete, bucket, key, upload_id, parts, self._min_part_size, self._now(), condition)
        await asyncio.to_thread(self._discard, garbage)
        return PutResult(etag, vid)

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        garbage = await asyncio.to_thread(self._db.abort, bucket, key, upload_id)
        await asyncio.to_thread(self._discard, garbage)

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> list[PartInfo]:
        return await asyncio.to_thread(self._db.list_parts, bucket, key, upload_id)

    async def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[UploadInfo]:
        return await asyncio.to_thread(self._db.list_uploads, bucket, prefix)

    # versioning and tagging

    async def get_bucket_versioning(self, bucket: str) -> str | None:
        return await asyncio.to_thread(self._db.versioning, bucket)

    async def put_bucket_versioning(self, bucket: str, status: str) -> None:
        common.check_versioning_status(status)
        await asyncio.to_thread(self._db.set_versioning, bucket, status)

    async def list_object_versions(self, bucket: str, prefix: str = "", delimiter: str = "", key_marker: str = "",
                                   version_id_marker: str = "", max_keys: int = 1000) -> VersionListResult:
        def run() -> VersionListResult:
            with self._db.locked():
                seek = self._db.seek_versions(bucket)
                resume = common.resumes_inside(key_marker, version_id_marker, prefix, delimiter)
                first = self._db.versions_after(bucket, key_marker, version_id_marker) if resume else []
                page = list_page(seek, prefix, delimiter, key_marker, max_keys, first)
            return common.version_list_result(page)

        return await asyncio.to_thread(run)

    async def get_object_tagging(self, bucket: str, key: str, version_id: str | None = None) -> list[tuple[str, str]]:
        def run() -> list[tuple[str, str]]:
            with self._db.locked():
                return self._db.get(bucket, key, version_id)[0].tags

        return await asyncio.to_thread(run)

    async def put_object_tagging(self, bucket: str, key: str, tags: Sequence[tuple[str, str]],
                                 version_id: str | None = None) -> None:
        await asyncio.to_thread(self._db.set_tags, bucket, key, version_id, tags)

    async def delete_object_tagging(self, bucket: str, key: str, version_id: str | None = None) -> None:
        await self.put_object_tagging(bucket, key, [], version_id)

    # index helpers

    def _now(self) -> float:
        return common.timestamp(self._clock).timestamp()

    async def _commit_put(self, bucket: str, new: NewVersion, condition: WriteCondition | None = None) -> str | None:
        try:
            vid, garbage = await asyncio.to_thread(self._db.put, bucket, new, condition)
        except BaseException:
            await asyncio.to_thread(self._discard, new.blobs)
            raise
        await asyncio.to_thread(self._discard, garbage)
        return vid

    def _lookup(self, bucket: str, key: str, version_id: str | None, *,
                pin: bool = False) -> tuple[ObjectInfo, Version]:
        """The readable version and its info; with `pin`, its blobs stay on disk until unpinned."""
        with self._db.locked():  # pinning under the lock: no commit (so no unlink of these blobs) slips in first
            row, shown = self._db.get(bucket, key, version_id)
            if pin:
                with self._pin_lock:
                    self._pins.update(name for name, _ in row.blobs)
        return dataclasses.replace(row.info(), version_id=shown), row

    # blob files

    def _blob_path(self, name: str) -> Path:
        return self._root / "blobs" / name[:2] / name

    async def _write_blob(self, body: Body, size: int) -> str:
        """Stream `body` into a new durable blob file; its name."""
        name = common.new_id(self._rand)
        tmp = self._root / "tmp" / name
        f = await asyncio.to_thread(_create, tmp)
        try:
            buf = bytearray()
            async for chunk in common.sized(body, size):
                if not buf and len(chunk) >= self._chunk:
                    await asyncio.to_thread(f.write, chunk)  # big pieces go straight through, uncopied
                    continue
                buf += chunk
                if len(buf) >= self._chunk:
                    await asyncio.to_thread(f.write, buf)
                    buf = bytearray()
            await asyncio.to_thread(self._seal, f, bytes(buf), tmp, self._blob_path(name))
        except BaseException:
            await asyncio.to_thread(_abandon, f, tmp)
            raise
        return name

    def _seal(self, f: BinaryIO, tail: bytes, tmp: Path, dst: Path) -> None:
        f.write(tail)
        f.flush()
        if self._fsync:
            os.fsync(f.fileno())
        f.close()
        make_dir(dst.parent)
        os.replace(tmp, dst)
        if self._fsync:
            _fsync_dir(dst.parent)

    async def _read(self, blobs: Blobs, start: int, end: int) -> AsyncIterator[bytes]:
        """The bytes start..end (inclusive) of the concatenated blobs, ~1 MiB per worker call."""
        offset = 0
        for name, size in blobs:
            lo, hi = max(start - offset, 0), min(end - offset, size - 1)
            offset += size
            if lo > hi:
                continue
            fd = await asyncio.to_thread(os.open, self._blob_path(name), os.O_RDONLY)
            try:
                if os.fstat(fd).st_size != size:  # grown or cut behind the index's back: damaged at rest
                    raise errors.InternalError("A stored blob's size differs from its index; the object is damaged.")
                while lo <= hi:
                    data = await asyncio.to_thread(os.pread, fd, min(self._chunk, hi - lo + 1), lo)
                    if not data:
                        raise errors.InternalError("A stored blob is shorter than its index says.")
                    lo += len(data)
                    yield data
            finally:
                os.close(fd)

    def _link_all(self, blobs: Blobs) -> Blobs:
        copies: Blobs = []
        try:
            for name, size in blobs:
                new = common.new_id(self._rand)
                _link_or_copy(self._blob_path(name), self._blob_path(new), self._fsync)
                copies.append((new, size))
        except BaseException:
            self._discard(copies)
            raise
        return copies

    def _unpin(self, blobs: Blobs) -> None:
        doomed: list[str] = []
        with self._pin_lock:
            for name, _ in blobs:
                self._pins[name] -= 1
                if self._pins[name] <= 0:
                    del self._pins[name]
                    if name in self._doomed:
                        self._doomed.discard(name)
                        doomed.append(name)
        for name in doomed:
            self._blob_path(name).unlink(missing_ok=True)

    def _discard(self, blobs: Blobs) -> None:
        """Unlink blobs no row names any more, deferring those being read."""
        with self._pin_lock:
            now = [name for name, _ in blobs if not self._pins[name]]
            self._doomed.update(name for name, _ in blobs if self._pins[name])
        for name in now:
            self._blob_path(name).unlink(missing_ok=True)


def _stored_meta(meta: ObjectMeta) -> ObjectMeta:
    return dataclasses.replace(meta, tagging=None)


def _abandon(f: BinaryIO, tmp: Path) -> None:
    f.close()
    tmp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(path: Path) -> BinaryIO:
    return os.fdopen(open_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb")


def _link_or_copy(src: Path, dst: Path, fsync: bool) -> None:
    make_dir(dst.parent)
    try:
        os.link(src, dst)  # the same inode: the source's 0600 mode
    except OSError:
        with open(src, "rb") as source, _create(dst) as target:
            shutil.copyfileobj(source, target, CHUNK)
            if fsync:
                target.flush()
                os.fsync(target.fileno())
    if fsync:
        _fsync_dir(dst.parent)
