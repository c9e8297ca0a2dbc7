"""Records the proxy keeps in the backend itself, in one hidden bucket, so every proxy in front of
the same backend sees them and losing a proxy loses nothing.

    bucket-encryption/<bucket>   a bucket's default encryption (a bucket record: generations, anchored)
    uploads/<upload id>          an open multipart upload's mode fields and chunk size
    uploads/<upload id>/<n>      one uploaded part's client ETag and backend ETag
    parts/<mpu id>               a completed multipart object's size, part list, envelope MAC and ETag

Every record is sealed under IK_records and bound to its name and to the bucket it describes
(docs/FORMAT.md §15, format/records.py): an edited record, or one moved to another name or
bucket, fails to open. A bucket record also carries a generation, and the latest one is anchored
in the KMS keystore (`Anchors`, kms/integrity.py), out of the backend holder's reach: a record
older than its anchor (a replay), or missing while anchored (a deletion), is an integrity failure,
never read as "no configuration". Deleting a configuration writes a tombstone of the next
generation. The other records are written once under names that are never reused.

Version-1 records (bare JSON, written before format 2) are read only where the setting
`read_format_v1` allows and only for what is itself version 1 (`legacy=True`); a version-1 bucket
record is re-sealed as generation 1 the first time it is read (FORMAT.md §19.2).

Clients cannot reach the hidden bucket. Write-once records are cached without expiry; bucket
records briefly, and invalidated locally on change.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from . import errors
from .backends.base import Backend, ObjectMeta
from .format.errors import IntegrityError
from .format.records import Record, check_generation, is_legacy_record, open_legacy_record, open_record, seal_record

log = logging.getLogger("s3proxy.internal")

BUCKET_ENCRYPTION = "bucket-encryption"


class Anchors(Protocol):
    """The latest generation of each bucket record, kept where the backend holder cannot write
    (kms.integrity.IntegrityRing). Blocking calls: the records run them in a worker thread."""

    def anchor(self, name: str) -> int: ...

    def advance(self, name: str, generation: int) -> int: ...


@dataclass(frozen=True)
class Found:
    """An opened record: its JSON value, its generation, and whether it was a version-1 bare record."""

    value: dict[str, Any]
    generation: int = 0
    legacy: bool = False


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class InternalRecords:
    def __init__(self, backend: Backend, bucket: str, *, ik_records: bytes, anchors: Anchors, read_v1: bool = True,
                 ttl: float = 5.0, clock: Callable[[], float] = time.monotonic, max_cached: int = 10000) -> None:
        self.backend = backend
        self.bucket = bucket
        self.ttl = ttl
        self.clock = clock
        self.max_cached = max_cached
        self.read_v1 = read_v1
        self._key = ik_records
        self._anchors = anchors
        self._ready = False
        self._cache: OrderedDict[str, tuple[float, Found | None]] = OrderedDict()

    def __repr__(self) -> str:
        return f"InternalRecords({self.bucket!r})"

    async def ensure_bucket(self) -> None:
        if self._ready:
            return
        try:
            await self.backend.create_bucket(self.bucket)
        except (errors.BucketAlreadyOwnedByYou, errors.BucketAlreadyExists):
            pass
        self._ready = True

    # write-once records ----------------------------------------------------------------------------
    async def put(self, name: str, bucket: str, value: Mapping[str, Any], *, generation: int = 0) -> None:
        """Seal `value` under `name`, bound to `bucket` (the one it describes; format.records.SHARED for none)."""
        await self.ensure_bucket()
        data = seal_record(self._key, name, bucket, value, generation=generation)
        await self.backend.put_object(self.bucket, name, _one(data), len(data), ObjectMeta())
        self._remember(name, Found(dict(value), generation))

    async def put_legacy(self, name: str, value: Mapping[str, Any]) -> None:
        """A version-1 bare record: only for completing an upload begun in version 1 (its object stays
        version 1 until the upgrade, and version-1 readers find its part list here)."""
        await self.ensure_bucket()
        data = json.dumps(dict(value), separators=(",", ":"), sort_keys=True).encode()
        await self.backend.put_object(self.bucket, name, _one(data), len(data), ObjectMeta())
        self._remember(name, Found(dict(value), 0, legacy=True))

    async def get(self, name: str, bucket: str, *, legacy: bool = False, immutable: bool = False,
                  fresh: bool = False) -> Found | None:
        """The record `name` describing `bucket`, None if absent; IntegrityError if it does not open,
        or is a version-1 record where `legacy` (the thing it describes is version 1) or the
        setting does not allow one. From cache when young enough (`immutable`: any age, unless
        missing; `fresh`: never)."""
        hit = None if fresh else self._cache.get(name)
        if hit is not None and ((immutable and hit[1] is not None) or self.clock() - hit[0] < self.ttl):
            self._cache.move_to_end(name)
            found = hit[1]
        else:
            found = await self._fetch(name, bucket)
            self._remember(name, found)
        if found is not None and found.legacy and not (legacy and self.read_v1):
            raise IntegrityError(f"record:{name}")
        return found

    async def _fetch(self, name: str, bucket: str) -> Found | None:
        try:
            got = await self.backend.get_object(self.bucket, name)
        except (errors.NoSuchKey, errors.NoSuchBucket):
            return None
        data = bytearray()
        async for piece in got.body:
            data += piece
        if is_legacy_record(bytes(data)):
            return Found(open_legacy_record(bytes(data)), 0, legacy=True)
        record = open_record(self._key, name, bucket, bytes(data))
        return Found(record.value, record.generation)

    async def delete(self, name: str) -> None:
        self._cache.pop(name, None)
        try:
            await self.backend.delete_object(self.bucket, name)
        except (errors.NoSuchKey, errors.NoSuchBucket):
            pass

    def _remember(self, name: str, found: Found | None) -> None:
        self._cache[name] = (self.clock(), found)
        self._cache.move_to_end(name)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)

    # bucket records: generations anchored in the keystore --------------------------------------------
    async def bucket_record(self, kind: str, bucket: str) -> dict[str, Any] | None:
        """The bucket's record of `kind` (None: none, or a tombstone). IntegrityError if it was
        edited, moved, rolled back to an older generation, or deleted while anchored."""
        name = f"{kind}/{bucket}"
        hit = self._cache.get(name)
        if hit is not None and self.clock() - hit[0] < self.ttl:
            found = hit[1]
        else:
            found = await self._checked(name, bucket)
            self._remember(name, found)
        return (found.value or None) if found is not None else None

    async def _checked(self, name: str, bucket: str) -> Found | None:
        anchored = await asyncio.to_thread(self._anchors.anchor, name)
        found = await self._fetch(name, bucket)
        if found is not None and found.legacy:
            if anchored or not self.read_v1:  # a bare record where a sealed one was anchored: a rewrite
                raise IntegrityError(f"record:{name}")
            log.warning("re-sealing the version-1 record %s as generation 1 (format 2)", name)
            await self._write_generation(name, bucket, found.value, 1)
            return Found(found.value, 1)
        try:
            checked = check_generation(_record(found), anchored)
        except IntegrityError:
            raise IntegrityError(f"generation:{name}") from None  # deleted while anchored, or rolled back
        if found is not None and found.generation > anchored:  # a writer stopped between record and anchor
            await asyncio.to_thread(self._anchors.advance, name, found.generation)
        return found if checked is not None else None

    async def put_bucket_record(self, kind: str, bucket: str, value: Mapping[str, Any] | None) -> None:
        """Write the bucket's record of `kind` as the next generation (None: a tombstone), then anchor it."""
        name = f"{kind}/{bucket}"
        generation = await asyncio.to_thread(self._anchors.anchor, name)
        try:
            current = await self._fetch(name, bucket)
        except IntegrityError:  # a damaged record is replaced; its generation is unknown, the anchor is not
            current = None
        if current is not None and not current.legacy:
            generation = max(generation, current.generation)
        await self._write_generation(name, bucket, dict(value or {}), generation + 1)

    async def forget_bucket_record(self, kind: str, bucket: str) -> None:
        """A deleted bucket's record: a tombstone if there was a record or an anchor, else nothing."""
        name = f"{kind}/{bucket}"
        if await asyncio.to_thread(self._anchors.anchor, name) == 0:
            try:
                current = await self._fetch(name, bucket)
            except IntegrityError:
                current = Found({})
            if current is None:
                self._cache.pop(name, None)
                return
        await self.put_bucket_record(kind, bucket, None)

    async def buckets_with(self, kind: str) -> set[str]:
        """The buckets that have a record of `kind`, tombstones included, as the backend lists them (a
        superset of those with a live record; a name a backend holder adds or removes here only
        changes which requests read the record itself, which is checked as above)."""
        prefix = f"{kind}/"
        names: set[str] = set()
        after = ""
        while True:
            try:
                page = await self.backend.list_objects(self.bucket, prefix=prefix, after=after)
            except errors.NoSuchBucket:
                return names
            names.update(o.key[len(prefix):] for o in page.objects)
            if not page.is_truncated or not page.objects:
                return names
            after = page.objects[-1].key

    async def _write_generation(self, name: str, bucket: str, value: dict[str, Any], generation: int) -> None:
        await self.put(name, bucket, value, generation=generation)  # the record first, then its anchor (§15)
        await asyncio.to_thread(self._anchors.advance, name, generation)


def _record(found: Found | None) -> Record | None:
    """A Found as format.records.check_generation sees it."""
    return None if found is None else Record(found.generation, found.value)
