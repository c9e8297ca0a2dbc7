"""The Backend contract, run against every backend: fs, memory, and S3 in front of a real moto server."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest

from s3proxy import errors
from s3proxy.backends.base import Backend, GetResult, ObjectMeta, WriteCondition
from s3proxy.backends.s3 import S3Backend

MIB = 1024 * 1024
PART = 5 * MIB  # S3's (and moto's) minimum size of every part but the last

# keys that break naive backends; each row says why
TRICKY_KEYS = [
    "a",  # a file ...
    "a/b",  # ... and a "directory" of the same name
    "a/b/c",
    "a-b",  # '-' sorts before '/'
    "a0",  # '0' sorts after '/'
    "..",  # path traversal on a naive fs
    ".",
    "a//b",  # empty path segment
    "dir/",  # ends with the delimiter
    "100% sure",  # percent and space
    "plus+sign",  # '+' is a space in form encoding
    "q?uery#frag",  # URL syntax characters
    "ünïcödé/日本",  # multi-byte UTF-8
    "emoji 😀",  # 4-byte UTF-8 (sorts after every BMP key)
    "ﬀ",  # U+FB00: above the surrogate range, below emoji
]


def on_moto(backend: Backend) -> bool:
    """The S3 backend here always talks to moto, which differs from AWS in a few documented places."""
    return isinstance(backend, S3Backend)


async def body_of(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    for at in range(0, len(data), piece):
        yield data[at : at + piece]


async def read(result: GetResult) -> bytes:
    return b"".join([chunk async for chunk in result.body])


async def put(b: Backend, bucket: str, key: str, data: bytes, meta: ObjectMeta | None = None) -> str:
    return (await b.put_object(bucket, key, body_of(data), len(data), meta or ObjectMeta())).etag


async def bucket_with(b: Backend, keys: list[str]) -> str:
    bucket = f"b-{uuid.uuid4().hex[:20]}"
    await b.create_bucket(bucket)
    for key in keys:
        await put(b, bucket, key, key.encode())
    return bucket


# buckets


async def test_bucket_lifecycle(backend: Backend, unique_bucket: str) -> None:
    with pytest.raises(errors.NoSuchBucket):
        await backend.head_bucket(unique_bucket)
    await backend.create_bucket(unique_bucket)
    await backend.head_bucket(unique_bucket)
    assert unique_bucket in [b.name for b in await backend.list_buckets()]
    created = next(b.created for b in await backend.list_buckets() if b.name == unique_bucket)
    assert created.tzinfo is not None
    with pytest.raises(errors.BucketAlreadyOwnedByYou):
        await backend.create_bucket(unique_bucket)
    await put(backend, unique_bucket, "k", b"x")
    with pytest.raises(errors.BucketNotEmpty):
        await backend.delete_bucket(unique_bucket)
    await backend.delete_object(unique_bucket, "k")
    await backend.delete_bucket(unique_bucket)
    with pytest.raises(errors.NoSuchBucket):
        await backend.delete_bucket(unique_bucket)
    assert unique_bucket not in [b.name for b in await backend.list_buckets()]


async def test_missing_bucket_errors(backend: Backend, unique_bucket: str) -> None:
    with pytest.raises(errors.NoSuchBucket):
        await put(backend, unique_bucket, "k", b"x")
    with pytest.raises(errors.NoSuchBucket):
        await backend.list_objects(unique_bucket)
    with pytest.raises(errors.NoSuchBucket):
        await backend.create_multipart(unique_bucket, "k", ObjectMeta())


# objects


async def test_put_get_head_roundtrip_with_metadata(backend: Backend, unique_bucket: str) -> None:
    await backend.create_bucket(unique_bucket)
    data = bytes(range(256)) * 5000  # 1.2 MiB: several chunks
    meta = ObjectMeta({"envelope": "abc=", "x-y": "1"}, {"content-type": "text/plain", "cache-control": "no-cache"})
    etag = await put(backend, unique_bucket, "k", data, meta)
    assert etag
    got = await backend.get_object(unique_bucket, "k")
    assert await read(got) == data
    assert got.range is None
    info = await backend.head_object(unique_bucket, "k")
    for i in (got.info, info):
        assert (i.key, i.size, i.etag) == ("k", len(data), etag)
        assert dict(i.meta.metadata) == {"envelope": "abc=", "x-y": "1"}
        assert i.meta.headers["content-type"] == "text/plain"
        assert i.meta.headers["cache-control"] == "no-cache"
        assert abs(i.last_modified - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


async def test_empty_object(backend: Backend, unique_bucket: str) -> None:
    await backend.create_bucket(unique_bucket)
    await put(backend, unique_bucket, "empty", b"")
    assert await read(await backend.get_object(unique_bucket, "empty")) == b""
    assert (await backend.head_object(unique_bucket, "empty")).size == 0


async def test_overwrite_replaces_bytes_and_metadata(backend: Backend, unique_bucket: str) -> None:
    await backend.create_bucket(unique_bucket)
    await put(backend, unique_bucket, "k", b"old" * 1000, ObjectMeta({"v": "1"}))
    await put(backend, unique_bucket, "k", b"new", ObjectMeta({"w": "2"}))
    got = await backend.get_object(unique_bucket, "k")
    assert await read(got) == b"new"
    assert dict(got.info.meta.metadata) == {"w": "2"}


@pytest.mark.parametrize(
    "start,end",
    [
        (0, 0),  # first byte
        (0, 99_999),  # whole object as a range
        (99_999, 99_999),  # last byte
        (1000, 70_000),  # crosses a 64 KiB write piece
    ],
)
async def test_ranges(backend: Backend, unique_bucket: str, start: int, end: int) -> None:
    await backend.create_bucket(unique_bucket)
    data = bytes(i * 7 % 251 for i in range(100_000))
    await put(backend, unique_bucket, "k", data)
    got = await backend.get_object(unique_bucket, "k", range=(start, end))
    assert await read(got) == data[start : end + 1]
    assert got.range == (start, end)
    assert got.info.size == len(data)


@pytest.mark.parametrize(
    "asked,returned",
    [
        ((99_990, 200_000), (99_990, 99_999)),  # a last byte past the end: clamped
        ((99_990, None), (99_990, 99_999)),  # open-ended
        ((None, 10), (99_990, 99_999)),  # a suffix
        ((None, 500_000), (0, 99_999)),  # a suffix longer than the object: all of it
    ],
)
async def test_ranges_are_clamped_as_s3_clamps_them(backend: Backend, unique_bucket: str, asked, returned) -> None:
    """What the store's one-request ranged read relies on (issue 21): it asks before it knows the size."""
    await backend.create_bucket(unique_bucket)
    data = bytes(i * 7 % 251 for i in range(100_000))
    await put(backend, unique_bucket, "k", data)
    got = await backend.get_object(unique_bucket, "k", range=asked)
    assert await read(got) == data[returned[0] : returned[1] + 1]
    assert got.range == returned and got.info.size == len(data)
    with pytest.raises(errors.S3Error) as caught:
        await backend.get_object(unique_bucket, "k", range=(100_000, None))  # no byte there
    assert caught.value.code == "InvalidRange"


