"""Object operations through the front door, boto3 and awscli, in front of both backends:
Put/Get/Head/Delete(Objects)/Copy, ranges, conditionals, response-* overrides, metadata, tagging,
versioning, unimplemented subresources, request ids, KeyTooLongError, MalformedXML.

Facts cited: S3 API reference (GetObject, HeadObject, CopyObject, DeleteObjects, error codes) and
RFC 9110 (ranges §14, conditionals §13)."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from botocore.exceptions import ClientError

from .front_helpers import error_of, expect_error, send, signed_headers

BODY = bytes(range(256)) * 40  # 10240 bytes, every byte value, position-dependent


@pytest.fixture
def obj(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="data.bin", Body=BODY)["ETag"]
    return bucket, "data.bin", etag


# Range header (RFC 9110 §14.1.2; S3 honours a single range) -> (status, expected slice)
RANGES = [
    ("bytes=0-0", 206, slice(0, 1)),  # first byte only
    ("bytes=10-19", 206, slice(10, 20)),  # a middle span
    ("bytes=100-", 206, slice(100, None)),  # open-ended: to the end
    ("bytes=-7", 206, slice(-7, None)),  # suffix: the last 7 bytes
    ("bytes=10200-999999", 206, slice(10200, None)),  # last past the end is clamped to size-1
    ("bytes=-999999", 206, slice(0, None)),  # suffix longer than the object is the whole object
    ("bytes=10239-", 206, slice(10239, None)),  # exactly the last byte
]


@pytest.mark.parametrize("header, status, want", RANGES, ids=[r[0] for r in RANGES])
def test_ranged_get(s3, obj, header, status, want):
    bucket, key, _ = obj
    resp = s3.get_object(Bucket=bucket, Key=key, Range=header)
    data = resp["Body"].read()
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == status
    assert data == BODY[want]
    first = len(BODY) - len(data) if want.start is None or want.start < 0 else want.start
    assert resp["ContentRange"] == f"bytes {first}-{first + len(data) - 1}/{len(BODY)}"
    assert resp["ContentLength"] == len(data)


@pytest.mark.parametrize(
    "header",
    [
        "bytes=10240-",  # first byte at the size: unsatisfiable
        "bytes=99999-100000",  # entirely past the end
    ],
)
def test_unsatisfiable_range_is_416_invalid_range(s3, obj, header):
    bucket, key, _ = obj
    expect_error("InvalidRange", 416, s3.get_object, Bucket=bucket, Key=key, Range=header)


def test_unparseable_range_is_ignored_and_returns_the_whole_object(s3, obj):
    # RFC 9110 §14.2: a server MUST ignore a Range header it does not understand
    bucket, key, _ = obj
    resp = s3.get_object(Bucket=bucket, Key=key, Range="lines=1-2")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["Body"].read() == BODY


def _when(resp, delta_seconds: int) -> dt.datetime:
    return resp["LastModified"] + dt.timedelta(seconds=delta_seconds)


def test_conditional_gets(s3, obj):
    """GetObject conditionals (S3 GetObject, RFC 9110 §13.2.2 precedence)."""
    bucket, key, etag = obj
    head = s3.head_object(Bucket=bucket, Key=key)
    past, future = _when(head, -3600), _when(head, 3600)
    # condition kwargs -> expected (code, status), or None when the object is returned
    cases = [
        (dict(IfMatch=etag), None),  # matches
        (dict(IfMatch='"0123456789abcdef0123456789abcdef"'), ("PreconditionFailed", 412)),  # other etag
        (dict(IfMatch="*"), None),  # any current representation
        (dict(IfNoneMatch=etag), ("304", 304)),  # unchanged -> Not Modified (boto3 names it "304")
        (dict(IfNoneMatch='"0123456789abcdef0123456789abcdef"'), None),  # changed
        (dict(IfModifiedSince=past), None),  # modified since an hour ago
        (dict(IfModifiedSince=future), ("304", 304)),  # not modified since
        (dict(IfUnmodifiedSince=future), None),  # unmodified since the future
        (dict(IfUnmodifiedSince=past), ("PreconditionFailed", 412)),  # modified after
        # If-Match true + If-Unmodified-Since false -> 200 (S3 GetObject: If-Match wins)
        (dict(IfMatch=etag, IfUnmodifiedSince=past), None),
        # If-None-Match false + If-Modified-Since true -> 304 (S3 GetObject: If-None-Match wins)
        (dict(IfNoneMatch=etag, IfModifiedSince=past), ("304", 304)),
    ]
    for kwargs, expected in cases:
        if expected is None:
            assert s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read() == BODY, kwargs
        else:
            with pytest.raises(ClientError) as excinfo:
                s3.get_object(Bucket=bucket, Key=key, **kwargs)
            assert error_of(excinfo) == expected, kwargs


def test_conditional_head_answers_without_a_body(s3, obj):
    bucket, key, etag = obj
    with pytest.raises(ClientError) as excinfo:
        s3.head_object(Bucket=bucket, Key=key, IfNoneMatch=etag)
    assert error_of(excinfo) == ("304", 304)
    with pytest.raises(ClientError) as excinfo:
        s3.head_object(Bucket=bucket, Key=key, IfMatch='"nope"')
    assert error_of(excinfo) == ("412", 412)


def test_response_overrides(s3, obj):
    # GetObject response-* query parameters set the corresponding response headers
    bucket, key, _ = obj
    resp = s3.get_object(
        Bucket=bucket, Key=key,
        ResponseContentType="text/x-test", ResponseContentDisposition='attachment; filename="x.txt"',
        ResponseContentLanguage="de", ResponseCacheControl="no-store", ResponseContentEncoding="identity",
        ResponseExpires=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    )
    assert resp["ContentDisposition"] == 'attachment; filename="x.txt"'
    assert resp["ContentLanguage"] == "de"
    assert resp["CacheControl"] == "no-store"
    assert resp["ContentEncoding"] == "identity"
    assert resp["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Tue, 01 Jan 2030 00:00:00 GMT"
    assert resp["Body"].read() == BODY


def test_metadata_and_content_headers_round_trip(s3, bucket):
    put = dict(
        ContentType="application/x-custom", ContentDisposition="inline", ContentLanguage="fr",
        CacheControl="max-age=60", ContentEncoding="identity", Expires=dt.datetime(2031, 5, 6, tzinfo=dt.UTC),
        Metadata={"color": "blue", "multi-word": "a b c"},
    )
    s3.put_object(Bucket=bucket, Key="m", Body=b"meta", **put)
    for resp in (s3.head_object(Bucket=bucket, Key="m"), s3.get_object(Bucket=bucket, Key="m")):
        # (Content-Type is checked by the content-type regression test at the end)
        assert resp["ContentDisposition"] == "inline"
        assert resp["ContentLanguage"] == "fr"
        assert resp["CacheControl"] == "max-age=60"
        assert resp["ContentEncoding"] == "identity"
        assert resp["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Tue, 06 May 2031 00:00:00 GMT"
        assert resp["Metadata"] == {"color": "blue", "multi-word": "a b c"}
        assert resp["ContentLength"] == 4
    # no internal envelope metadata leaks to the client
    assert not [h for h in s3.head_object(Bucket=bucket, Key="m")["ResponseMetadata"]["HTTPHeaders"] if "s3proxy" in h]


def test_head_get_delete_and_missing_keys(s3, obj):
    bucket, key, etag = obj
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(BODY) and head["ETag"] == etag
    assert head["ResponseMetadata"]["HTTPHeaders"]["accept-ranges"] == "bytes"
    assert s3.delete_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key=key)
    expect_error("404", 404, s3.head_object, Bucket=bucket, Key=key)
    # deleting a missing key succeeds (S3 DeleteObject is idempotent)
    assert s3.delete_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error("NoSuchBucket", 404, s3.get_object, Bucket=bucket + "-none", Key=key)


def test_delete_objects(s3, bucket):
    for k in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}, {"Key": "missing"}]})
    # a missing key is reported as deleted (S3 DeleteObjects)
    assert sorted(d["Key"] for d in resp["Deleted"]) == ["a", "b", "missing"]
    assert not resp.get("Errors")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["c"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "c"}], "Quiet": True})
    assert not quiet.get("Deleted")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_objects_with_malformed_xml_is_malformed_xml(proxy, bucket):
    body = b"<Delete><Object><Key>a</Key></Object"  # truncated document
    import base64
    import hashlib

    path = f"/{bucket}?delete"
    headers = signed_headers(proxy.url, "POST", path, payload_hash=hashlib.sha256(body).hexdigest(), headers={
        "Content-Length": str(len(body)), "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()})
    resp = send(proxy.url, "POST", path, headers, body)
    assert (resp.status, resp.code) == (400, "MalformedXML")


# Copy source header forms: S3 CopyObject "x-amz-copy-source": bucket/key URL-encoded, optional leading slash
TRICKY_KEY = "dir one/ünï côdé+plus&amp?q=1#frag%25"


def test_copy_object_directives_and_encoded_source(s3, bucket):
    s3.put_object(Bucket=bucket, Key=TRICKY_KEY, Body=b"copy me", ContentType="text/plain", Metadata={"a": "1"})
    # COPY (default): metadata travels with the object
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": TRICKY_KEY})
    got = s3.get_object(Bucket=bucket, Key="copied")
    assert got["Body"].read() == b"copy me" and got["Metadata"] == {"a": "1"}
    # REPLACE: only the new metadata
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource=f"{bucket}/{TRICKY_KEY}",  # botocore URL-encodes it
                   MetadataDirective="REPLACE", Metadata={"b": "2"}, ContentType="application/json")
    got = s3.get_object(Bucket=bucket, Key="replaced")
    assert got["Body"].read() == b"copy me" and got["Metadata"] == {"b": "2"}
    # copying onto itself without changing anything is InvalidRequest (S3 CopyObject)
    expect_error(
        "InvalidRequest", 400, s3.copy_object, Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "copied"}
    )
    # ...and with REPLACE it is how S3 updates metadata in place
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "copied"},
                   MetadataDirective="REPLACE", Metadata={"c": "3"})
    assert s3.head_object(Bucket=bucket, Key="copied")["Metadata"] == {"c": "3"}
    expect_error("NoSuchKey", 404, s3.copy_object, Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "absent"})


def test_copy_source_conditionals(s3, obj):
    bucket, key, etag = obj
    src = {"Bucket": bucket, "Key": key}
    head = s3.head_object(Bucket=bucket, Key=key)
    past, future = _when(head, -3600), _when(head, 3600)
    # all copy-source conditions that fail answer 412 PreconditionFailed (S3 CopyObject)
    ok = [dict(CopySourceIfMatch=etag), dict(CopySourceIfNoneMatch='"other"'),
          dict(CopySourceIfModifiedSince=past), dict(CopySourceIfUnmodifiedSince=future)]
    bad = [dict(CopySourceIfMatch='"other"'), dict(CopySourceIfNoneMatch=etag),
           dict(CopySourceIfModifiedSince=future), dict(CopySourceIfUnmodifiedSince=past)]
    for kwargs in ok:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, **kwargs)
    for kwargs in bad:
        expect_error("PreconditionFailed", 412, s3.copy_object, Bucket=bucket, Key="dst", CopySource=src, **kwargs)


def test_object_tagging(s3, bucket):
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=1&b=two")
    assert sorted((t["Key"], t["Value"]) for t in s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]) == [
        ("a", "1"),
        ("b", "two"),
    ]
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "c", "Value": "3"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "c", "Value": "3"}]
    # tag count limit is 10 (S3 user guide, "Categorizing your storage using tags")
    expect_error("InvalidTag", 400, s3.put_object_tagging, Bucket=bucket, Key="t",
                 Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]})
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []


def test_versioning(s3, bucket):
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v1 = s3.put_object(Bucket=bucket, Key="v", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="v", Body=b"two")["VersionId"]
    assert v1 != v2
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"two"
    assert s3.get_object(Bucket=bucket, Key="v", VersionId=v1)["Body"].read() == b"one"
    assert s3.head_object(Bucket=bucket, Key="v", VersionId=v1)["ContentLength"] == 3
    # copy from an old version
    copied = s3.copy_object(Bucket=bucket, Key="old", CopySource={"Bucket": bucket, "Key": "v", "VersionId": v1})
    assert copied["CopySourceVersionId"] == v1
    assert s3.get_object(Bucket=bucket, Key="old")["Body"].read() == b"one"
    # a plain delete leaves a delete marker; GET then 404s, the versions stay
    marker = s3.delete_object(Bucket=bucket, Key="v")
    assert marker["DeleteMarker"] is True
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="v")
    versions = s3.list_object_versions(Bucket=bucket, Prefix="v")
    assert sorted(v["VersionId"] for v in versions["Versions"]) == sorted([v1, v2])
    assert [m["VersionId"] for m in versions["DeleteMarkers"]] == [marker["VersionId"]]
    # deleting a specific version removes it for good
    s3.delete_object(Bucket=bucket, Key="v", VersionId=v1)
    expect_error("NoSuchVersion", 404, s3.get_object, Bucket=bucket, Key="v", VersionId=v1)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"


# Subresources the proxy does not serve answer 501 NotImplemented rather than a wrong success.
@pytest.mark.parametrize("call", ["get_bucket_cors", "get_bucket_lifecycle_configuration", "get_bucket_website"])
def test_unimplemented_bucket_subresources_are_501(s3, bucket, call):
    expect_error("NotImplemented", 501, getattr(s3, call), Bucket=bucket)


def test_unimplemented_object_subresource_is_501(s3, obj):
    expect_error("NotImplemented", 501, s3.get_object_retention, Bucket=obj[0], Key=obj[1])


def test_request_id_on_success_and_error_responses(s3, obj):
    bucket, key, _ = obj
    for resp in (s3.head_object(Bucket=bucket, Key=key), s3.get_object(Bucket=bucket, Key=key),
                 s3.list_objects_v2(Bucket=bucket), s3.list_buckets()):
        assert resp["ResponseMetadata"]["HTTPHeaders"].get("x-amz-request-id")
    err = expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="missing")
    assert err.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-request-id")
    assert err.response["ResponseMetadata"]["RequestId"] == err.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]


# Object key length limit is 1024 bytes of UTF-8 (S3 user guide, "Naming objects").
@pytest.mark.parametrize(
    "key, ok",
    [
        ("k" * 1024, True),  # exactly at the limit
        ("k" * 1025, False),  # one byte over
        ("é" * 512, True),  # 1024 bytes in two-byte characters
        ("é" * 512 + "x", False),  # 1025 bytes, only 513 characters: the limit counts bytes
    ],
    ids=["1024-ascii", "1025-ascii", "1024-bytes-utf8", "1025-bytes-utf8"],
)
def test_key_length_limit(s3, bucket, key, ok):
    if ok:
        s3.put_object(Bucket=bucket, Key=key, Body=b"long")
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"long"
    else:
        expect_error("KeyTooLongError", 400, s3.put_object, Bucket=bucket, Key=key, Body=b"long")


@pytest.mark.slow
def test_awscli_s3api_object_calls(proxy, bucket, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(3000))
    put = json.loads(proxy.aws("s3api", "put-object", "--bucket", bucket, "--key", "cli/obj", "--body", str(src),
                               "--metadata", "k=v").stdout)
    out = tmp_path / "out.bin"
    got = json.loads(
        proxy.aws("s3api", "get-object", "--bucket", bucket, "--key", "cli/obj", "--range", "bytes=5-9", str(out)).stdout
    )
    assert got["ContentRange"] == "bytes 5-9/3000" and got["ETag"] == put["ETag"] and got["Metadata"] == {"k": "v"}
    assert out.read_bytes() == src.read_bytes()[5:10]
    failed = proxy.aws("s3api", "get-object", "--bucket", bucket, "--key", "cli/none", str(out), check=False)
    assert failed.returncode != 0 and b"NoSuchKey" in failed.stderr


def test_stored_content_type_replaces_the_default_instead_of_doubling_the_header(s3, bucket):
    # GET/HEAD carry exactly one Content-Type: the stored one, else binary/octet-stream; a
    # response-content-type override replaces it (S3 GetObject). Found answering
    # "binary/octet-stream, application/x-custom": the default and the stored value as two headers.
    def content_type(resp):
        return resp["ResponseMetadata"]["HTTPHeaders"]["content-type"]

    s3.put_object(Bucket=bucket, Key="ct", Body=b"x", ContentType="application/x-custom")
    assert content_type(s3.head_object(Bucket=bucket, Key="ct")) == "application/x-custom"
    assert content_type(s3.get_object(Bucket=bucket, Key="ct")) == "application/x-custom"
    assert content_type(s3.get_object(Bucket=bucket, Key="ct", ResponseContentType="text/plain")) == "text/plain"
    # CopyObject REPLACE and CreateMultipartUpload store it the same way
    s3.copy_object(Bucket=bucket, Key="ct2", CopySource={"Bucket": bucket, "Key": "ct"},
                   MetadataDirective="REPLACE", ContentType="application/json")
    assert content_type(s3.head_object(Bucket=bucket, Key="ct2")) == "application/json"
    uid = s3.create_multipart_upload(Bucket=bucket, Key="ct3", ContentType="application/x-big")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="ct3", UploadId=uid, PartNumber=1, Body=b"p")["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="ct3", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}
    )
    assert content_type(s3.head_object(Bucket=bucket, Key="ct3")) == "application/x-big"
