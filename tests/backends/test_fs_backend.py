"""What only the fs backend promises: keys never touch paths, crash safety, bounded memory, concurrency."""

from __future__ import annotations

import asyncio
import os
import re
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from s3proxy import errors
from s3proxy.backends.base import ObjectMeta
from s3proxy.backends.fs import FsBackend
from tests.backends.test_backend_contract import body_of, read

MIB = 1024 * 1024
BLOB_NAME = re.compile(r"[0-9a-f]{32}")

HOSTILE_KEYS = [
    "../escape",  # relative traversal
    "../../../../../../tmp/escape",  # deep traversal
    "/etc/passwd",  # absolute path
    "a\x00b",  # NUL truncates C strings
    "index.sqlite3",  # the name of an internal file
    "blobs/00/" + "0" * 32,  # the shape of an internal blob path
    "tmp/x",  # the temp folder
    "..\\..\\windows",  # backslashes
    "x" * 1024,  # the longest S3 key: longer than NAME_MAX
    "é" * 512,  # 1024 UTF-8 bytes
    "a/./b/../c",
    "\n\r\t",  # control characters
]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def blobs(root: Path) -> list[Path]:
    return sorted((root / "blobs").glob("*/*"))


async def test_hostile_keys_stay_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "store"
    fs = FsBackend(root, fsync=False)
    await fs.start()
    try:
        await fs.create_bucket("../bucket")  # the proxy validates bucket names; the backend still never uses them
        for key in HOSTILE_KEYS:
            await fs.put_object("../bucket", key, body_of(key.encode()), len(key.encode()), ObjectMeta())
        for key in HOSTILE_KEYS:
            assert await read(await fs.get_object("../bucket", key)) == key.encode()
        listed = [o.key for o in (await fs.list_objects("../bucket")).objects]
        assert listed == sorted(HOSTILE_KEYS, key=lambda k: k.encode())
    finally:
        await fs.close()
    assert sorted(os.listdir(tmp_path)) == ["store"]  # nothing escaped
    for name in files_under(root):
        assert name.startswith("index.sqlite3") or re.fullmatch(r"blobs/[0-9a-f]{2}/[0-9a-f]{32}", name), name
    assert len(blobs(root)) == len(HOSTILE_KEYS)
    assert os.listdir(root / "tmp") == []


async def test_objects_survive_a_restart(tmp_path: Path) -> None:
    fs = FsBackend(tmp_path)
    await fs.start()
    await fs.create_bucket("b")
    await fs.put_object("b", "k", body_of(b"durable"), 7, ObjectMeta({"m": "1"}))
    await fs.close()
    again = FsBackend(tmp_path)
    await again.start()
    try:
        got = await again.get_object("b", "k")
        assert await read(got) == b"durable"
        assert dict(got.info.meta.metadata) == {"m": "1"}
    finally:
        await again.close()


async def failing_body(data: bytes, fail_after: int) -> AsyncIterator[bytes]:
    yield data[:fail_after]
    raise ConnectionResetError("client went away")


async def test_broken_put_leaves_the_old_object_and_no_temp_files(tmp_path: Path) -> None:
    fs = FsBackend(tmp_path, chunk_size=1024)
    await fs.start()
    try:
        await fs.create_bucket("b")
        await fs.put_object("b", "k", body_of(b"old"), 3, ObjectMeta())
        with pytest.raises(ConnectionResetError):
            await fs.put_object("b", "k", failing_body(b"n" * 10_000, 5000), 10_000, ObjectMeta())
        with pytest.raises(errors.IncompleteBody):  # a body shorter than its declared size
            await fs.put_object("b", "k", body_of(b"short"), 10, ObjectMeta())
        with pytest.raises(errors.IncompleteBody):  # and one longer
            await fs.put_object("b", "k", body_of(b"too long"), 3, ObjectMeta())
        assert await read(await fs.get_object("b", "k")) == b"old"
        assert os.listdir(tmp_path / "tmp") == []
        assert len(blobs(tmp_path)) == 1
    finally:
        await fs.close()


