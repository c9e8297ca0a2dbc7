"""MultipartUploads over the in-memory twins: create, upload_part, upload_part_copy (its source read by
the ObjectStore), list_parts, complete, abort; the part list kept in a record, and kept honest."""

from __future__ import annotations

import hashlib

import pytest
from multidict import CIMultiDict

from s3proxy import errors
from s3proxy.auth.body import open_body
from s3proxy.backends.base import ObjectMeta
from s3proxy.format.errors import IntegrityError
from s3proxy.format.ranges import ByteRange
from s3proxy.format.records import SHARED
from s3proxy.modes.base import ObjectRef
from s3proxy.ops.multipart import MIN_PART_SIZE
from s3proxy.store import Upload
from tests.twins import CPSRC, BytesStream, World, auth_context, ssec_headers

from .helpers import data_of, drain, modes, put

KEY = bytes(range(32))
REF = ObjectRef("b", "mpu")
SOURCE = ObjectRef("b", "source")


async def upload_part(world: World, upload: Upload, number: int, data: bytes) -> str:
    body = open_body(auth_context(), CIMultiDict({"Content-Length": str(len(data))}), BytesStream(data),
                     want_md5=upload.wants_md5)
    etag, _ = await world.uploads.upload_part(upload, number, body)
    return etag


async def copy_part(world: World, upload: Upload, number: int, source_headers: dict, first: int, last: int) -> str:
    """UploadPartCopy as the operation does it: the source opened and read by the store, the range's
    plaintext handed to the upload."""
    src = await world.store.open(SOURCE, modes(world, source_headers), copy_source=True)
    download = await world.store.read(src, byte_range=ByteRange(first, last))
    etag, _ = await world.uploads.upload_part_copy(upload, number, download.body, last - first + 1)
    return etag


@pytest.mark.parametrize("mode", [
    {"x-amz-server-side-encryption": "AES256"},
    {"x-amz-server-side-encryption": "aws:kms"},
    ssec_headers(KEY),
], ids=["sse-s3", "sse-kms", "sse-c"])
async def test_a_multipart_round_trip_reads_whole_by_range_and_by_part(world: World, mode: dict) -> None:
    await world.buckets.create("b", "000000000000")
    source = data_of(3000)
    await put(world, SOURCE, source, ssec_headers(bytes(32)))  # an SSE-C source, its own key
    upload_id, echo = await world.uploads.create(REF, ObjectMeta(metadata={"colour": "green"}), modes(world, mode))
    assert ("x-amz-server-side-encryption-customer-key-MD5" in echo) == ("x-amz-server-side-encryption-customer-key" in mode)
    read = {k: v for k, v in mode.items() if "customer" in k}  # what every part and every read sends
    upload = await world.uploads.open(REF, upload_id, modes(world, read))
    part1 = data_of(MIN_PART_SIZE + 3)  # just over the minimum, not a multiple of the chunk
    etags = [await upload_part(world, upload, 1, part1),
             await copy_part(world, upload, 2, ssec_headers(bytes(32), CPSRC), 1000, 2500)]
    sse_s3 = mode.get("x-amz-server-side-encryption") == "AES256"
    assert (etags[0] == hashlib.md5(part1).hexdigest()) == sse_s3  # parts of SSE-S3 uploads: MD5 of the plaintext
    assert (etags[1] == hashlib.md5(source[1000:2501]).hexdigest()) == sse_s3
    listed = await world.uploads.list_parts(REF, upload_id)
    assert [(p.part_number, p.size, p.etag) for p in listed] == [(1, len(part1), etags[0]), (2, 1501, etags[1])]

    written = await world.uploads.complete(REF, upload_id, [(1, etags[0]), (2, etags[1])], modes(world),
                                           min_part_size=MIN_PART_SIZE)  # no key: S3 completes without it
    data = part1 + source[1000:2501]
    assert written.etag == hashlib.md5(bytes.fromhex(etags[0]) + bytes.fromhex(etags[1])).hexdigest() + "-2"
    assert not any("customer" in h for h in written.headers)  # Complete echoes no SSE-C (reference §1.1)
    opened = await world.store.open(REF, modes(world, read))
    assert (opened.view.size, opened.view.etag, dict(opened.view.meta.metadata)) == (len(data), written.etag, {"colour": "green"})
    assert await drain((await world.store.read(opened)).body) == data
    boundary = ByteRange(len(part1) - 10, len(part1) + 20)
    got = await world.store.read(await world.store.open(REF, modes(world, read)), byte_range=boundary)
    assert await drain(got.body) == data[len(part1) - 10:len(part1) + 21]
    second = await world.store.read(await world.store.open(REF, modes(world, read)), part_number=2)
    assert (second.range, second.parts_count) == ((len(part1), len(data) - 1), 2)
    assert await drain(second.body) == source[1000:2501]
    with pytest.raises(errors.InvalidPartNumber):
        await world.store.read(await world.store.open(REF, modes(world, read)), part_number=3)
    assert await world.records.get(f"uploads/{upload_id}", "b", fresh=True) is None  # the upload's records are gone


