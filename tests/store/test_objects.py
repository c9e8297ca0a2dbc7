"""ObjectStore over the in-memory twins: writes, open then read (whole, range, part), the SSE-C key
checked in open before anything, preconditions that cost no KMS call, copies, re-wraps, and
every tampering at rest refused with IntegrityError."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from s3proxy import errors
from s3proxy.backends.base import ObjectMeta
from s3proxy.format.envelope import KEY_MODE, KEY_SIZE, KEY_VERSION
from s3proxy.format.errors import IntegrityError
from s3proxy.format.ranges import ByteRange, RangeNotSatisfiable
from s3proxy.format.sizes import ciphertext_size
from s3proxy.modes.base import ObjectRef
from tests.twins import CPSRC, World, ssec_headers

from .helpers import data_of, drain, modes, put

KEY = bytes(range(32))
OTHER = bytes(range(50, 82))
SIZE = 5 * 1024 + 17  # five full 1 KiB chunks and a short one
REF = ObjectRef("b", "obj")

# (request headers of the write, of every read) per mode
MODES = {
    "sse-s3": ({"x-amz-server-side-encryption": "AES256"}, {}),
    "sse-kms": ({"x-amz-server-side-encryption": "aws:kms"}, {}),
    "sse-c": (ssec_headers(KEY), ssec_headers(KEY)),
}


async def stored_bytes(world: World, ref: ObjectRef = REF) -> tuple[bytes, ObjectMeta]:
    """What the backend holds: the stored bytes and metadata, read around the store."""
    got = await world.backend.get_object(ref.bucket, ref.key)
    return await drain(got.body), got.info.meta


async def rewrite(world: World, data: bytes, meta: ObjectMeta, ref: ObjectRef = REF) -> None:
    """Someone with access to the backend writes the object anew (bytes, metadata or both)."""

    async def one():
        yield data

    await world.backend.put_object(ref.bucket, ref.key, one(), len(data), meta)


async def relabel(world: World, **fields: str) -> None:
    """Someone with access to the backend changes envelope fields of REF, keeping its bytes."""
    at_rest, meta = await stored_bytes(world)
    await rewrite(world, at_rest, dataclasses.replace(meta, metadata={**meta.metadata, **fields}))


@pytest.mark.parametrize("mode", list(MODES))
async def test_whole_range_suffix_and_part_reads_give_the_plaintext(world: World, mode: str) -> None:
    write, read = MODES[mode]
    await world.buckets.create("b", "000000000000")
    data = data_of(SIZE)
    written = await put(world, REF, data, write)
    at_rest, meta = await stored_bytes(world)
    assert len(at_rest) == ciphertext_size(SIZE, 1024) and data[:32] not in at_rest
    assert meta.metadata[KEY_MODE] == {"sse-s3": "AES256", "sse-kms": "aws:kms", "sse-c": "SSE-C"}[mode]

    opened = await world.store.open(REF, modes(world, read), whole=True)
    assert (opened.view.size, opened.view.etag) == (SIZE, written.etag)
    whole = await world.store.read(opened)
    assert whole.range is None and await drain(whole.body) == data

    for byte_range, (first, last) in ((ByteRange(1000, 3100), (1000, 3100)),  # across two chunk edges
                                      (ByteRange(None, 5), (SIZE - 5, SIZE - 1)),  # a suffix
                                      (ByteRange(SIZE - 1, None), (SIZE - 1, SIZE - 1)),  # open-ended, last byte
                                      (ByteRange(0, SIZE + 100), (0, SIZE - 1))):  # past the end: clipped
        got = await world.store.read(await world.store.open(REF, modes(world, read)), byte_range=byte_range)
        assert got.range == (first, last) and await drain(got.body) == data[first:last + 1]

    part = await world.store.read(await world.store.open(REF, modes(world, read)), part_number=1)
    assert (part.range, part.parts_count) == ((0, SIZE - 1), None)  # a single PUT has part 1 only, no count
    assert await drain(part.body) == data
    with pytest.raises(errors.InvalidPartNumber):
        await world.store.read(await world.store.open(REF, modes(world, read)), part_number=2)
    with pytest.raises(RangeNotSatisfiable):
        await world.store.read(await world.store.open(REF, modes(world, read)), byte_range=ByteRange(SIZE, None))


async def test_an_empty_object_reads_whole_and_refuses_every_range(world: World) -> None:
    await world.buckets.create("b", "000000000000")
    await put(world, REF, b"")
    assert await drain((await world.store.read(await world.store.open(REF, modes(world)))).body) == b""
    with pytest.raises(RangeNotSatisfiable):
        await world.store.read(await world.store.open(REF, modes(world)), byte_range=ByteRange(None, 1))


@pytest.mark.parametrize(("headers", "refused"), [
    ({}, errors.InvalidRequest),  # no key: 400
    (ssec_headers(OTHER), errors.AccessDenied),  # the wrong key: 403
], ids=["no-key", "wrong-key"])
@pytest.mark.parametrize("whole", [False, True], ids=["head", "get"])
async def test_open_checks_an_ssec_key_before_saying_anything_about_the_object(world: World, headers, refused,
                                                                               whole: bool) -> None:
    """open() refuses, so the operation never sees the view (size, ETag, parts) it would check
    preconditions against; the right key opens it with its data key already recovered."""
    await world.buckets.create("b", "000000000000")
    await put(world, REF, data_of(100), ssec_headers(KEY))
    with pytest.raises(refused):
        await world.store.open(REF, modes(world, headers), whole=whole)
    opened = await world.store.open(REF, modes(world, ssec_headers(KEY)), whole=whole)
    assert opened.data_key is not None and opened.view.size == 100
    await opened.close()
    assert world.kms_calls("Decrypt", "GenerateDataKey", "Encrypt") == []  # SSE-C never asks the KMS


@pytest.mark.parametrize("mode", ["sse-s3", "sse-kms"])
async def test_preconditions_between_open_and_read_cost_no_kms_call(world: World, mode: str) -> None:
    """A 304 or 412 is decided on opened.view; the key is recovered only by read (one Decrypt)."""
    await world.buckets.create("b", "000000000000")
    written = await put(world, REF, data_of(SIZE), MODES[mode][0])
    before = len(world.kms_calls())
    opened = await world.store.open(REF, modes(world), whole=True)
    assert opened.view.etag == written.etag and opened.data_key is None
    await opened.close()  # e.g. If-None-Match matched: nothing read
    assert world.kms_calls()[before:] == []
    await drain((await world.store.read(await world.store.open(REF, modes(world)))).body)
    assert world.kms_calls()[before:] == ["Decrypt"]


async def test_sse_s3_etag_is_the_plaintext_md5_and_the_others_are_not(world: World) -> None:
    await world.buckets.create("b", "000000000000")
    data = data_of(SIZE)
    md5 = hashlib.md5(data).hexdigest()
    assert (await put(world, REF, data)).etag == md5
    assert (await put(world, REF, data, MODES["sse-kms"][0])).etag != md5
    assert (await put(world, REF, data, MODES["sse-c"][0])).etag != md5


async def test_client_metadata_named_like_an_envelope_field_is_stored_escaped(world: World) -> None:
    """A client's `s3proxy-mode` cannot become the envelope's: it is stored escaped and shown back as sent."""
    await world.buckets.create("b", "000000000000")
    forged = {"s3proxy-mode": "SSE-C", "s3proxy-v": "9", "colour": "blue"}
    await put(world, REF, b"body", metadata=forged)
    _, meta = await stored_bytes(world)
    assert meta.metadata[KEY_MODE] == "AES256" and meta.metadata["s3proxy-user-mode"] == "SSE-C"
    opened = await world.store.open(REF, modes(world))
    assert dict(opened.view.meta.metadata) == forged
    assert await drain((await world.store.read(opened)).body) == b"body"


async def test_an_object_written_behind_the_proxy_opens_only_when_asked_for_plaintext(world: World) -> None:
    await world.buckets.create("b", "000000000000")
    await rewrite(world, b"plain", ObjectMeta())
    with pytest.raises(errors.InvalidObjectState):
        await world.store.open(REF, modes(world))
    opened = await world.store.open(REF, modes(world), plaintext=True)
    assert opened.mode is None and opened.view.size == 5
    with pytest.raises(errors.InvalidObjectState):  # plaintext is never served as if it were ours
        await world.store.read(opened)


# copies and re-wraps ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", list(MODES))
@pytest.mark.parametrize("source", list(MODES))
async def test_copy_rewraps_the_data_key_and_moves_no_data(world: World, source: str, target: str) -> None:
    await world.buckets.create("b", "000000000000")
    data = data_of(SIZE)
    await put(world, REF, data, MODES[source][0])
    source_read = {k.replace("x-amz-server-side-encryption-customer-", CPSRC): v for k, v in MODES[source][1].items()}
    dst = ObjectRef("b", "copy")
    copy_modes = modes(world, {**source_read, **MODES[target][0]})
    src = await world.store.open(REF, copy_modes, copy_source=True, plaintext=True)
    written = await world.store.copy(src, dst, copy_modes, meta=None, tagging=None)
    assert (await stored_bytes(world, dst))[0] == (await stored_bytes(world))[0]  # the same ciphertext, key re-wrapped
    assert (written.etag == hashlib.md5(data).hexdigest()) == (target == "sse-s3")  # S3: a copy into SSE-S3 has the MD5
    got = await world.store.read(await world.store.open(dst, modes(world, MODES[target][1])))
    assert await drain(got.body) == data and got.view.etag == written.etag
    assert await drain((await world.store.read(await world.store.open(REF, modes(world, MODES[source][1])))).body) == data


async def test_copy_of_an_object_written_behind_the_proxy_encrypts_it(world: World) -> None:
    await world.buckets.create("b", "000000000000")
    data = data_of(SIZE)
    await rewrite(world, data, ObjectMeta(metadata={"colour": "red"}))
    resolver = modes(world, {"x-amz-server-side-encryption": "AES256"})
    src = await world.store.open(REF, resolver, copy_source=True, plaintext=True)
    written = await world.store.copy(src, REF, resolver, meta=None, tagging=None)  # in place
    at_rest, meta = await stored_bytes(world)
    assert data[:32] not in at_rest and meta.metadata[KEY_VERSION]
    assert written.etag == hashlib.md5(data).hexdigest()
    opened = await world.store.open(REF, modes(world))
    assert opened.view.meta.metadata == {"colour": "red"}
    assert await drain((await world.store.read(opened)).body) == data


async def test_rewrap_moves_the_key_under_another_mode_and_keeps_data_etag_and_size(world: World) -> None:
    await world.buckets.create("b", "000000000000")
    data = data_of(SIZE)
    written = await put(world, REF, data)
    before, _ = await stored_bytes(world)
    key_arn = world.create_key()
    target = modes(
        world, {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": key_arn}
    ).for_write(await world.buckets.default_encryption("b"))
    rewrapped = await world.store.rewrap(REF, modes(world), target)
    after, meta = await stored_bytes(world)
    assert after == before and meta.metadata[KEY_MODE] == "aws:kms"
    assert rewrapped.etag == written.etag and rewrapped.headers["x-amz-server-side-encryption-aws-kms-key-id"] == key_arn
    got = await world.store.read(await world.store.open(REF, modes(world)))
    assert await drain(got.body) == data and (got.view.etag, got.view.size) == (written.etag, SIZE)


async def test_rewrap_refuses_what_it_cannot_or_must_not_rewrap(world: World) -> None:
    await world.buckets.create("b", "000000000000")
    await put(world, REF, b"ssec", ssec_headers(KEY))
    with pytest.raises(errors.InvalidRequest):  # S3: UpdateObjectEncryption does not take SSE-C objects
        await world.store.rewrap(REF, modes(world, ssec_headers(KEY)))
    await rewrite(world, b"plain", ObjectMeta())
    with pytest.raises(errors.InvalidRequest):
        await world.store.rewrap(REF, modes(world))
    await put(world, REF, b"sse-s3")
    with pytest.raises(errors.PreconditionFailed):  # someone wrote since it was listed
        await world.store.rewrap(REF, modes(world), expect_etag="0" * 32)


# tampering at rest -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
async def test_a_flipped_byte_at_rest_fails_the_read(world: World, mode: str) -> None:
    await world.buckets.create("b", "000000000000")
    data = data_of(SIZE)
    await put(world, REF, data, MODES[mode][0])
    at_rest, meta = await stored_bytes(world)
    damaged = bytearray(at_rest)
    damaged[3 * 1040 + 5] ^= 1  # inside the fourth chunk
    await rewrite(world, bytes(damaged), meta)
    download = await world.store.read(await world.store.open(REF, modes(world, MODES[mode][1])))
    released = bytearray()
    with pytest.raises(IntegrityError):
        async for piece in download.body:
            released += piece
    assert data.startswith(bytes(released)) and len(released) <= 3 * 1024  # nothing of the damaged chunk


@pytest.mark.parametrize("cut", [1, -1], ids=["appended", "cut-short"])
async def test_stored_bytes_of_the_wrong_length_are_refused_before_any_byte(world: World, cut: int) -> None:
    await world.buckets.create("b", "000000000000")
    await put(world, REF, data_of(SIZE))
    at_rest, meta = await stored_bytes(world)
    await rewrite(world, at_rest + b"x" if cut > 0 else at_rest[:-1], meta)
    with pytest.raises(IntegrityError):
        await world.store.read(await world.store.open(REF, modes(world)))


async def test_a_changed_plaintext_size_fails_the_envelope_mac(world: World) -> None:
    await world.buckets.create("b", "000000000000")
    await put(world, REF, data_of(SIZE))
    await relabel(world, **{KEY_SIZE: str(SIZE - 1)})
    with pytest.raises(IntegrityError):
        await world.store.read(await world.store.open(REF, modes(world)))


async def test_an_object_relabelled_sse_c_is_refused_before_any_key_is_used(world: World) -> None:
    """The metadata MAC (format version 2) covers the mode: a relabelled object fails it, and no
    customer key is tried against the KMS's wrap."""
    await world.buckets.create("b", "000000000000")
    await put(world, REF, data_of(SIZE))
    await relabel(world, **{KEY_MODE: "SSE-C"})
    before = world.kms_calls()
    with pytest.raises(IntegrityError):
        await world.store.open(REF, modes(world, ssec_headers(KEY)))
    assert world.kms_calls() == before


async def test_an_sse_kms_object_relabelled_sse_s3_does_not_open_as_the_proxy(world: World) -> None:
    """The proxy decrypts under its own service key only what that key wrapped (kms_modes.service_unwrap)."""
    await world.buckets.create("b", "000000000000")
    await put(world, REF, data_of(100), MODES["sse-kms"][0])
    await relabel(world, **{KEY_MODE: "AES256"})
    with pytest.raises(IntegrityError):
        await world.store.read(await world.store.open(REF, modes(world)))


@pytest.mark.parametrize("mode", list(MODES))
async def test_an_object_moved_under_another_name_does_not_open(world: World, mode: str) -> None:
    """The metadata MAC is over the object's ARN: a moved object is refused before its key is
    unwrapped (the wrap itself is bound to the ARN too: FORMAT.md §19.1)."""
    await world.buckets.create("b", "000000000000")
    await put(world, REF, data_of(100), MODES[mode][0])
    at_rest, meta = await stored_bytes(world)
    moved = ObjectRef("b", "moved")
    await rewrite(world, at_rest, meta, moved)
    before = world.kms_calls()
    with pytest.raises(IntegrityError):
        await world.store.read(await world.store.open(moved, modes(world, MODES[mode][1])))
    assert world.kms_calls() == before