async def test_start_sweeps_orphans_of_a_crash(tmp_path: Path) -> None:
    fs = FsBackend(tmp_path)
    await fs.start()
    await fs.create_bucket("b")
    await fs.put_object("b", "k", body_of(b"kept"), 4, ObjectMeta())
    upload = await fs.create_multipart("b", "m", ObjectMeta())
    await fs.upload_part("b", "m", upload, 1, body_of(b"part"), 4)
    await fs.close()
    # a crash between rename and commit leaves a blob no row names; one mid-write leaves a temp file
    orphan = tmp_path / "blobs" / "ab" / ("ab" + "1" * 30)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"orphan")
    (tmp_path / "tmp" / "half-written").write_bytes(b"half")
    again = FsBackend(tmp_path)
    await again.start()
    try:
        assert not orphan.exists()
        assert os.listdir(tmp_path / "tmp") == []
        assert len(blobs(tmp_path)) == 2  # the object and the part
        assert await read(await again.get_object("b", "k")) == b"kept"
        assert [p.size for p in await again.list_parts("b", "m", upload)] == [4]
    finally:
        await again.close()


async def test_concurrent_puts_to_one_key_end_in_one_whole_object(tmp_path: Path) -> None:
    fs = FsBackend(tmp_path, fsync=False, chunk_size=64 * 1024)
    await fs.start()
    try:
        await fs.create_bucket("b")
        bodies = [bytes([n]) * (MIB + n) for n in range(8)]
        await asyncio.gather(*(fs.put_object("b", "k", body_of(d, 100_000), len(d), ObjectMeta()) for d in bodies))
        assert await read(await fs.get_object("b", "k")) in bodies
        assert len(blobs(tmp_path)) == 1
    finally:
        await fs.close()


async def test_a_read_survives_a_concurrent_overwrite_and_delete(tmp_path: Path) -> None:
    fs = FsBackend(tmp_path, fsync=False, chunk_size=1024)
    await fs.start()
    try:
        await fs.create_bucket("b")
        await fs.put_object("b", "k", body_of(b"a" * 5000), 5000, ObjectMeta())
        reading = await fs.get_object("b", "k")
        first = await reading.body.__anext__()
        await fs.put_object("b", "k", body_of(b"new"), 3, ObjectMeta())
        await fs.delete_object("b", "k")
        rest = await read(reading)
        assert first + rest == b"a" * 5000
        assert blobs(tmp_path) == []  # the pinned blob went once the read ended
    finally:
        await fs.close()


async def test_an_unread_body_does_not_keep_its_blob_forever(tmp_path: Path) -> None:
    fs = FsBackend(tmp_path, fsync=False)
    await fs.start()
    try:
        await fs.create_bucket("b")
        await fs.put_object("b", "k", body_of(b"data"), 4, ObjectMeta())
        closed = await fs.get_object("b", "k")
        dropped = await fs.get_object("b", "k")
        await fs.delete_object("b", "k")
        assert len(blobs(tmp_path)) == 1  # pinned by the two open bodies
        await closed.body.aclose()  # type: ignore[attr-defined]
        assert len(blobs(tmp_path)) == 1
        del dropped
        assert blobs(tmp_path) == []
    finally:
        await fs.close()


async def test_copy_and_complete_do_not_copy_bytes(tmp_path: Path) -> None:
    fs = FsBackend(tmp_path, fsync=False, min_part_size=1)
    await fs.start()
    try:
        await fs.create_bucket("b")
        upload = await fs.create_multipart("b", "m", ObjectMeta())
        etags = [await fs.upload_part("b", "m", upload, n, body_of(b"p%d" % n), 2) for n in (1, 2)]
        await fs.complete_multipart("b", "m", upload, list(zip((1, 2), etags, strict=True)))
        parts_on_disk = blobs(tmp_path)
        assert len(parts_on_disk) == 2  # the object is its parts, in order
        await fs.copy_object("b", "m", "b", "c", ObjectMeta())
        assert await read(await fs.get_object("b", "c")) == b"p1p2"
        assert all(p.stat().st_nlink == 2 for p in parts_on_disk)  # hard links, not copies
    finally:
        await fs.close()


async def test_large_streamed_body_keeps_memory_flat(tmp_path: Path) -> None:
    size = 256 * MIB
    piece = b"\xa5" * MIB

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // MIB):
            yield piece

    fs = FsBackend(tmp_path, fsync=False)
    await fs.start()
    try:
        await fs.create_bucket("b")
        tracemalloc.start()
        try:
            await fs.put_object("b", "big", body(), size, ObjectMeta())
            seen = 0
            async for chunk in (await fs.get_object("b", "big")).body:
                seen += len(chunk)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert seen == size
        assert peak < 16 * MIB, f"peak {peak / MIB:.1f} MiB for a {size // MIB} MiB object"
    finally:
        await fs.close()


async def test_not_started_is_an_s3_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ServiceUnavailable):
        await FsBackend(tmp_path).list_buckets()
