"""Multipart operations called directly: the XML documents they answer, ListParts paging, and what
S3 refuses in Complete, UploadPart and UploadPartCopy."""

from __future__ import annotations

import hashlib

import pytest

from s3proxy import errors
from s3proxy.ops.multipart import MIN_PART_SIZE
from tests.twins import World

from .helpers import bucket_with, content, doc, run

SOURCE = bytes(range(256)) * 20  # 5120 bytes


async def create(world: World, key: str = "mpu") -> str:
    created = doc(await run(world, "CreateMultipartUpload", "bucket", key, query={"uploads": ""}))
    assert created["_root"] == "InitiateMultipartUploadResult" and (created["Bucket"], created["Key"]) == ("bucket", key)
    return created["UploadId"]


def complete_document(parts: list[tuple[int, str]]) -> bytes:
    items = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>\"{e}\"</ETag></Part>" for n, e in parts)
    return f"<CompleteMultipartUpload>{items}</CompleteMultipartUpload>".encode()


async def test_upload_copy_list_and_complete(world: World) -> None:
    await bucket_with(world, "bucket", {"source": SOURCE})
    upload_id = await create(world)
    first = b"p" * MIN_PART_SIZE
    part = await run(world, "UploadPart", "bucket", "mpu", query={"partNumber": "1", "uploadId": upload_id}, body=first)
    assert part.headers["ETag"] == f'"{hashlib.md5(first).hexdigest()}"' and part.body is None
    copied = await run(world, "UploadPartCopy", "bucket", "mpu", query={"partNumber": "2", "uploadId": upload_id},
                       headers={"x-amz-copy-source": "/bucket/source", "x-amz-copy-source-range": "bytes=100-1099"})
    result = doc(copied)
    assert result["_root"] == "CopyPartResult" and result["ETag"] == f'"{hashlib.md5(SOURCE[100:1100]).hexdigest()}"'

    listed = doc(await run(world, "ListParts", "bucket", "mpu", query={"uploadId": upload_id, "max-parts": "1"}))
    assert [(p["PartNumber"], p["Size"]) for p in listed["Part"]] == [("1", str(MIN_PART_SIZE))]
    assert listed["IsTruncated"] == "true" and listed["NextPartNumberMarker"] == "1"
    rest = doc(await run(world, "ListParts", "bucket", "mpu", query={"uploadId": upload_id, "part-number-marker": "1"}))
    assert [(p["PartNumber"], p["Size"]) for p in rest["Part"]] == [("2", "1000")] and rest["IsTruncated"] == "false"

    etags = [part.headers["ETag"].strip('"'), result["ETag"].strip('"')]
    done = doc(await run(world, "CompleteMultipartUpload", "bucket", "mpu", query={"uploadId": upload_id},
                         body=complete_document([(1, etags[0]), (2, etags[1])])))
    assert done["_root"] == "CompleteMultipartUploadResult" and done["ETag"].endswith('-2"')
    assert (done["Bucket"], done["Key"], done["Location"]) == ("bucket", "mpu", "/bucket/mpu")
    got = await run(world, "GetObject", "bucket", "mpu", query={"partNumber": "2"})
    assert got.status == 206 and got.headers["x-amz-mp-parts-count"] == "2"
    assert await content(got) == SOURCE[100:1100]


@pytest.mark.parametrize(("parts", "refused"), [
    ([(2, "a" * 32), (1, "b" * 32)], errors.InvalidPartOrder),  # ascending order only
    ([(1, "a" * 32), (1, "a" * 32)], errors.InvalidPartOrder),  # each number once
    ([], errors.MalformedXML),  # at least one part
    ([(1, "a" * 32)], errors.InvalidPart),  # a part never uploaded
], ids=["descending", "repeated", "none", "unknown"])
async def test_complete_refuses_a_bad_part_list(world: World, parts, refused) -> None:
    await bucket_with(world, "bucket", {})
    upload_id = await create(world)
    with pytest.raises(refused):
        await run(world, "CompleteMultipartUpload", "bucket", "mpu", query={"uploadId": upload_id}, body=complete_document(parts))


@pytest.mark.parametrize("number", ["0", "10001", "x", ""])
async def test_a_part_number_outside_1_to_10000_is_an_invalid_argument(world: World, number: str) -> None:
    await bucket_with(world, "bucket", {})
    upload_id = await create(world)
    with pytest.raises(errors.InvalidArgument) as raised:
        await run(world, "UploadPart", "bucket", "mpu", query={"partNumber": number, "uploadId": upload_id}, body=b"x")
    assert raised.value.text == "Part number must be an integer between 1 and 10000, inclusive"


async def test_upload_part_copy_range_must_be_whole_and_inside_the_source(world: World) -> None:
    await bucket_with(world, "bucket", {"source": SOURCE})
    upload_id = await create(world)
    query = {"partNumber": "1", "uploadId": upload_id}
    for bad in ("bytes=100-", "bytes=-100", "bytes=5-1", "100-200"):
        with pytest.raises(errors.InvalidArgument) as raised:
            await run(world, "UploadPartCopy", "bucket", "mpu", query=query,
                      headers={"x-amz-copy-source": "/bucket/source", "x-amz-copy-source-range": bad})
        assert raised.value.fields["ArgumentName"] == "x-amz-copy-source-range"
    with pytest.raises(errors.InvalidArgument) as raised:
        await run(world, "UploadPartCopy", "bucket", "mpu", query=query,
                  headers={"x-amz-copy-source": "/bucket/source", "x-amz-copy-source-range": f"bytes=0-{len(SOURCE)}"})
    assert raised.value.text == f"Range specified is not valid for source object of size: {len(SOURCE)}"


async def test_an_upload_id_names_one_upload_of_one_key(world: World) -> None:
    await bucket_with(world, "bucket", {})
    upload_id = await create(world)
    for operation, key, query in (("UploadPart", "other", {"partNumber": "1", "uploadId": upload_id}),
                                  ("UploadPart", "mpu", {"partNumber": "1", "uploadId": ""}),
                                  ("ListParts", "mpu", {"uploadId": "no-such-upload"})):
        with pytest.raises(errors.NoSuchUpload):
            await run(world, operation, "bucket", key, query=query, body=b"x")
    assert (await run(world, "AbortMultipartUpload", "bucket", "mpu", query={"uploadId": upload_id})).status == 204
    with pytest.raises(errors.NoSuchUpload):
        await run(world, "ListParts", "bucket", "mpu", query={"uploadId": upload_id})