async def test_missing_key_errors(backend: Backend, unique_bucket: str) -> None:
    await backend.create_bucket(unique_bucket)
    with pytest.raises(errors.NoSuchKey):
        await backend.get_object(unique_bucket, "nope")
    with pytest.raises(errors.NoSuchKey):
        await backend.head_object(unique_bucket, "nope")
    with pytest.raises(errors.NoSuchKey):
        await backend.copy_object(unique_bucket, "nope", unique_bucket, "dst", ObjectMeta())
    result = await backend.delete_object(unique_bucket, "nope")  # S3: deleting nothing succeeds
    assert not result.delete_marker


async def test_tricky_keys_roundtrip_and_stay_distinct(backend: Backend, unique_bucket: str) -> None:
    bucket = await bucket_with(backend, TRICKY_KEYS)
    for key in TRICKY_KEYS:
        assert await read(await backend.get_object(bucket, key)) == key.encode()
    listed = await backend.list_objects(bucket)
    assert [o.key for o in listed.objects] == sorted(TRICKY_KEYS, key=lambda k: k.encode())
    assert not listed.is_truncated
    for key in TRICKY_KEYS:
        await backend.delete_object(bucket, key)
    assert (await backend.list_objects(bucket)).objects == []


async def test_copy_replaces_metadata(backend: Backend, unique_bucket: str) -> None:
    await backend.create_bucket(unique_bucket)
    data = b"copy me" * 10_000
    await put(backend, unique_bucket, "src", data, ObjectMeta({"a": "1"}, {"content-type": "x/y"}))
    result = await backend.copy_object(unique_bucket, "src", unique_bucket, "dst/ü", ObjectMeta({"b": "2"}))
    assert result.etag
    got = await backend.get_object(unique_bucket, "dst/ü")
    assert await read(got) == data
    assert dict(got.info.meta.metadata) == {"b": "2"}
    # the source is untouched, and deleting it leaves the copy whole
    assert dict((await backend.head_object(unique_bucket, "src")).meta.metadata) == {"a": "1"}
    await backend.delete_object(unique_bucket, "src")
    assert await read(await backend.get_object(unique_bucket, "dst/ü")) == data


