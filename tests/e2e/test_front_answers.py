"""Small answers real tools depend on, each as S3 gives it, in front of both backends (issue 20):
a re-sent CompleteMultipartUpload, the validators on a 304, Content-Encoding without the
aws-chunked framing token, and CreateBucket of a bucket one already owns.

Facts: S3 API reference, CreateBucket ("For legacy compatibility, if you re-create an existing
bucket that you already own in the North Virginia Region, Amazon S3 returns 200 OK";
BucketAlreadyOwnedByYou everywhere else); RFC 9110 §15.4.5 (a 304 carries the ETag a 200 would);
S3 user guide, "Uploading with aws-chunked" (aws-chunked is the transfer's encoding, S3 does not
store it); re-sent Complete: S3 answers it again with the same result (observed on AWS, and moto
and SeaweedFS do the same), where a proxy that forgot the upload answered NoSuchUpload.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .conftest import start_proxy
from .front_helpers import error_of, expect_error, send, signed_headers

PART = 5 * 1024 * 1024


def test_304_carries_etag_and_last_modified(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"cached")
    head = s3.head_object(Bucket=bucket, Key="k")
    for call in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as excinfo:
            call(Bucket=bucket, Key="k", IfNoneMatch=put["ETag"])
        assert error_of(excinfo) == ("304", 304)
        sent = excinfo.value.response["ResponseMetadata"]["HTTPHeaders"]
        assert sent["etag"] == put["ETag"]
        assert sent["last-modified"] == head["ResponseMetadata"]["HTTPHeaders"]["last-modified"]
    # If-Modified-Since in the future: the same validators
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="k", IfModifiedSince=head["LastModified"].replace(year=2100))
    assert excinfo.value.response["ResponseMetadata"]["HTTPHeaders"]["etag"] == put["ETag"]


def test_content_encoding_is_stored_without_aws_chunked(proxy, s3, bucket):
    body = gzip.compress(b"hello " * 100)
    # botocore sends an aws-chunked body with a checksum trailer: Content-Encoding "gzip,aws-chunked"
    s3.put_object(Bucket=bucket, Key="z", Body=body, ContentEncoding="gzip", ChecksumAlgorithm="CRC32")
    assert s3.head_object(Bucket=bucket, Key="z")["ContentEncoding"] == "gzip"
    # a hand-made aws-chunked upload whose only encoding is the framing: no Content-Encoding at all
    data = b"plain"
    chunked = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"
    headers = signed_headers(proxy.url, "PUT", f"/{bucket}/c", payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                             headers={"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))})
    headers["Content-Length"] = str(len(chunked))
    assert send(proxy.url, "PUT", f"/{bucket}/c", headers, chunked).status == 200
    got = s3.get_object(Bucket=bucket, Key="c")
    assert got["Body"].read() == data and "ContentEncoding" not in got
    # the backend holds the same: never the framing token
    backend = proxy.backend_client()
    if backend is not None:
        listed = [b["Name"] for b in backend.list_buckets()["Buckets"]]
        assert bucket in listed
        assert backend.head_object(Bucket=bucket, Key="z").get("ContentEncoding") == "gzip"


def test_create_bucket_you_own_in_us_east_1_is_200(s3, bucket):
    assert s3.create_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    s3.put_object(Bucket=bucket, Key="kept", Body=b"x")
    assert s3.create_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"x"  # nothing was reset


@pytest.mark.parametrize("backend", ["fs", "s3"])
def test_create_bucket_you_own_elsewhere_is_409(tmp_path, moto_server, backend):
    thread, endpoint = start_proxy(tmp_path, backend, moto_server, region="eu-west-1")
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint.url, aws_access_key_id=endpoint.access_key,
                          aws_secret_access_key=endpoint.secret_key, region_name="eu-west-1",
                          config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        name = f"r-{uuid.uuid4().hex[:16]}"
        conf = {"LocationConstraint": "eu-west-1"}
        s3.create_bucket(Bucket=name, CreateBucketConfiguration=conf)
        expect_error("BucketAlreadyOwnedByYou", 409, s3.create_bucket, Bucket=name, CreateBucketConfiguration=conf)
    finally:
        thread.stop()


def _upload(s3, bucket, key, parts=2):
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    listed = []
    for n in range(1, parts + 1):
        body = bytes([n]) * (PART if n < parts else 10)
        listed.append(
            {"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=body)["ETag"]}
        )
    return upload, {"Parts": listed}


@pytest.mark.slow
def test_resent_complete_returns_the_same_result(s3, bucket):
    upload, parts = _upload(s3, bucket, "mpu")
    first = s3.complete_multipart_upload(Bucket=bucket, Key="mpu", UploadId=upload, MultipartUpload=parts)
    again = s3.complete_multipart_upload(Bucket=bucket, Key="mpu", UploadId=upload, MultipartUpload=parts)
    for field in ("ETag", "Bucket", "Key", "Location"):
        assert again[field] == first[field], field
    assert again.get("ServerSideEncryption") == first.get("ServerSideEncryption")
    assert s3.get_object(Bucket=bucket, Key="mpu")["Body"].read()[-10:] == bytes([2]) * 10
    # a different part list is not the same request: the upload is gone
    other = {"Parts": parts["Parts"][:1]}
    expect_error(
        "NoSuchUpload", 404, s3.complete_multipart_upload, Bucket=bucket, Key="mpu", UploadId=upload, MultipartUpload=other
    )
    # nor is the same upload id on another key
    expect_error(
        "NoSuchUpload", 404, s3.complete_multipart_upload, Bucket=bucket, Key="other", UploadId=upload, MultipartUpload=parts
    )
    # once the object was overwritten, the upload is no longer what the key holds
    s3.put_object(Bucket=bucket, Key="mpu", Body=b"new")
    expect_error(
        "NoSuchUpload", 404, s3.complete_multipart_upload, Bucket=bucket, Key="mpu", UploadId=upload, MultipartUpload=parts
    )


def test_a_large_put_whose_body_fails_its_digest_is_bad_digest(s3, bucket):
    """A body past SMALL_BODY streams to the backend while it is verified; when it fails, the client
    hears the body's verdict (400 BadDigest), not a broken backend (it was a 503 over the S3 backend)."""
    body = os.urandom(3 * 1024 * 1024)
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    expect_error("BadDigest", 400, s3.put_object, Bucket=bucket, Key="big", Body=body, ContentMD5=wrong)
    expect_error("404", 404, s3.head_object, Bucket=bucket, Key="big")  # nothing was stored
