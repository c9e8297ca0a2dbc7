"""GetObjectAttributes through the front door, with boto3, in front of both backends (issue 20: it
answered 501).

Facts: S3 API reference, GetObjectAttributes (ETag without quotes; Checksum with ChecksumType;
ObjectParts paged by MaxParts / PartNumberMarker with TotalPartsCount; StorageClass; ObjectSize;
Last-Modified and x-amz-version-id headers; InvalidArgument "Invalid attribute name specified.")
and GetObjectAttributesParts (general purpose buckets list a Part only when it carries an
additional checksum). SSE-C objects need their key, as on GET.
"""

from __future__ import annotations

import base64
import zlib

import pytest

from .front_helpers import expect_error, send, signed_headers
from .sse_helpers import CustomerKey

ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
PART = 5 * 1024 * 1024


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_single_part_object(s3, bucket):
    body = b"attributes " * 100
    put = s3.put_object(Bucket=bucket, Key="k", Body=body, ChecksumAlgorithm="CRC32", StorageClass="STANDARD_IA")
    got = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=ALL)
    assert got["ETag"] == put["ETag"].strip('"')  # unquoted, the client's ETag (not the ciphertext's)
    assert got["ObjectSize"] == len(body)  # the plaintext size
    assert got["StorageClass"] == "STANDARD_IA"
    assert got["Checksum"] == {"ChecksumCRC32": _crc32(body), "ChecksumType": "FULL_OBJECT"}
    assert "ObjectParts" not in got  # not a multipart object
    head = s3.head_object(Bucket=bucket, Key="k")
    assert got["LastModified"] == head["LastModified"]
    # only what was asked for
    only = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert only["ObjectSize"] == len(body) and "ETag" not in only and "StorageClass" not in only


def test_multipart_object_parts_page_by_max_parts_and_marker(s3, bucket):
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mpu", ChecksumAlgorithm="CRC32")["UploadId"]
    bodies = [bytes([n]) * (PART if n < 3 else 1000) for n in (1, 2, 3)]
    parts = []
    for n, data in enumerate(bodies, 1):
        r = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=upload, PartNumber=n, Body=data, ChecksumAlgorithm="CRC32")
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mpu", UploadId=upload, MultipartUpload={"Parts": parts})
    got = s3.get_object_attributes(Bucket=bucket, Key="mpu", ObjectAttributes=ALL)
    assert got["ETag"] == done["ETag"].strip('"') and got["ETag"].endswith("-3")
    assert got["ObjectSize"] == sum(map(len, bodies))
    listed = got["ObjectParts"]
    assert listed["TotalPartsCount"] == 3 and listed["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"], p["ChecksumCRC32"]) for p in listed["Parts"]] == [
        (n, len(data), _crc32(data)) for n, data in enumerate(bodies, 1)]
    first = s3.get_object_attributes(Bucket=bucket, Key="mpu", ObjectAttributes=["ObjectParts"], MaxParts=2)["ObjectParts"]
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2] and first["IsTruncated"] is True
    assert first["NextPartNumberMarker"] == 2 and first["MaxParts"] == 2
    rest = s3.get_object_attributes(Bucket=bucket, Key="mpu", ObjectAttributes=["ObjectParts"], MaxParts=2,
                                    PartNumberMarker=first["NextPartNumberMarker"])["ObjectParts"]
    assert [p["PartNumber"] for p in rest["Parts"]] == [3] and rest["IsTruncated"] is False
    assert rest["PartNumberMarker"] == 2


def test_parts_without_checksums_are_counted_not_listed(proxy, s3, bucket):
    upload = s3.create_multipart_upload(Bucket=bucket, Key="plain")["UploadId"]
    # a part sent without any flexible checksum (hand-signed: boto3 adds one by default)
    data = b"p" * 100
    path = f"/{bucket}/plain?partNumber=1&uploadId={upload}"
    headers = signed_headers(proxy.url, "PUT", path, headers={"Content-Length": str(len(data))})
    r = send(proxy.url, "PUT", path, headers, data)
    assert r.status == 200, r.body
    s3.complete_multipart_upload(Bucket=bucket, Key="plain", UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r.headers["etag"]}]})
    listed = s3.get_object_attributes(Bucket=bucket, Key="plain", ObjectAttributes=["ObjectParts"])["ObjectParts"]
    assert listed["TotalPartsCount"] == 1 and "Parts" not in listed


def test_versions_and_delete_markers(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="v", Body=b"one")["VersionId"]
    s3.put_object(Bucket=bucket, Key="v", Body=b"second")
    old = s3.get_object_attributes(Bucket=bucket, Key="v", VersionId=v1, ObjectAttributes=["ObjectSize"])
    assert old["ObjectSize"] == 3 and old["VersionId"] == v1
    s3.delete_object(Bucket=bucket, Key="v")
    expect_error("NoSuchKey", 404, s3.get_object_attributes, Bucket=bucket, Key="v", ObjectAttributes=["ETag"])


def _ssec(key: CustomerKey) -> dict[str, str]:
    # GetObjectAttributes takes the SSE-C key as the header's own text (boto3 encodes it only for GET/PUT/...)
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key.b64, "SSECustomerKeyMD5": key.md5}


def test_ssec_object_needs_its_key(s3, bucket):
    key, other = CustomerKey.new(), CustomerKey.new()
    s3.put_object(Bucket=bucket, Key="c", Body=b"secret", **key.args())
    expect_error("InvalidRequest", 400, s3.get_object_attributes, Bucket=bucket, Key="c", ObjectAttributes=["ETag"])
    expect_error("AccessDenied", 403, s3.get_object_attributes, Bucket=bucket, Key="c", ObjectAttributes=["ETag"], **_ssec(other))
    got = s3.get_object_attributes(Bucket=bucket, Key="c", ObjectAttributes=["ObjectSize", "ETag"], **_ssec(key))
    assert got["ObjectSize"] == 6


@pytest.mark.parametrize("value", ["", "Size", "ETag,Owner"])
def test_unknown_or_missing_attribute_names(proxy, s3, bucket, value):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    path = f"/{bucket}/k?attributes"
    headers = signed_headers(proxy.url, "GET", path, payload_hash="UNSIGNED-PAYLOAD",
                             headers={"x-amz-object-attributes": value} if value else {})
    r = send(proxy.url, "GET", path, headers)
    assert (r.status, r.code) == (400, "InvalidArgument"), r.body
    assert b"Invalid attribute name specified." in r.body


def test_missing_object(s3, bucket):
    expect_error("NoSuchKey", 404, s3.get_object_attributes, Bucket=bucket, Key="none", ObjectAttributes=["ETag"])