async def test_copy_onto_itself_with_new_metadata(backend: Backend, unique_bucket: str) -> None:
    await backend.create_bucket(unique_bucket)
    await put(backend, unique_bucket, "k", b"same", ObjectMeta({"a": "1"}))
    await backend.copy_object(unique_bucket, "k", unique_bucket, "k", ObjectMeta({"a": "2"}))
    got = await backend.get_object(unique_bucket, "k")
    assert await read(got) == b"same"
    assert dict(got.info.meta.metadata) == {"a": "2"}


async def test_copy_across_buckets_and_to_missing_bucket(backend: Backend, unique_bucket: str) -> None:
    other = await bucket_with(backend, [])
    await backend.create_bucket(unique_bucket)
    await put(backend, unique_bucket, "k", b"data")
    await backend.copy_object(unique_bucket, "k", other, "k2", ObjectMeta())
    assert await read(await backend.get_object(other, "k2")) == b"data"
    with pytest.raises(errors.NoSuchBucket):
        await backend.copy_object(unique_bucket, "k", f"{unique_bucket}-gone", "k", ObjectMeta())


# listing


async def test_list_prefix_and_delimiter(backend: Backend, unique_bucket: str) -> None:
    bucket = await bucket_with(backend, TRICKY_KEYS)
    top = await backend.list_objects(bucket, delimiter="/")
    assert [o.key for o in top.objects] == sorted(
        (k for k in TRICKY_KEYS if "/" not in k), key=lambda k: k.encode()
    )
    assert list(top.common_prefixes) == ["a/", "dir/", "ünïcödé/"]
    inside = await backend.list_objects(bucket, prefix="a/", delimiter="/")
    assert [o.key for o in inside.objects] == ["a/b"]
    assert list(inside.common_prefixes) == ["a//", "a/b/"]
    assert [o.key for o in (await backend.list_objects(bucket, prefix="a/b")).objects] == ["a/b", "a/b/c"]
    assert (await backend.list_objects(bucket, prefix="zzz")).objects == []


async def test_list_pagination_visits_everything_once(backend: Backend, unique_bucket: str) -> None:
    bucket = await bucket_with(backend, TRICKY_KEYS)
    for delimiter in ("", "/"):
        seen: list[str] = []
        after = ""
        for _ in range(40):
            page = await backend.list_objects(bucket, delimiter=delimiter, after=after, max_keys=2)
            names = [o.key for o in page.objects] + list(page.common_prefixes)
            assert len(names) <= 2
            seen += names
            if not page.is_truncated:
                break
            assert page.next_marker
            after = page.next_marker
        assert len(seen) == len(set(seen))
        whole = await backend.list_objects(bucket, delimiter=delimiter)
        assert sorted(seen) == sorted([o.key for o in whole.objects] + list(whole.common_prefixes))


