"""InternalRecords over the in-memory backend: sealed JSON records in one hidden bucket, bound to
their name and bucket, cached briefly (the write-once ones for good), bucket records numbered and
anchored in the keystore; anything edited, moved or rolled back is refused."""

from __future__ import annotations

import pytest

from s3proxy.backends.base import ObjectMeta
from s3proxy.format.errors import IntegrityError
from s3proxy.format.records import SHARED
from s3proxy.internal import InternalRecords
from tests.twins import MemoryBackend
from tests.twins.keys import memory_data_keys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def records_on(backend: MemoryBackend, **kwargs) -> InternalRecords:
    """Records as a proxy opens them: IK and the anchors from its key service's keystore."""
    ring = memory_data_keys().integrity()
    return InternalRecords(backend, "hidden", ik_records=ring.keys().records, anchors=ring, **kwargs)


async def raw(backend: MemoryBackend, name: str) -> bytes:
    got = await backend.get_object("hidden", name)
    return b"".join([piece async for piece in got.body])


async def write_raw(backend: MemoryBackend, name: str, data: bytes) -> None:
    """Whoever holds the backend writes the stored record directly."""

    async def one():
        yield data

    await backend.put_object("hidden", name, one(), len(data), ObjectMeta())


async def test_a_record_round_trips_sealed_and_the_bucket_is_made_once() -> None:
    backend = MemoryBackend()
    records = records_on(backend)
    assert await records.get("missing", SHARED) is None  # no bucket yet: nothing, not an error
    await records.put("uploads/u", "b", {"n": 1, "fields": {"mode": "AES256"}})
    assert [b.name for b in await backend.list_buckets()] == ["hidden"]
    assert b"AES256" not in await raw(backend, "uploads/u")  # sealed, not bare JSON
    found = await records.get("uploads/u", "b", fresh=True)
    assert found is not None and found.value == {"n": 1, "fields": {"mode": "AES256"}} and not found.legacy
    await records.delete("uploads/u")
    await records.delete("uploads/never")  # deleting what is not there is fine
    assert await records.get("uploads/u", "b", fresh=True) is None


async def test_a_record_moved_to_another_name_or_bucket_or_edited_does_not_open() -> None:
    backend = MemoryBackend()
    records = records_on(backend)
    await records.put("uploads/u", "b", {"bucket": "b", "key": "k"})
    data = await raw(backend, "uploads/u")
    with pytest.raises(IntegrityError):
        await records.get("uploads/u", "other", fresh=True)  # bound to the bucket it describes
    await write_raw(backend, "uploads/v", data)
    with pytest.raises(IntegrityError):
        await records.get("uploads/v", "b", fresh=True)  # bound to its name
    await write_raw(backend, "uploads/u", data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(IntegrityError):
        await records.get("uploads/u", "b", fresh=True)
    await write_raw(backend, "uploads/u", b'{"bucket": "b", "key": "k"}')  # a bare (version-1) record
    with pytest.raises(IntegrityError):
        await records.get("uploads/u", "b", fresh=True)  # only where the thing it describes is version 1
    assert (await records.get("uploads/u", "b", legacy=True, fresh=True)).legacy


async def test_records_are_cached_for_the_ttl_then_read_again() -> None:
    backend, clock = MemoryBackend(), Clock()
    records = records_on(backend, ttl=5.0, clock=clock)
    other = InternalRecords(backend, "hidden", ik_records=records._key, anchors=records._anchors)  # another proxy
    await records.put("uploads/u", "b", {"v": 1})
    await other.put("uploads/u", "b", {"v": 2})
    assert (await records.get("uploads/u", "b")).value == {"v": 1}  # young enough: from the cache
    assert (await records.get("uploads/u", "b", fresh=True)).value == {"v": 2}  # fresh: always the backend
    await other.put("uploads/u", "b", {"v": 3})
    clock.now += 5.0
    assert (await records.get("uploads/u", "b")).value == {"v": 3}  # past the ttl: read again


async def test_immutable_records_are_cached_for_good_unless_missing() -> None:
    backend, clock = MemoryBackend(), Clock()
    records = records_on(backend, ttl=5.0, clock=clock)
    other = InternalRecords(backend, "hidden", ik_records=records._key, anchors=records._anchors)
    await records.put("parts/p", SHARED, {"size": "1"})
    await other.put("parts/p", SHARED, {"size": "2"})
    clock.now += 3600
    assert (await records.get("parts/p", SHARED, immutable=True)).value == {"size": "1"}
    assert await records.get("parts/late", SHARED, immutable=True) is None
    await other.put("parts/late", SHARED, {"size": "3"})  # written since by another proxy
    assert await records.get("parts/late", SHARED, immutable=True) is None  # a miss is cached like any record...
    clock.now += 5.0
    assert (await records.get("parts/late", SHARED, immutable=True)).value == {"size": "3"}  # ...for the ttl only


async def test_bucket_records_are_anchored_so_a_replay_or_a_deletion_is_refused() -> None:
    backend, clock = MemoryBackend(), Clock()
    records = records_on(backend, ttl=5.0, clock=clock)
    await records.put_bucket_record("bucket-policy", "b", {"policy": "one"})
    first = await raw(backend, "bucket-policy/b")
    await records.put_bucket_record("bucket-policy", "b", {"policy": "two"})
    clock.now += 5.0
    assert await records.bucket_record("bucket-policy", "b") == {"policy": "two"}
    await write_raw(backend, "bucket-policy/b", first)  # the older generation, validly sealed
    clock.now += 5.0
    with pytest.raises(IntegrityError):
        await records.bucket_record("bucket-policy", "b")
    await backend.delete_object("hidden", "bucket-policy/b")  # deleted while anchored
    with pytest.raises(IntegrityError):
        await records.bucket_record("bucket-policy", "b")
    await records.put_bucket_record("bucket-policy", "b", None)  # a deletion through the proxy is a tombstone
    clock.now += 5.0
    assert await records.bucket_record("bucket-policy", "b") is None
    await records.forget_bucket_record("bucket-owner", "never")  # nothing recorded, nothing anchored: nothing written
    assert await records.bucket_record("bucket-owner", "never") is None
    assert "bucket-owner/never" not in [o.key for o in (await backend.list_objects("hidden", "")).objects]


async def test_the_cache_is_bounded() -> None:
    records = records_on(MemoryBackend(), max_cached=2)
    for name in ("a", "b", "c", "d"):
        await records.put(name, SHARED, {"n": name})
    assert list(records._cache) == ["c", "d"]
