"""Object operations called directly (PutObject, GetObject, HeadObject, DeleteObjects, CopyObject,
tagging): the Reply's status, headers and body, and the S3 errors for what S3 refuses."""

from __future__ import annotations

import hashlib

import pytest

from s3proxy import errors
from s3proxy.format.ranges import RangeNotSatisfiable
from tests.twins import INTERNAL_BUCKET, World

from .helpers import bucket_with, content, doc, md5_header, run

DATA = bytes(range(256)) * 40  # 10240 bytes


# --- GetObject and HeadObject: ranges, parts, conditions --------------------------------------------


@pytest.mark.parametrize(("range_header", "first", "last"), [
    ("bytes=0-9", 0, 9),
    ("bytes=100-", 100, len(DATA) - 1),  # open-ended
    ("bytes=-10", len(DATA) - 10, len(DATA) - 1),  # a suffix
    ("bytes=10000-99999", 10000, len(DATA) - 1),  # past the end: clipped
])
async def test_a_range_is_206_with_content_range(world: World, range_header: str, first: int, last: int) -> None:
    await bucket_with(world, "bucket", {"k": DATA})
    got = await run(world, "GetObject", "bucket", "k", headers={"Range": range_header})
    assert got.status == 206 and got.headers["Content-Range"] == f"bytes {first}-{last}/{len(DATA)}"
    assert await content(got) == DATA[first:last + 1]
    head = await run(world, "HeadObject", "bucket", "k", headers={"Range": range_header})
    assert (head.status, head.length, head.body) == (206, last - first + 1, None)
    assert head.headers["Content-Range"] == got.headers["Content-Range"]


@pytest.mark.parametrize("range_header", ["bytes=5-2", "bytes=a-b", "items=0-1", "bytes=0-1,3-4"])
async def test_a_range_s3_cannot_parse_is_ignored(world: World, range_header: str) -> None:
    """RFC 9110: an unparsable Range is ignored, and S3 answers the whole object (200)."""
    await bucket_with(world, "bucket", {"k": DATA})
    got = await run(world, "GetObject", "bucket", "k", headers={"Range": range_header})
    assert got.status == 200 and "Content-Range" not in got.headers and await content(got) == DATA


async def test_an_unsatisfiable_range_is_refused(world: World) -> None:
    await bucket_with(world, "bucket", {"k": DATA})
    with pytest.raises(RangeNotSatisfiable) as raised:
        await run(world, "GetObject", "bucket", "k", headers={"Range": f"bytes={len(DATA)}-"})
    refused = errors.to_s3_error(raised.value)
    assert (refused.status, refused.code, refused.fields) == (
        416, "InvalidRange", {"ActualObjectSize": str(len(DATA)), "RangeRequested": f"bytes={len(DATA)}-"})


async def test_part_numbers_of_a_single_part_object(world: World) -> None:
    await bucket_with(world, "bucket", {"k": DATA})
    got = await run(world, "GetObject", "bucket", "k", query={"partNumber": "1"})
    assert got.status == 206 and got.headers["Content-Range"] == f"bytes 0-{len(DATA) - 1}/{len(DATA)}"
    assert "x-amz-mp-parts-count" not in got.headers and await content(got) == DATA
    with pytest.raises(errors.InvalidPartNumber):
        await run(world, "GetObject", "bucket", "k", query={"partNumber": "2"})
    with pytest.raises(errors.InvalidPartNumber):
        await run(world, "HeadObject", "bucket", "k", query={"partNumber": "2"})
    with pytest.raises(errors.InvalidRequest) as raised:
        await run(world, "GetObject", "bucket", "k", query={"partNumber": "1"}, headers={"Range": "bytes=0-0"})
    assert raised.value.text == "Cannot specify both Range header and partNumber query parameter"
    for bad in ("0", "10001", "one", "١"):  # an Arabic-Indic digit is a digit to str.isdigit, not to S3
        with pytest.raises(errors.InvalidArgument):
            await run(world, "GetObject", "bucket", "k", query={"partNumber": bad})