async def test_list_after(backend: Backend, unique_bucket: str) -> None:
    bucket = await bucket_with(backend, ["a", "a/b", "a0", "b"])
    page = await backend.list_objects(bucket, after="a/b")
    assert [o.key for o in page.objects] == ["a0", "b"]
    page = await backend.list_objects(bucket, after="a/", delimiter="/")  # a prefix already returned
    assert [o.key for o in page.objects] == ["a0", "b"]
    assert list(page.common_prefixes) == []


# multipart


async def test_multipart_parts_out_of_order(backend: Backend, unique_bucket: str) -> None:
    await backend.create_bucket(unique_bucket)
    meta = ObjectMeta({"env": "v1"}, {"content-type": "app/x"})
    upload = await backend.create_multipart(unique_bucket, "big/ü", meta)
    assert [u.upload_id for u in await backend.list_multipart_uploads(unique_bucket)] == [upload]
    one, two, three = b"1" * PART, b"2" * PART, b"3" * 1000
    etags = {}
    for number, data in ((3, three), (1, one), (2, two)):  # parts arrive in any order
        etags[number] = await backend.upload_part(unique_bucket, "big/ü", upload, number, body_of(data, MIB), len(data))
    parts = await backend.list_parts(unique_bucket, "big/ü", upload)
    assert [(p.part_number, p.size, p.etag) for p in parts] == [(n, s, etags[n]) for n, s in ((1, PART), (2, PART), (3, 1000))]
    result = await backend.complete_multipart(
        unique_bucket, "big/ü", upload, [(1, etags[1]), (2, f'"{etags[2]}"'), (3, etags[3])]
    )
    assert result.etag.endswith("-3")
    got = await backend.get_object(unique_bucket, "big/ü")
    assert got.info.size == 2 * PART + 1000
    assert dict(got.info.meta.metadata) == {"env": "v1"}
    assert await read(got) == one + two + three
    # a range that crosses the part boundary
    ranged = await backend.get_object(unique_bucket, "big/ü", range=(PART - 3, PART + 2))
    assert await read(ranged) == b"111222"
    assert await backend.list_multipart_uploads(unique_bucket) == []
    with pytest.raises(errors.NoSuchUpload):
        await backend.list_parts(unique_bucket, "big/ü", upload)


async def test_multipart_errors(backend: Backend, unique_bucket: str) -> None:
    await backend.create_bucket(unique_bucket)
    upload = await backend.create_multipart(unique_bucket, "k", ObjectMeta())
    big = await backend.upload_part(unique_bucket, "k", upload, 1, body_of(b"b" * PART, MIB), PART)
    small = await backend.upload_part(unique_bucket, "k", upload, 2, body_of(b"s"), 1)
    last = await backend.upload_part(unique_bucket, "k", upload, 3, body_of(b"t"), 1)
    big4 = await backend.upload_part(unique_bucket, "k", upload, 4, body_of(b"B" * PART, MIB), PART)
    # each case has exactly one thing wrong, since servers check in different orders
    with pytest.raises(errors.InvalidPart):
        await backend.complete_multipart(unique_bucket, "k", upload, [(1, "0" * 32)])  # wrong ETag
    with pytest.raises(errors.InvalidPart):
        await backend.complete_multipart(unique_bucket, "k", upload, [(1, big), (5, last)])  # no part 5
    if not on_moto(backend):  # moto 5.2.1 sorts the list instead of refusing it as AWS does
        with pytest.raises(errors.InvalidPartOrder):
            await backend.complete_multipart(unique_bucket, "k", upload, [(4, big4), (1, big)])
    with pytest.raises(errors.EntityTooSmall):
        await backend.complete_multipart(unique_bucket, "k", upload, [(2, small), (3, last)])
    if not on_moto(backend):  # moto 5.2.1 answers 500 (a KeyError) where AWS says NoSuchUpload
        with pytest.raises(errors.NoSuchUpload):
            await backend.upload_part(unique_bucket, "k", "0" * 32, 1, body_of(b"x"), 1)
        with pytest.raises(errors.NoSuchUpload):
            await backend.complete_multipart(unique_bucket, "k", "0" * 32, [(1, small)])
    await backend.abort_multipart(unique_bucket, "k", upload)
    with pytest.raises(errors.NoSuchUpload):
        await backend.abort_multipart(unique_bucket, "k", upload)
    with pytest.raises(errors.NoSuchKey):
        await backend.head_object(unique_bucket, "k")


