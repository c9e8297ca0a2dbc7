"""A ranged read in one backend request (issue 21): `open` with the range fetches the stored bytes a
single-part object of the reader's chunk size needs, together with the metadata; `read` uses them
only when the plan made from the authenticated envelope lies inside, and otherwise reads the planned
bytes with a second GET. Every range of every layout gives exactly the plaintext; the request count
is 1 where the layout was guessed right; a lie at rest still fails before any byte."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections import Counter

import pytest

from s3proxy.backends.base import ObjectMeta
from s3proxy.format.errors import IntegrityError
from s3proxy.format.ranges import ByteRange, RangeNotSatisfiable
from s3proxy.modes.base import ObjectRef
from s3proxy.ops.multipart import MIN_PART_SIZE
from s3proxy.store import ObjectStore
from tests.twins import World, ssec_headers

from .helpers import data_of, drain, modes, put
from .test_multipart import upload_part

KEY = bytes(range(32))
REF = ObjectRef("b", "obj")
MODES = {
    "sse-s3": ({"x-amz-server-side-encryption": "AES256"}, {}),
    "sse-kms": ({"x-amz-server-side-encryption": "aws:kms"}, {}),
    "sse-c": (ssec_headers(KEY), ssec_headers(KEY)),
}


def counted(world: World) -> Counter:
    """Requests to the backend about bucket "b" (the internal records' bucket is not counted)."""
    seen: Counter = Counter()
    for name in ("get_object", "head_object"):
        real = getattr(world.backend, name)

        def wrapped(bucket, *args, _real=real, _name=name, **kwargs):
            if bucket == REF.bucket:
                seen[_name] += 1
            return _real(bucket, *args, **kwargs)

        setattr(world.backend, name, wrapped)
    return seen


def reader(world: World, chunk_size: int) -> ObjectStore:
    """A second proxy's store over the same backend and keys, configured with another chunk size."""
    other = copy.copy(world.store)
    other.chunk_size = chunk_size
    return other


async def ranged(store: ObjectStore, world: World, byte_range: ByteRange, headers: dict, ref: ObjectRef = REF) -> bytes:
    opened = await store.open(ref, modes(world, headers), byte_range=byte_range)
    got = await store.read(opened, byte_range=byte_range)
    return await drain(got.body)


def expected(data: bytes, byte_range: ByteRange) -> bytes | None:
    """What S3 answers for `byte_range` of `data`; None for 416."""
    try:
        first, last = byte_range.resolve(len(data))
    except RangeNotSatisfiable:
        return None
    return data[first:last + 1]


SIZE = 5 * 2048 + 17  # five full 2 KiB chunks (ten of 1 KiB) and a short one
POINTS = (0, 1, 1023, 1024, 1025, 2047, 2048, 5119, 5120, 10239, 10240, SIZE - 1, SIZE, SIZE + 1, SIZE + 5000)
RANGES = ([ByteRange(a, b) for a, b in itertools.combinations_with_replacement(POINTS, 2)]
          + [ByteRange(a, None) for a in POINTS] + [ByteRange(None, n) for n in (*POINTS, 16, 17, 18, 1041)])


@pytest.mark.parametrize(("written", "read"), [(1024, 1024), (2048, 2048), (1024, 2048), (2048, 1024)])
async def test_every_range_of_a_single_part_object_in_one_request_when_the_chunk_size_is_the_readers(
        world: World, written: int, read: int) -> None:
    await world.buckets.create("b", "000000000000")
    data = data_of(SIZE)
    await put_with(reader(world, written), world, data)
    store = reader(world, read)
    seen = counted(world)
    for byte_range in RANGES:
        seen.clear()
        want = expected(data, byte_range)
        if want is None:
            with pytest.raises(RangeNotSatisfiable):
                await ranged(store, world, byte_range, {})
            # no stored byte at the guessed offset: the backend's InvalidRange, then a HEAD
            assert sum(seen.values()) in (1, 2), (byte_range, seen)
            continue
        assert await ranged(store, world, byte_range, {}) == want, byte_range
        if written == read:
            assert seen == Counter(get_object=1), (byte_range, seen)
        else:  # the plan may lie outside the guess: one more GET of exactly the planned bytes (after a
            # HEAD if the guess started past the stored end)
            assert seen in (Counter(get_object=1), Counter(get_object=2), Counter(get_object=2, head_object=1)), \
                (byte_range, seen)


async def put_with(store: ObjectStore, world: World, data: bytes) -> None:
    """PutObject (SSE-KMS) of REF through `store`."""
    saved = world.store
    world.store = store
    try:
        await put(world, REF, data, {"x-amz-server-side-encryption": "aws:kms"})
    finally:
        world.store = saved


@pytest.mark.parametrize("mode", list(MODES))
async def test_each_mode_reads_a_range_in_one_request(world: World, mode: str) -> None:
    write, read = MODES[mode]
    await world.buckets.create("b", "000000000000")
    data = data_of(SIZE)
    await put(world, REF, data, write)
    seen = counted(world)
    for byte_range in (ByteRange(1000, 3100), ByteRange(None, 5), ByteRange(SIZE - 1, None), ByteRange(0, SIZE + 100)):
        seen.clear()
        assert await ranged(world.store, world, byte_range, read) == expected(data, byte_range)
        assert seen == Counter(get_object=1), (mode, byte_range, seen)


async def test_a_multipart_range_costs_one_request_inside_the_first_part_and_two_after_it(world: World) -> None:
    await world.buckets.create("b", "000000000000")
    ref = ObjectRef("b", "mpu")
    upload_id, _ = await world.uploads.create(ref, ObjectMeta(), modes(world))
    upload = await world.uploads.open(ref, upload_id, modes(world))
    part1, part2 = data_of(MIN_PART_SIZE + 3), data_of(1501)
    etags = [await upload_part(world, upload, 1, part1), await upload_part(world, upload, 2, part2)]
    await world.uploads.complete(ref, upload_id, [(1, etags[0]), (2, etags[1])], modes(world), min_part_size=MIN_PART_SIZE)
    data, n = part1 + part2, len(part1)
    seen = counted(world)
    # the guess runs to the object's end for a suffix or an open end, so it holds the plan; a range that
    # ends in a later part ends 16 bytes later per part before it (each part's final chunk) than guessed
    for byte_range, requests in ((ByteRange(10, 5000), 1), (ByteRange(0, n - 1), 1), (ByteRange(None, 100), 1),
                                 (ByteRange(n + 1, None), 1), (ByteRange(0, None), 1),
                                 (ByteRange(n - 10, n + 20), 2), (ByteRange(n + 1, n + 1000), 2)):
        seen.clear()
        assert await ranged(world.store, world, byte_range, {}, ref) == expected(data, byte_range), byte_range
        assert seen == Counter(get_object=requests), (byte_range, seen)


@pytest.mark.parametrize("byte_range", [ByteRange(10, 20), ByteRange(None, 5), ByteRange(SIZE - 3, None)])
async def test_a_lie_at_rest_still_fails_the_one_request_read(world: World, byte_range: ByteRange) -> None:
    await world.buckets.create("b", "000000000000")
    await put(world, REF, data_of(SIZE), {"x-amz-server-side-encryption": "aws:kms"})
    got = await world.backend.get_object("b", REF.key)
    stored = await drain(got.body)
    meta = got.info.meta

    async def one(data: bytes):
        yield data

    # cut one byte off the end (the trailer-less object's final chunk): the size no longer matches
    await world.backend.put_object("b", REF.key, one(stored[:-1]), len(stored) - 1, meta)
    with pytest.raises(IntegrityError):
        await ranged(world.store, world, byte_range, {})
    # a flipped byte inside the chunks read: the chunk's tag fails, no byte of it released
    flipped = bytearray(stored)
    flipped[-20] ^= 1  # the final chunk, which every range here reads
    flipped[20] ^= 1  # the first chunk
    await world.backend.put_object("b", REF.key, one(bytes(flipped)), len(stored), meta)
    with pytest.raises(IntegrityError):
        await ranged(world.store, world, byte_range, {})
    # an edited metadata value: the metadata MAC fails in open
    edited = dataclasses.replace(meta, metadata={**meta.metadata, "s3proxy-size": str(SIZE - 1)})
    await world.backend.put_object("b", REF.key, one(stored), len(stored), edited)
    with pytest.raises(IntegrityError):
        await ranged(world.store, world, byte_range, {})