async def test_conditions_answer_304_and_412(world: World) -> None:
    await bucket_with(world, "bucket", {"k": DATA})
    etag = (await run(world, "HeadObject", "bucket", "k")).headers["ETag"]
    assert etag == f'"{hashlib.md5(DATA).hexdigest()}"'
    with pytest.raises(errors.NotModified):
        await run(world, "GetObject", "bucket", "k", headers={"If-None-Match": etag})
    with pytest.raises(errors.PreconditionFailed):
        await run(world, "GetObject", "bucket", "k", headers={"If-Match": '"0123456789abcdef0123456789abcdef"'})
    with pytest.raises(errors.PreconditionFailed):
        await run(world, "HeadObject", "bucket", "k", headers={"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    got = await run(world, "GetObject", "bucket", "k", headers={"If-Match": etag, "If-None-Match": '"other"'})
    assert got.status == 200 and await content(got) == DATA


async def test_get_answers_metadata_content_headers_and_response_overrides(world: World) -> None:
    await run(world, "CreateBucket", "bucket")
    await run(world, "PutObject", "bucket", "k", body=b"x", headers={"x-amz-meta-Colour": "blue", "Content-Type": "text/plain",
                                                                   "Cache-Control": "no-cache"})
    got = await run(world, "GetObject", "bucket", "k", query={"response-content-type": "image/png",
                                                             "response-content-disposition": "attachment"})
    assert got.headers["x-amz-meta-colour"] == "blue" and got.headers["Cache-Control"] == "no-cache"
    assert got.headers["Content-Type"] == "image/png" and got.headers["Content-Disposition"] == "attachment"
    assert got.headers.getall("Content-Type") == ["image/png"]  # replaced, not joined
    assert got.headers["x-amz-server-side-encryption"] == "AES256" and got.headers["Accept-Ranges"] == "bytes"
    await content(got)


# --- PutObject --------------------------------------------------------------------------------------------


async def test_put_answers_etag_and_mode_and_checks_content_md5(world: World) -> None:
    await run(world, "CreateBucket", "bucket")
    put = await run(world, "PutObject", "bucket", "k", body=DATA, headers=md5_header(DATA))
    assert (put.status, put.body) == (200, None)
    assert put.headers["ETag"] == f'"{hashlib.md5(DATA).hexdigest()}"' and put.headers["x-amz-server-side-encryption"] == "AES256"
    with pytest.raises(errors.BadDigest):
        await run(world, "PutObject", "bucket", "k2", body=DATA, headers=md5_header(b"other"))
    with pytest.raises(errors.PreconditionFailed):  # If-None-Match: * on an existing key
        await run(world, "PutObject", "bucket", "k", body=b"x", headers={"If-None-Match": "*"})
    assert (await run(world, "PutObject", "bucket", "new", body=b"x", headers={"If-None-Match": "*"})).status == 200


async def test_the_internal_bucket_is_never_reached(world: World) -> None:
    await bucket_with(world, "bucket", {"k": b"x"})  # the internal bucket now exists in the backend
    for operation, key in (("ListObjectsV2", None), ("GetObject", "uploads/x"), ("PutObject", "parts/x"), ("DeleteBucket", None)):
        with pytest.raises(errors.AccessDenied):
            await run(world, operation, INTERNAL_BUCKET, key, body=b"x")
    with pytest.raises(errors.AccessDenied):
        await run(world, "CreateBucket", INTERNAL_BUCKET)
    listed = doc(await run(world, "ListBuckets"))
    assert [b["Name"] for b in listed["Buckets"]["Bucket"]] == ["bucket"]


# --- DeleteObjects ------------------------------------------------------------------------------------------


def delete_document(keys: list[str], quiet: bool = False) -> bytes:
    objects = "".join(f"<Object><Key>{k}</Key></Object>" for k in keys)
    return f"<Delete><Quiet>{str(quiet).lower()}</Quiet>{objects}</Delete>".encode()


async def test_delete_objects_deletes_each_and_reports_each(world: World) -> None:
    await bucket_with(world, "bucket", {"a": b"1", "b": b"2", " a": b"3"})
    body = delete_document(["a", "missing", " a"])
    answer = doc(await run(world, "DeleteObjects", "bucket", query={"delete": ""}, body=body, headers=md5_header(body)))
    assert answer["_root"] == "DeleteResult" and [d["Key"] for d in answer["Deleted"]] == ["a", "missing", " a"]
    listed = doc(await run(world, "ListObjectsV2", "bucket", query={"list-type": "2"}))
    assert [c["Key"] for c in listed["Contents"]] == ["b"]  # " a" was not "a": keys are taken verbatim
    body = delete_document(["b"], quiet=True)
    answer = doc(await run(world, "DeleteObjects", "bucket", query={"delete": ""}, body=body, headers=md5_header(body)))
    assert "Deleted" not in answer and "Error" not in answer


@pytest.mark.parametrize(("body", "headers", "refused"), [
    (delete_document(["k"]), {}, errors.InvalidRequest),  # S3 requires Content-MD5 (or a checksum) here
    (delete_document([f"k{i}" for i in range(1001)]), None, errors.MalformedXML),  # at most 1000 keys
    (b"<Delete><Quiet>false</Quiet></Delete>", None, errors.MalformedXML),  # at least one
    (b"<Delete><Object><VersionId>v</VersionId></Object></Delete>", None, errors.MalformedXML),  # an object without a key
    (delete_document(["k"]), {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}, errors.BadDigest),  # the MD5 of another body
], ids=["no-md5", "1001-keys", "no-objects", "no-key", "wrong-md5"])
async def test_delete_objects_limits(world: World, body: bytes, headers, refused) -> None:
    await bucket_with(world, "bucket", {"k": b"x"})
    with pytest.raises(refused):
        await run(world, "DeleteObjects", "bucket", query={"delete": ""}, body=body,
                  headers=md5_header(body) if headers is None else headers)
    assert (await run(world, "HeadObject", "bucket", "k")).status == 200  # nothing was deleted


# --- CopyObject -------------------------------------------------------------------------------------------


async def test_copy_keeps_or_replaces_metadata_by_directive(world: World) -> None:
    await run(world, "CreateBucket", "bucket")
    await run(world, "PutObject", "bucket", "src", body=DATA, headers={"x-amz-meta-colour": "blue", "Content-Type": "text/plain"})
    copied = await run(world, "CopyObject", "bucket", "kept", headers={"x-amz-copy-source": "/bucket/src"})
    result = doc(copied)
    assert result["_root"] == "CopyObjectResult" and result["ETag"] == f'"{hashlib.md5(DATA).hexdigest()}"'
    assert result["LastModified"].endswith("Z")
    head = await run(world, "HeadObject", "bucket", "kept")
    assert head.headers["x-amz-meta-colour"] == "blue" and head.headers["Content-Type"] == "text/plain"
    await run(world, "CopyObject", "bucket", "replaced", headers={
        "x-amz-copy-source": "bucket/src", "x-amz-metadata-directive": "REPLACE", "x-amz-meta-shape": "round"})
    head = await run(world, "HeadObject", "bucket", "replaced")
    assert head.headers["x-amz-meta-shape"] == "round" and "x-amz-meta-colour" not in head.headers
    assert head.headers["Content-Type"] == "binary/octet-stream"  # REPLACE replaces the content headers too
    assert await content(await run(world, "GetObject", "bucket", "replaced")) == DATA


@pytest.mark.parametrize(("headers", "refused", "message"), [
    ({"x-amz-metadata-directive": "MERGE"}, errors.InvalidArgument, "Unknown metadata directive."),
    ({"x-amz-tagging-directive": "MERGE"}, errors.InvalidArgument, "Unknown tagging directive."),
    ({"x-amz-copy-source": "bucket"}, errors.InvalidArgument,
     "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"),
    ({"x-amz-copy-source": "/bucket/%ff"}, errors.InvalidArgument, "Invalid copy source encoding"),
    ({"x-amz-copy-source": "/bucket/dst"}, errors.InvalidRequest,  # onto itself, nothing changed
     "This copy request is illegal because it is trying to copy an object to itself without changing the object's "
     "metadata, storage class, website redirect location or encryption attributes."),
    ({"x-amz-copy-source-if-match": '"0123456789abcdef0123456789abcdef"'}, errors.PreconditionFailed, None),
    ({"x-amz-copy-source-if-none-match": "*"}, errors.PreconditionFailed, None),  # 412 for a copy, never 304
], ids=["metadata-directive", "tagging-directive", "no-key", "bad-encoding", "self-copy", "if-match", "if-none-match"])
async def test_copy_refusals(world: World, headers, refused, message) -> None:
    await bucket_with(world, "bucket", {"src": b"x", "dst": b"y"})
    with pytest.raises(refused) as raised:
        await run(world, "CopyObject", "bucket", "dst", headers={"x-amz-copy-source": "/bucket/src", **headers})
    if message is not None:
        assert raised.value.text == message


async def test_copy_onto_itself_is_legal_when_it_changes_something(world: World) -> None:
    await bucket_with(world, "bucket", {"k": DATA})
    for change in ({"x-amz-metadata-directive": "REPLACE"}, {"x-amz-server-side-encryption": "aws:kms"},
                   {"x-amz-storage-class": "STANDARD_IA"}):
        assert (await run(world, "CopyObject", "bucket", "k", headers={"x-amz-copy-source": "/bucket/k", **change})).status == 200
    got = await run(world, "GetObject", "bucket", "k")
    assert got.headers["x-amz-server-side-encryption"] == "AES256"  # the last copy named no SSE: the default
    assert got.headers["x-amz-storage-class"] == "STANDARD_IA" and await content(got) == DATA


# --- tagging ------------------------------------------------------------------------------------------------


def tagging(pairs: list[tuple[str, str]]) -> bytes:
    tags = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in pairs)
    return f"<Tagging><TagSet>{tags}</TagSet></Tagging>".encode()


async def test_tags_round_trip_and_are_validated(world: World) -> None:
    await bucket_with(world, "bucket", {"k": b"x"})
    await run(world, "PutObjectTagging", "bucket", "k", query={"tagging": ""}, body=tagging([("team", "blue")]))
    got = doc(await run(world, "GetObjectTagging", "bucket", "k", query={"tagging": ""}))
    assert got["TagSet"]["Tag"] == [{"Key": "team", "Value": "blue"}]
    for pairs, message in (([(f"k{i}", "v") for i in range(11)], "Object tags cannot be greater than 10"),
                           ([("a", "1"), ("a", "2")], "Cannot provide multiple Tags with the same key"),
                           ([("k" * 129, "v")], "The TagKey you have provided is invalid"),
                           ([("k", "v" * 257)], "The TagValue you have provided is invalid")):
        with pytest.raises(errors.InvalidTag) as raised:
            await run(world, "PutObjectTagging", "bucket", "k", query={"tagging": ""}, body=tagging(pairs))
        assert raised.value.text == message
    assert (await run(world, "DeleteObjectTagging", "bucket", "k", query={"tagging": ""})).status == 204
    assert "Tag" not in (doc(await run(world, "GetObjectTagging", "bucket", "k", query={"tagging": ""}))["TagSet"] or {})


async def test_a_copy_is_stored_in_the_storage_class_it_names_else_standard(world: World) -> None:
    """CopyObject's x-amz-storage-class applies whatever the metadata directive; without it the copy is
    STANDARD, whatever the source's class (S3 API reference, CopyObject)."""
    await run(world, "CreateBucket", "bucket")
    await run(world, "PutObject", "bucket", "src", body=b"x", headers={"x-amz-storage-class": "STANDARD_IA"})
    assert (await run(world, "HeadObject", "bucket", "src")).headers["x-amz-storage-class"] == "STANDARD_IA"
    await run(world, "CopyObject", "bucket", "plain", headers={"x-amz-copy-source": "/bucket/src"})
    assert "x-amz-storage-class" not in (await run(world, "HeadObject", "bucket", "plain")).headers
    await run(world, "CopyObject", "bucket", "cold", headers={"x-amz-copy-source": "/bucket/src",
                                                             "x-amz-storage-class": "GLACIER_IR"})
    assert (await run(world, "HeadObject", "bucket", "cold")).headers["x-amz-storage-class"] == "GLACIER_IR"
    with pytest.raises(errors.InvalidStorageClass):
        await run(world, "CopyObject", "bucket", "bad", headers={"x-amz-copy-source": "/bucket/src",
                                                                "x-amz-storage-class": "COLD"})
