"""InternalRecords over the in-memory backend: JSON records in one hidden bucket, cached briefly (the
immutable ones for good), invalidated locally on change, refused when damaged."""

from __future__ import annotations

import pytest

from s3proxy import errors
from s3proxy.backends.base import ObjectMeta
from s3proxy.internal import InternalRecords
from tests.twins import MemoryBackend


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def write_behind(backend: MemoryBackend, name: str, data: bytes) -> None:
    """Another proxy (or anyone with the backend) writes the record."""

    async def one():
        yield data

    await backend.put_object("hidden", name, one(), len(data), ObjectMeta())


async def test_a_record_round_trips_and_the_bucket_is_made_once() -> None:
    backend = MemoryBackend()
    records = InternalRecords(backend, "hidden")
    assert await records.get("missing") is None  # no bucket yet: nothing, not an error
    await records.put("bucket-encryption/b", {"algorithm": "AES256", "blocked": ["SSE-C"]})
    await records.put("uploads/u", {"n": 1})
    assert [b.name for b in await backend.list_buckets()] == ["hidden"]
    assert await records.get("bucket-encryption/b", fresh=True) == {"algorithm": "AES256", "blocked": ["SSE-C"]}
    await records.delete("uploads/u")
    await records.delete("uploads/never")  # deleting what is not there is fine
    assert await records.get("uploads/u", fresh=True) is None


async def test_records_are_cached_for_the_ttl_then_read_again() -> None:
    backend, clock = MemoryBackend(), Clock()
    records = InternalRecords(backend, "hidden", ttl=5.0, clock=clock)
    await records.put("bucket-encryption/b", {"v": 1})
    await write_behind(backend, "bucket-encryption/b", b'{"v": 2}')
    assert await records.get("bucket-encryption/b") == {"v": 1}  # young enough: from the cache
    assert await records.get("bucket-encryption/b", fresh=True) == {"v": 2}  # fresh: always the backend
    await write_behind(backend, "bucket-encryption/b", b'{"v": 3}')
    clock.now += 5.0
    assert await records.get("bucket-encryption/b") == {"v": 3}  # past the ttl: read again


async def test_immutable_records_are_cached_for_good_unless_missing() -> None:
    backend, clock = MemoryBackend(), Clock()
    records = InternalRecords(backend, "hidden", ttl=5.0, clock=clock)
    await records.put("parts/p", {"size": "1"})
    await write_behind(backend, "parts/p", b'{"size": "2"}')
    clock.now += 3600
    assert await records.get("parts/p", immutable=True) == {"size": "1"}
    assert await records.get("parts/late", immutable=True) is None
    await write_behind(backend, "parts/late", b'{"size": "3"}')  # written since by another proxy
    assert await records.get("parts/late", immutable=True) is None  # a miss is cached like any record...
    clock.now += 5.0
    assert await records.get("parts/late", immutable=True) == {"size": "3"}  # ...for the ttl, never for good


async def test_a_damaged_record_is_an_internal_error_and_the_cache_is_bounded() -> None:
    backend = MemoryBackend()
    records = InternalRecords(backend, "hidden", max_cached=2)
    await records.put("a", 1)
    await write_behind(backend, "broken", b"{not json")
    with pytest.raises(errors.InternalError) as raised:
        await records.get("broken")
    assert raised.value.text == "An internal record of the proxy is damaged."
    for name in ("b", "c", "d"):
        await records.put(name, name)
    assert len(records._cache) == 2 and list(records._cache) == ["c", "d"]