async def test_single_part_upload_and_part_overwrite(backend: Backend, unique_bucket: str) -> None:
    await backend.create_bucket(unique_bucket)
    upload = await backend.create_multipart(unique_bucket, "k", ObjectMeta())
    await backend.upload_part(unique_bucket, "k", upload, 1, body_of(b"first"), 5)
    etag = await backend.upload_part(unique_bucket, "k", upload, 1, body_of(b"second"), 6)
    await backend.complete_multipart(unique_bucket, "k", upload, [(1, etag)])
    assert await read(await backend.get_object(unique_bucket, "k")) == b"second"


async def test_delete_bucket_takes_unfinished_uploads_along(backend: Backend, unique_bucket: str) -> None:
    # AWS deletes a bucket whose only content is unfinished multipart uploads (so does moto)
    await backend.create_bucket(unique_bucket)
    upload = await backend.create_multipart(unique_bucket, "k", ObjectMeta())
    await backend.upload_part(unique_bucket, "k", upload, 1, body_of(b"part"), 4)
    await backend.delete_bucket(unique_bucket)
    with pytest.raises(errors.NoSuchBucket):
        await backend.head_bucket(unique_bucket)


# versioning


async def test_versioning(backend: Backend, unique_bucket: str) -> None:
    if not backend.capabilities.versioning:
        pytest.skip("backend without versioning")
    await backend.create_bucket(unique_bucket)
    assert await backend.get_bucket_versioning(unique_bucket) is None
    await put(backend, unique_bucket, "k", b"unversioned")
    await backend.put_bucket_versioning(unique_bucket, "Enabled")
    assert await backend.get_bucket_versioning(unique_bucket) == "Enabled"
    v1 = (await backend.put_object(unique_bucket, "k", body_of(b"one"), 3, ObjectMeta())).version_id
    v2 = (await backend.put_object(unique_bucket, "k", body_of(b"two"), 3, ObjectMeta())).version_id
    assert v1 and v2 and v1 != v2
    assert await read(await backend.get_object(unique_bucket, "k")) == b"two"
    assert await read(await backend.get_object(unique_bucket, "k", version_id=v1)) == b"one"
    assert await read(await backend.get_object(unique_bucket, "k", version_id="null")) == b"unversioned"
    assert (await backend.head_object(unique_bucket, "k", version_id=v1)).size == 3
    gone = await backend.delete_object(unique_bucket, "k")
    assert gone.delete_marker and gone.version_id
    with pytest.raises(errors.NoSuchKey):
        await backend.get_object(unique_bucket, "k")
    assert (await backend.list_objects(unique_bucket)).objects == []
    listed = await backend.list_object_versions(unique_bucket)
    # (moto lists delete markers after versions rather than interleaved by age, so compare apart)
    assert [(v.version_id, v.is_latest) for v in listed.versions if not v.delete_marker] == [
        (v2, False), (v1, False), ("null", False)]
    assert [(v.version_id, v.is_latest) for v in listed.versions if v.delete_marker] == [(gone.version_id, True)]
    # copy from an old version
    await backend.copy_object(unique_bucket, "k", unique_bucket, "restored", ObjectMeta(), src_version_id=v1)
    assert await read(await backend.get_object(unique_bucket, "restored")) == b"one"
    # removing the delete marker brings v2 back
    await backend.delete_object(unique_bucket, "k", version_id=gone.version_id)
    assert await read(await backend.get_object(unique_bucket, "k")) == b"two"
    await backend.delete_object(unique_bucket, "k", version_id=v2)
    assert await read(await backend.get_object(unique_bucket, "k")) == b"one"
    await backend.put_bucket_versioning(unique_bucket, "Suspended")
    assert await backend.get_bucket_versioning(unique_bucket) == "Suspended"
    await put(backend, unique_bucket, "k", b"suspended")  # replaces the "null" version
    ids = [v.version_id for v in (await backend.list_object_versions(unique_bucket, prefix="k")).versions]
    # moto 5.2.1 drops every other version on a PUT while suspended; AWS keeps them
    assert ids == (["null"] if on_moto(backend) else ["null", v1])


