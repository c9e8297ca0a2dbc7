"""Listing through the front door, in front of both backends: ListObjects v1 and v2 (prefix,
delimiter, common prefixes, max-keys, marker / continuation-token / start-after, encoding-type=url
with tricky keys), and the awscli's `s3 ls`.

Facts: S3 API reference, ListObjects and ListObjectsV2 (NextMarker only with a delimiter in v1;
keys are returned in UTF-8 binary order; EncodingType=url encodes Key, Prefix, Delimiter, ...)."""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET

import pytest

from .front_helpers import expect_error, send, signed_headers

KEYS = [
    "a.txt",
    "dir/",  # a "folder" marker object
    "dir/one",
    "dir/sub/two",
    "dir/sub/three",
    "dir2/x",
    "z",
]

# keys XML 1.0 cannot carry raw, or that percent-decoding, '+' or query syntax would mangle
TRICKY = [
    "space key",
    "plus+key",
    "percent%20literal",
    "ctrl\x01char",
    "amp&lt;",
    "question?mark",
    "hash#key",
    "ünïcødé/ключ",
    "tab\tkey",
]


@pytest.fixture
def listed(s3, bucket):
    for k in KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    return bucket


def _keys(resp):
    return [o["Key"] for o in resp.get("Contents", [])]


def _prefixes(resp):
    return [p["Prefix"] for p in resp.get("CommonPrefixes", [])]


def test_v2_flat_and_prefix(s3, listed):
    resp = s3.list_objects_v2(Bucket=listed)
    assert _keys(resp) == sorted(KEYS) and resp["KeyCount"] == len(KEYS)
    assert {o["Size"] for o in resp["Contents"] if o["Key"] == "z"} == {1}  # plaintext size, not ciphertext
    assert _keys(s3.list_objects_v2(Bucket=listed, Prefix="dir/sub/")) == ["dir/sub/three", "dir/sub/two"]
    assert _keys(s3.list_objects_v2(Bucket=listed, Prefix="nothing")) == []


def test_v2_delimiter_common_prefixes(s3, listed):
    top = s3.list_objects_v2(Bucket=listed, Delimiter="/")
    assert _keys(top) == ["a.txt", "z"]
    assert _prefixes(top) == ["dir/", "dir2/"]
    # KeyCount counts keys and common prefixes (ListObjectsV2)
    assert top["KeyCount"] == 4
    inside = s3.list_objects_v2(Bucket=listed, Delimiter="/", Prefix="dir/")
    assert _keys(inside) == ["dir/", "dir/one"] and _prefixes(inside) == ["dir/sub/"]


def test_v2_pagination_with_continuation_token_and_start_after(s3, listed):
    seen, token = [], None
    while True:
        kwargs = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=listed, MaxKeys=2, **kwargs)
        assert page["MaxKeys"] == 2 and page["KeyCount"] <= 2
        seen += _keys(page)
        if not page["IsTruncated"]:
            assert "NextContinuationToken" not in page
            break
        token = page["NextContinuationToken"]
    assert seen == sorted(KEYS)
    assert _keys(s3.list_objects_v2(Bucket=listed, StartAfter="dir/sub/two")) == ["dir2/x", "z"]
    # a delimiter page boundary falling in a common prefix must not repeat it
    prefixes = []
    token = None
    while True:
        kwargs = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=listed, MaxKeys=1, Delimiter="/", **kwargs)
        prefixes += _keys(page) + _prefixes(page)
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert prefixes == ["a.txt", "dir/", "dir2/", "z"]


def test_v1_marker_and_next_marker(s3, listed):
    page = s3.list_objects(Bucket=listed, MaxKeys=3)
    assert _keys(page) == sorted(KEYS)[:3] and page["IsTruncated"] is True
    # without a delimiter S3 v1 returns no NextMarker: the client continues from the last key
    assert "NextMarker" not in page
    rest = s3.list_objects(Bucket=listed, Marker=_keys(page)[-1])
    assert _keys(rest) == sorted(KEYS)[3:] and rest["IsTruncated"] is False
    with_delim = s3.list_objects(Bucket=listed, Delimiter="/", MaxKeys=2)
    assert with_delim["IsTruncated"] is True and with_delim["NextMarker"] == "dir/"
    after = s3.list_objects(Bucket=listed, Delimiter="/", Marker=with_delim["NextMarker"])
    assert _keys(after) == ["z"] and _prefixes(after) == ["dir2/"]


@pytest.mark.parametrize("version", [1, 2])
def test_encoding_type_url_with_tricky_keys(proxy, bucket, version):
    s3 = proxy.client()
    for k in TRICKY:
        s3.put_object(Bucket=bucket, Key=k, Body=b"t")
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == b"t"
    # boto3 asks for encoding-type=url and decodes what it gets back; order is UTF-8 binary order
    listing = s3.list_objects_v2(Bucket=bucket) if version == 2 else s3.list_objects(Bucket=bucket)
    assert _keys(listing) == sorted(TRICKY, key=lambda k: k.encode())
    # on the wire: every key is encoded (XML 1.0 cannot carry \x01 at all) and decodes back exactly
    query = "list-type=2&encoding-type=url" if version == 2 else "encoding-type=url"
    path = f"/{bucket}?{query}"
    resp = send(proxy.url, "GET", path, signed_headers(proxy.url, "GET", path))
    assert resp.status == 200 and b"\x01" not in resp.body
    doc = ET.fromstring(resp.body)
    ns = {"s3": doc.tag.partition("}")[0].lstrip("{")} if doc.tag.startswith("{") else {}
    raw = [e.text for e in doc.iterfind("s3:Contents/s3:Key" if ns else "Contents/Key", ns)]
    assert doc.findtext("s3:EncodingType" if ns else "EncodingType", namespaces=ns) == "url"
    assert sorted(urllib.parse.unquote_plus(k) for k in raw) == sorted(TRICKY)


def test_invalid_max_keys_and_encoding(s3, listed):
    expect_error("InvalidArgument", 400, s3.list_objects_v2, Bucket=listed, MaxKeys=-1)
    expect_error("InvalidArgument", 400, s3.list_objects_v2, Bucket=listed, EncodingType="base64")


@pytest.mark.slow
def test_awscli_ls(proxy, listed):
    top = proxy.aws("s3", "ls", f"s3://{listed}/").stdout.decode().splitlines()
    assert sorted(line.split()[-1] for line in top) == ["a.txt", "dir/", "dir2/", "z"]
    assert [line.split()[-1] for line in top if line.split()[0] == "PRE"] == ["dir/", "dir2/"]
