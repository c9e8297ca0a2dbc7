"""GET/HEAD ?partNumber=N: S3's "ranged GET of part N" (API reference, GetObject PartNumber), answered
206 with Content-Range and x-amz-mp-parts-count; a single-part object has only part 1."""

from __future__ import annotations

import os

import pytest
from botocore.exceptions import ClientError

PART = 5 * 1024 * 1024


def _multipart(s3, bucket: str, key: str, sizes: list[int]) -> list[bytes]:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    bodies = [os.urandom(n) for n in sizes]
    etags = [s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=i + 1, Body=b)["ETag"] for i, b in enumerate(bodies)]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up,
                                 MultipartUpload={"Parts": [{"ETag": e, "PartNumber": i + 1} for i, e in enumerate(etags)]})
    return bodies


def test_get_and_head_each_part_of_a_multipart_object(s3, bucket):
    bodies = _multipart(s3, bucket, "mp", [PART, PART, 1234])
    offset = 0
    for number, body in enumerate(bodies, 1):
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=number)
        assert got["Body"].read() == body
        assert got["PartsCount"] == 3 and got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {offset}-{offset + len(body) - 1}/{2 * PART + 1234}"
        head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=number)
        assert head["ContentLength"] == len(body) and head["PartsCount"] == 3
        offset += len(body)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=4)
    assert exc.value.response["Error"]["Code"] == "InvalidPartNumber"


def test_single_part_object_has_part_1_only(s3, bucket):
    s3.put_object(Bucket=bucket, Key="one", Body=b"whole object")
    got = s3.get_object(Bucket=bucket, Key="one", PartNumber=1)
    assert got["Body"].read() == b"whole object" and "PartsCount" not in got
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="one", PartNumber=2)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_part_number_and_range_together_are_refused(s3, bucket):
    s3.put_object(Bucket=bucket, Key="one", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="one", PartNumber=1, Range="bytes=0-0")
    assert exc.value.response["Error"]["Code"] == "InvalidRequest"