async def test_version_listing_pages(backend: Backend, unique_bucket: str) -> None:
    if not backend.capabilities.versioning:
        pytest.skip("backend without versioning")
    await backend.create_bucket(unique_bucket)
    await backend.put_bucket_versioning(unique_bucket, "Enabled")
    expected = []
    for key in ("a", "a/b", "b"):
        for _ in range(3):
            expected.append((key, (await backend.put_object(unique_bucket, key, body_of(b"x"), 1, ObjectMeta())).version_id))
    expected = [(k, v) for key in ("a", "a/b", "b") for k, v in reversed([e for e in expected if e[0] == key])]
    seen: list[tuple[str, str | None]] = []
    key_marker = vid_marker = ""
    for _ in range(20):
        page = await backend.list_object_versions(unique_bucket, key_marker=key_marker,
                                                  version_id_marker=vid_marker, max_keys=2)
        seen += [(v.key, v.version_id) for v in page.versions]
        if not page.is_truncated:
            break
        key_marker, vid_marker = page.next_key_marker or "", page.next_version_id_marker or ""
    assert seen == expected
    delimited = await backend.list_object_versions(unique_bucket, delimiter="/")
    assert list(delimited.common_prefixes) == ["a/"]
    assert {v.key for v in delimited.versions} == {"a", "b"}


async def test_version_markers_are_positions_when_their_versions_are_deleted(backend: Backend, unique_bucket: str) -> None:
    """A tool empties a bucket page by page: every page is deleted before the next is asked for,
    with markers that name deleted versions. Nothing may be left behind (issue 20)."""
    await backend.create_bucket(unique_bucket)
    await backend.put_bucket_versioning(unique_bucket, "Enabled")
    for key in ("a", "a/b", "b", "c"):
        for _ in range(3):
            await backend.put_object(unique_bucket, key, body_of(b"x"), 1, ObjectMeta())
    await backend.delete_object(unique_bucket, "b")  # a delete marker on top
    total = len((await backend.list_object_versions(unique_bucket)).versions)
    assert total == 13
    for size in (1, 2, 3, 5):
        if size > 1:  # refill for the next round
            for key in ("a", "a/b", "b", "c"):
                for _ in range(3):
                    await backend.put_object(unique_bucket, key, body_of(b"x"), 1, ObjectMeta())
        key_marker = vid_marker = ""
        deleted = 0
        for _ in range(100):
            page = await backend.list_object_versions(unique_bucket, key_marker=key_marker,
                                                      version_id_marker=vid_marker, max_keys=size)
            assert len(page.versions) <= size
            for v in page.versions:
                await backend.delete_object(unique_bucket, v.key, version_id=v.version_id)
            deleted += len(page.versions)
            if not page.is_truncated:
                break
            key_marker, vid_marker = page.next_key_marker or "", page.next_version_id_marker or ""
        assert (await backend.list_object_versions(unique_bucket)).versions == [], size
        assert deleted >= (13 if size == 1 else 12)


