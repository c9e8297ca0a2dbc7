"""ListObjectsV2, ListObjects, ListObjectVersions and ListMultipartUploads called directly: paging,
delimiters, encoding-type=url, and the parameter errors S3 answers."""

from __future__ import annotations

import urllib.parse

import pytest

from s3proxy import errors
from tests.twins import World

from .helpers import bucket_with, doc, run

KEYS = ["a/1", "a/2", "b/1", "c", "d e", "f+g", "h&i"]


async def test_list_objects_v2_pages_with_continuation_tokens_to_the_end(world: World) -> None:
    await bucket_with(world, "bucket", {k: k.encode() * 3 for k in KEYS})
    seen, token, pages = [], None, []
    while True:
        query = {"list-type": "2", "max-keys": "3", **({"continuation-token": token} if token else {})}
        page = doc(await run(world, "ListObjectsV2", "bucket", query=query))
        pages.append((page["KeyCount"], page["IsTruncated"]))
        seen += [(c["Key"], int(c["Size"])) for c in page.get("Contents", [])]
        assert page["_root"] == "ListBucketResult" and page["MaxKeys"] == "3"
        assert page.get("ContinuationToken") == token
        token = page.get("NextContinuationToken")
        if page["IsTruncated"] == "false":
            assert token is None
            break
    assert seen == [(k, 3 * len(k)) for k in sorted(KEYS)]  # plaintext sizes, in UTF-8 binary order
    assert pages == [("3", "true"), ("3", "true"), ("1", "false")]


async def test_list_objects_v2_start_after_prefix_and_delimiter(world: World) -> None:
    await bucket_with(world, "bucket", {k: b"x" for k in KEYS})
    page = doc(await run(world, "ListObjectsV2", "bucket", query={"list-type": "2", "delimiter": "/"}))
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["a/", "b/"]
    assert [c["Key"] for c in page["Contents"]] == ["c", "d e", "f+g", "h&i"]
    assert page["KeyCount"] == "6" and page["Delimiter"] == "/"  # prefixes count as keys
    page = doc(await run(world, "ListObjectsV2", "bucket", query={"list-type": "2", "prefix": "a/", "start-after": "a/1"}))
    assert [c["Key"] for c in page["Contents"]] == ["a/2"] and page["StartAfter"] == "a/1"
    assert "Owner" not in page["Contents"][0]  # only with fetch-owner=true
    page = doc(await run(world, "ListObjectsV2", "bucket", query={"list-type": "2", "prefix": "c", "fetch-owner": "true"}))
    assert page["Contents"][0]["Owner"]["DisplayName"] == "000000000000"  # the bucket's account


async def test_encoding_type_url_encodes_every_key_like_value(world: World) -> None:
    await bucket_with(world, "bucket", {k: b"x" for k in KEYS})
    query = {"list-type": "2", "encoding-type": "url", "prefix": "d ", "start-after": "c&"}
    page = doc(await run(world, "ListObjectsV2", "bucket", query=query))
    assert page["EncodingType"] == "url"
    assert [c["Key"] for c in page["Contents"]] == ["d%20e"]
    assert (page["Prefix"], page["StartAfter"]) == ("d%20", "c%26")
    page = doc(await run(world, "ListObjectsV2", "bucket", query={"list-type": "2", "encoding-type": "url"}))
    assert [urllib.parse.unquote(c["Key"]) for c in page["Contents"]] == sorted(KEYS)
    assert "f%2Bg" in [c["Key"] for c in page["Contents"]]


@pytest.mark.parametrize(("query", "message"), [
    ({"encoding-type": "base64"}, "Invalid Encoding Method specified in Request"),
    ({"max-keys": "ten"}, "Provided max-keys not an integer or within integer range"),
    ({"max-keys": "-1"}, "Argument max-keys must be an integer between 0 and 2147483647"),
    ({"continuation-token": "%%%"}, "The continuation token provided is incorrect"),
    ({"continuation-token": ""}, "The continuation token provided is incorrect"),
], ids=["encoding-type", "max-keys-text", "max-keys-negative", "token-garbage", "token-empty"])
async def test_bad_listing_parameters_are_invalid_arguments(world: World, query, message) -> None:
    await bucket_with(world, "bucket", {})
    with pytest.raises(errors.InvalidArgument) as raised:
        await run(world, "ListObjectsV2", "bucket", query={"list-type": "2", **query})
    assert raised.value.text == message


async def test_max_keys_above_1000_is_1000_and_zero_lists_nothing(world: World) -> None:
    await bucket_with(world, "bucket", {"k": b"x"})
    assert doc(await run(world, "ListObjectsV2", "bucket", query={"list-type": "2", "max-keys": "5000"}))["MaxKeys"] == "1000"
    page = doc(await run(world, "ListObjectsV2", "bucket", query={"list-type": "2", "max-keys": "0"}))
    assert "Contents" not in page and page["KeyCount"] == "0"


async def test_list_objects_v1_marker_and_next_marker_only_with_a_delimiter(world: World) -> None:
    await bucket_with(world, "bucket", {k: b"x" for k in KEYS})
    page = doc(await run(world, "ListObjects", "bucket", query={"max-keys": "2", "marker": "a/2"}))
    assert [c["Key"] for c in page["Contents"]] == ["b/1", "c"] and page["Marker"] == "a/2"
    assert page["IsTruncated"] == "true" and "NextMarker" not in page  # S3 sends NextMarker only with a delimiter
    assert page["Contents"][0]["Owner"]["ID"]  # v1 lists owners always
    page = doc(await run(world, "ListObjects", "bucket", query={"max-keys": "1", "delimiter": "/"}))
    assert page["IsTruncated"] == "true" and page["NextMarker"] == "a/"


async def test_versions_and_delete_markers_are_listed_apart(world: World) -> None:
    await bucket_with(world, "bucket", {})
    await run(world, "PutBucketVersioning", "bucket", query={"versioning": ""},
              body=b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status>'
                   b"</VersioningConfiguration>")
    for data in (b"one", b"two!"):
        await run(world, "PutObject", "bucket", "k", body=data)
    await run(world, "DeleteObject", "bucket", "k")
    page = doc(await run(world, "ListObjectVersions", "bucket", query={"versions": ""}))
    assert [(v["Size"], v["IsLatest"]) for v in page["Version"]] == [("4", "false"), ("3", "false")]
    assert [m["IsLatest"] for m in page["DeleteMarker"]] == ["true"]
    assert len({v["VersionId"] for v in page["Version"] + page["DeleteMarker"]}) == 3


async def test_multipart_uploads_list_by_key_with_common_prefixes(world: World) -> None:
    await bucket_with(world, "bucket", {})
    for key in ("x/1", "x/2", "y"):
        await run(world, "CreateMultipartUpload", "bucket", key, query={"uploads": ""})
    page = doc(await run(world, "ListMultipartUploads", "bucket", query={"uploads": "", "delimiter": "/"}))
    assert [u["Key"] for u in page["Upload"]] == ["y"] and [p["Prefix"] for p in page["CommonPrefixes"]] == ["x/"]
    page = doc(await run(world, "ListMultipartUploads", "bucket", query={"uploads": "", "max-uploads": "1"}))
    assert [u["Key"] for u in page["Upload"]] == ["x/1"] and page["IsTruncated"] == "true" and page["NextKeyMarker"] == "x/1"
