"""Records the proxy keeps in the backend itself, in one hidden bucket, so every proxy in front of
the same backend sees them and losing a proxy loses nothing.

    bucket-encryption/<bucket>   a bucket's default encryption (JSON)
    uploads/<upload id>          an open multipart upload's mode fields and chunk size (JSON)
    parts/<mpu id>               a completed multipart object's part list, envelope MAC and ETag (JSON)

Clients cannot reach the hidden bucket. Part lists are immutable (named by a fresh random id that
the object's own metadata carries), so they are cached without expiry; the other records are
cached briefly and invalidated locally on change.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any, AsyncIterator, Callable

from . import errors
from .backends.base import Backend, ObjectMeta


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class InternalRecords:
    def __init__(self, backend: Backend, bucket: str, *, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 max_cached: int = 10000) -> None:
        self.backend = backend
        self.bucket = bucket
        self.ttl = ttl
        self.clock = clock
        self.max_cached = max_cached
        self._ready = False
        self._cache: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    async def ensure_bucket(self) -> None:
        if self._ready:
            return
        try:
            await self.backend.create_bucket(self.bucket)
        except (errors.BucketAlreadyOwnedByYou, errors.BucketAlreadyExists):
            pass
        self._ready = True

    async def put(self, name: str, value: Any) -> None:
        await self.ensure_bucket()
        data = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        await self.backend.put_object(self.bucket, name, _one(data), len(data), ObjectMeta())
        self._remember(name, value)

    async def get(self, name: str, *, immutable: bool = False, fresh: bool = False) -> Any | None:
        """The record, from cache when young enough (`immutable`: any age, unless missing; `fresh`: never)."""
        hit = None if fresh else self._cache.get(name)
        if hit is not None and ((immutable and hit[1] is not None) or self.clock() - hit[0] < self.ttl):
            self._cache.move_to_end(name)
            return hit[1]
        try:
            got = await self.backend.get_object(self.bucket, name)
        except (errors.NoSuchKey, errors.NoSuchBucket):
            self._remember(name, None)
            return None
        data = bytearray()
        async for piece in got.body:
            data += piece
        try:
            value = json.loads(bytes(data))
        except ValueError:
            raise errors.InternalError("An internal record of the proxy is damaged.") from None
        self._remember(name, value)
        return value

    async def delete(self, name: str) -> None:
        self._cache.pop(name, None)
        try:
            await self.backend.delete_object(self.bucket, name)
        except (errors.NoSuchKey, errors.NoSuchBucket):
            pass

    def _remember(self, name: str, value: Any) -> None:
        self._cache[name] = (self.clock(), value)
        self._cache.move_to_end(name)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