async def test_conditional_writes(backend: Backend, unique_bucket: str) -> None:
    """WriteCondition: create only without a current object, replace only the object with that ETag."""
    await backend.create_bucket(unique_bucket)
    create = WriteCondition(if_none_match=True)
    first = await backend.put_object(unique_bucket, "k", body_of(b"one"), 3, ObjectMeta(), create)
    with pytest.raises(errors.PreconditionFailed):
        await backend.put_object(unique_bucket, "k", body_of(b"two"), 3, ObjectMeta(), create)
    with pytest.raises(errors.PreconditionFailed):
        await backend.put_object(unique_bucket, "k", body_of(b"two"), 3, ObjectMeta(), WriteCondition(if_match="0" * 32))
    with pytest.raises(errors.NoSuchKey):
        await backend.put_object(unique_bucket, "absent", body_of(b"x"), 1, ObjectMeta(), WriteCondition(if_match=first.etag))
    second = await backend.put_object(unique_bucket, "k", body_of(b"two"), 3, ObjectMeta(), WriteCondition(if_match=first.etag))
    assert await read(await backend.get_object(unique_bucket, "k")) == b"two"
    upload = await backend.create_multipart(unique_bucket, "k", ObjectMeta())
    part = await backend.upload_part(unique_bucket, "k", upload, 1, body_of(b"mpu"), 3)
    with pytest.raises(errors.PreconditionFailed):
        await backend.complete_multipart(unique_bucket, "k", upload, [(1, part)], create)
    if on_moto(backend):  # moto 5.2.1 enforces neither If-Match on Complete nor either header on CopyObject
        await backend.abort_multipart(unique_bucket, "k", upload)
        return
    with pytest.raises(errors.PreconditionFailed):
        await backend.complete_multipart(unique_bucket, "k", upload, [(1, part)], WriteCondition(if_match=first.etag))
    done = await backend.complete_multipart(unique_bucket, "k", upload, [(1, part)], WriteCondition(if_match=second.etag))
    assert await read(await backend.get_object(unique_bucket, "k")) == b"mpu"  # a failed condition left the upload whole
    with pytest.raises(errors.PreconditionFailed):
        await backend.copy_object(unique_bucket, "k", unique_bucket, "k", ObjectMeta({"a": "1"}), condition=create)
    with pytest.raises(errors.PreconditionFailed):
        await backend.copy_object(
            unique_bucket, "k", unique_bucket, "k", ObjectMeta({"a": "1"}), condition=WriteCondition(if_match=second.etag)
        )
    await backend.copy_object(unique_bucket, "k", unique_bucket, "copy", ObjectMeta(), condition=create)
    await backend.copy_object(
        unique_bucket, "k", unique_bucket, "k", ObjectMeta({"a": "1"}), condition=WriteCondition(if_match=done.etag)
    )
    # a delete marker is no current object
    await backend.put_bucket_versioning(unique_bucket, "Enabled")
    await backend.delete_object(unique_bucket, "copy")
    with pytest.raises(errors.NoSuchKey):
        await backend.put_object(unique_bucket, "copy", body_of(b"x"), 1, ObjectMeta(), WriteCondition(if_match=done.etag))
    await backend.put_object(unique_bucket, "copy", body_of(b"x"), 1, ObjectMeta(), create)


# tagging


async def test_tagging(backend: Backend, unique_bucket: str) -> None:
    if not backend.capabilities.tagging:
        pytest.skip("backend without tagging")
    await backend.create_bucket(unique_bucket)
    await put(backend, unique_bucket, "k", b"x", ObjectMeta(tagging="a=1&b%20c=d%2Be"))
    assert sorted(await backend.get_object_tagging(unique_bucket, "k")) == [("a", "1"), ("b c", "d+e")]
    await backend.put_object_tagging(unique_bucket, "k", [("ü", "v:1 @x")])
    assert await backend.get_object_tagging(unique_bucket, "k") == [("ü", "v:1 @x")]
    await backend.delete_object_tagging(unique_bucket, "k")
    assert await backend.get_object_tagging(unique_bucket, "k") == []
    with pytest.raises(errors.NoSuchKey):
        await backend.get_object_tagging(unique_bucket, "nope")


async def test_copy_keeps_tags_unless_given_new_ones(backend: Backend, unique_bucket: str) -> None:
    if not backend.capabilities.tagging:
        pytest.skip("backend without tagging")
    await backend.create_bucket(unique_bucket)
    await put(backend, unique_bucket, "src", b"x", ObjectMeta(tagging="t=1"))
    await backend.copy_object(unique_bucket, "src", unique_bucket, "kept", ObjectMeta())
    assert await backend.get_object_tagging(unique_bucket, "kept") == [("t", "1")]
    await backend.copy_object(unique_bucket, "src", unique_bucket, "new", ObjectMeta(tagging="u=2"))
    assert await backend.get_object_tagging(unique_bucket, "new") == [("u", "2")]