async def test_complete_checks_every_named_part(world: World) -> None:
    await world.buckets.create("b", "000000000000")
    upload_id, _ = await world.uploads.create(REF, ObjectMeta(), modes(world))
    upload = await world.uploads.open(REF, upload_id, modes(world))
    small = await upload_part(world, upload, 1, b"too small to be anything but the last part")
    last = await upload_part(world, upload, 2, b"last")
    with pytest.raises(errors.InvalidPart):  # an ETag that is not the part's
        await world.uploads.complete(REF, upload_id, [(1, "0" * 32)], modes(world), min_part_size=MIN_PART_SIZE)
    with pytest.raises(errors.InvalidPart):  # a part never uploaded
        await world.uploads.complete(REF, upload_id, [(3, last)], modes(world), min_part_size=MIN_PART_SIZE)
    with pytest.raises(errors.EntityTooSmall):  # every part but the last has at least 5 MiB
        await world.uploads.complete(REF, upload_id, [(1, small), (2, last)], modes(world), min_part_size=MIN_PART_SIZE)
    done = await world.uploads.complete(REF, upload_id, [(2, last)], modes(world), min_part_size=MIN_PART_SIZE)
    assert done.etag.endswith("-1")
    assert await drain((await world.store.read(await world.store.open(REF, modes(world)))).body) == b"last"


async def test_an_upload_is_bound_to_its_bucket_and_key_and_gone_after_abort(world: World) -> None:
    await world.buckets.create("b", "000000000000")
    upload_id, _ = await world.uploads.create(REF, ObjectMeta(), modes(world))
    with pytest.raises(errors.NoSuchUpload):  # the same id under another key names no upload
        await world.uploads.open(ObjectRef("b", "other"), upload_id, modes(world))
    upload = await world.uploads.open(REF, upload_id, modes(world))
    await upload_part(world, upload, 1, b"part")
    assert [u.upload_id for u in await world.uploads.list_uploads("b")] == [upload_id]
    await world.uploads.abort(REF, upload_id)
    assert await world.uploads.list_uploads("b") == []
    with pytest.raises(errors.NoSuchUpload):
        await world.uploads.open(REF, upload_id, modes(world))
    assert await world.records.get(f"uploads/{upload_id}/1", "b", fresh=True) is None


async def test_a_complete_sse_c_upload_needs_no_customer_key_and_holds_none(world: World) -> None:
    """The envelope MAC key is kept wrapped by the service key, so Complete seals the part list
    without the customer's key; nothing kept about the upload names that key."""
    await world.buckets.create("b", "000000000000")
    upload_id, _ = await world.uploads.create(REF, ObjectMeta(), modes(world, ssec_headers(KEY)))
    record = await world.records.get(f"uploads/{upload_id}", "b")
    assert KEY.hex() not in repr(record) and ssec_headers(KEY)["x-amz-server-side-encryption-customer-key"] not in repr(record)
    upload = await world.uploads.open(REF, upload_id, modes(world, ssec_headers(KEY)))
    etag = await upload_part(world, upload, 1, b"secret part")
    await world.uploads.complete(REF, upload_id, [(1, etag)], modes(world), min_part_size=MIN_PART_SIZE)
    with pytest.raises(errors.InvalidRequest):
        await world.store.open(REF, modes(world))
    assert (
        await drain((await world.store.read(await world.store.open(REF, modes(world, ssec_headers(KEY))))).body) == b"secret part"
    )


async def test_a_changed_part_list_record_fails_the_read(world: World) -> None:
    """A multipart object's size and part list live in the record parts/<id>, under the envelope MAC."""
    await world.buckets.create("b", "000000000000")
    upload_id, _ = await world.uploads.create(REF, ObjectMeta(), modes(world))
    upload = await world.uploads.open(REF, upload_id, modes(world))
    etag = await upload_part(world, upload, 1, data_of(3000))
    await world.uploads.complete(REF, upload_id, [(1, etag)], modes(world), min_part_size=MIN_PART_SIZE)
    (name,) = [o.key for o in (await world.backend.list_objects(world.records.bucket, "parts/")).objects]
    record = (await world.records.get(name, SHARED, fresh=True)).value
    await world.records.put(name, SHARED, {**record, "size": str(int(record["size"]) - 1)})
    with pytest.raises(IntegrityError):
        await world.store.read(await world.store.open(REF, modes(world)))
