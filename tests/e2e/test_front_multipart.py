"""Multipart uploads through the front door, in front of both backends, with boto3 and the awscli:
several parts over 5 MiB, UploadPartCopy with a range, ListParts, ListMultipartUploads, Abort, the
completion errors (InvalidPart, InvalidPartOrder, EntityTooSmall, NoSuchUpload), `aws s3 cp` of a
40 MiB file (the awscli switches to multipart at 8 MiB) and `aws s3 sync`.

Facts: S3 API reference (CreateMultipartUpload, UploadPart, UploadPartCopy, CompleteMultipartUpload,
ListParts, ListMultipartUploads) and the user guide's "Amazon S3 multipart upload limits"
(parts 1..10000, each at least 5 MiB except the last)."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from .front_helpers import expect_error

MiB = 1024 * 1024


def _multipart_etag(parts: list[bytes]) -> str:
    """S3's multipart ETag: md5 of the concatenated part md5s, a dash, the part count."""
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def test_multipart_several_parts_over_5_mib(s3, bucket):
    parts = [os.urandom(5 * MiB + 1), os.urandom(5 * MiB + 17), os.urandom(123)]  # two full parts, a short last
    up = s3.create_multipart_upload(Bucket=bucket, Key="big", ContentType="application/x-big", Metadata={"m": "1"})
    uid = up["UploadId"]
    etags = [
        s3.upload_part(Bucket=bucket, Key="big", UploadId=uid, PartNumber=i + 1, Body=p)["ETag"] for i, p in enumerate(parts)
    ]
    listed = s3.list_parts(Bucket=bucket, Key="big", UploadId=uid)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed["Parts"]] == [
        (i + 1, etags[i], len(p)) for i, p in enumerate(parts)
    ]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("big", uid)]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
    )
    # a multipart object's ETag is not an MD5: it ends in "-<part count>" (CompleteMultipartUpload)
    assert done["ETag"].endswith('-3"')
    whole = b"".join(parts)
    got = s3.get_object(Bucket=bucket, Key="big")
    assert got["ContentLength"] == len(whole) and got["ETag"] == done["ETag"]
    assert got["Metadata"] == {"m": "1"}  # (Content-Type: see test_front_objects' content-type regression)
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(whole).digest()
    # a range across the part boundary reads the right bytes
    edge = len(parts[0])
    ranged = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={edge - 10}-{edge + 9}")["Body"].read()
    assert ranged == whole[edge - 10: edge + 10]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    expect_error("NoSuchUpload", 404, s3.list_parts, Bucket=bucket, Key="big", UploadId=uid)


def test_upload_part_copy_with_a_range(s3, bucket):
    source = os.urandom(6 * MiB)
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    first = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=uid, PartNumber=1,
                                CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=f"bytes=0-{5 * MiB}")
    second = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=uid, PartNumber=2,
                                 CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange="bytes=100-199")
    # a copy range past the source's end is InvalidArgument (UploadPartCopy)
    expect_error("InvalidArgument", 400, s3.upload_part_copy, Bucket=bucket, Key="assembled", UploadId=uid, PartNumber=3,
                 CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=f"bytes=0-{6 * MiB}")
    etags = [first["CopyPartResult"]["ETag"], second["CopyPartResult"]["ETag"]]
    s3.complete_multipart_upload(Bucket=bucket, Key="assembled", UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    assert s3.get_object(Bucket=bucket, Key="assembled")["Body"].read() == source[: 5 * MiB + 1] + source[100:200]


def test_part_and_multipart_etags_are_md5s_of_the_plaintext_not_of_the_stored_ciphertext(s3, bucket):
    # For SSE-S3 (what the proxy reports), S3 answers a part's ETag as the MD5 of the part's data
    # and the completed object's as md5(concatenated binary part MD5s)-N (docs/reference
    # s3-sse-and-kms.md §1.3; AWS calls ETags opaque but every S3 client that verifies multipart
    # uploads computes exactly this). Found answering the backend's ETags of the encrypted parts, so
    # a client cannot verify the parts it sent or copied, nor the object it assembled.
    source = os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    sent = s3.upload_part(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1, Body=source)["ETag"]
    done = s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=uid,
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": sent}]})
    uid = s3.create_multipart_upload(Bucket=bucket, Key="copied")["UploadId"]
    copied = s3.upload_part_copy(
        Bucket=bucket,
        Key="copied",
        UploadId=uid,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "src"},
        CopySourceRange="bytes=100-199",
    )["CopyPartResult"]["ETag"]
    assert sent == f'"{hashlib.md5(source).hexdigest()}"'
    assert copied == f'"{hashlib.md5(source[100:200]).hexdigest()}"'
    assert done["ETag"] == _multipart_etag([source])


def test_completion_errors(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="bad")["UploadId"]
    big = [os.urandom(5 * MiB), os.urandom(5 * MiB)]
    etags = {n: s3.upload_part(Bucket=bucket, Key="bad", UploadId=uid, PartNumber=n, Body=body)["ETag"]
             for n, body in ((1, big[0]), (2, big[1]), (3, b"tiny"), (4, b"tail"))}

    def complete(*numbers, etag=None):
        parts = [{"PartNumber": n, "ETag": etag or etags.get(n, '"00000000000000000000000000000000"')} for n in numbers]
        return s3.complete_multipart_upload(Bucket=bucket, Key="bad", UploadId=uid, MultipartUpload={"Parts": parts})

    # each case breaks exactly one rule, so the expected error is unambiguous
    expect_error("InvalidPart", 400, complete, 1, 5)  # part 5 was never uploaded
    expect_error("InvalidPart", 400, complete, 1, etag='"00000000000000000000000000000000"')  # wrong ETag
    expect_error("InvalidPartOrder", 400, complete, 2, 1)  # not ascending
    expect_error("EntityTooSmall", 400, complete, 1, 3, 4)  # part 3 is < 5 MiB and not the last
    # the last part may be small; unlisted parts (4) are dropped
    complete(1, 2, 3)
    assert s3.get_object(Bucket=bucket, Key="bad")["Body"].read() == big[0] + big[1] + b"tiny"
    # the upload is gone once completed
    expect_error("NoSuchUpload", 404, complete, 1)


def test_abort_and_unknown_upload(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="gone")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="gone", UploadId=uid, PartNumber=1, Body=b"x")
    assert s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=uid)["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error("NoSuchUpload", 404, s3.upload_part, Bucket=bucket, Key="gone", UploadId=uid, PartNumber=2, Body=b"x")
    expect_error("NoSuchUpload", 404, s3.list_parts, Bucket=bucket, Key="gone", UploadId="not-an-upload")
    expect_error("NoSuchUpload", 404, s3.abort_multipart_upload, Bucket=bucket, Key="gone", UploadId="not-an-upload")
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="gone")


# Part numbers are 1..10000 (S3 multipart upload limits): outside that is InvalidArgument
@pytest.mark.parametrize("number", [0, 10001], ids=["zero", "10001"])
def test_part_number_out_of_range(s3, bucket, number):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="pn")["UploadId"]
    expect_error("InvalidArgument", 400, s3.upload_part, Bucket=bucket, Key="pn", UploadId=uid, PartNumber=number, Body=b"x")


@pytest.mark.slow
def test_awscli_cp_40_mib_is_multipart_and_round_trips(proxy, bucket, tmp_path):
    src = tmp_path / "forty.bin"
    with src.open("wb") as fh:
        for _ in range(40):
            fh.write(os.urandom(MiB))
    proxy.aws("s3", "cp", str(src), f"s3://{bucket}/forty.bin")
    head = proxy.client().head_object(Bucket=bucket, Key="forty.bin")
    # the awscli's 8 MiB multipart threshold and chunk size: 5 parts, ETag "<md5>-5"
    assert head["ContentLength"] == 40 * MiB and head["ETag"].endswith('-5"')
    back = tmp_path / "back.bin"
    proxy.aws("s3", "cp", f"s3://{bucket}/forty.bin", str(back))
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()


@pytest.mark.slow
def test_awscli_sync_and_rm(proxy, bucket, tmp_path):
    local = tmp_path / "tree"
    files = {"a.txt": b"alpha", "sub/b.bin": os.urandom(70000), "sub/deeper/c": b"", "space name.txt": b"s"}
    for rel, data in files.items():
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
        # an hour old: S3 reports LastModified in whole seconds, and the awscli re-uploads any file
        # whose mtime is later than that (SizeAndLastModifiedSync), so a fresh file could race it
        os.utime(local / rel, (time.time() - 3600, time.time() - 3600))
    proxy.aws("s3", "sync", str(local), f"s3://{bucket}/tree")
    s3 = proxy.client()
    for rel, data in files.items():
        assert s3.get_object(Bucket=bucket, Key=f"tree/{rel}")["Body"].read() == data
    assert s3.list_objects_v2(Bucket=bucket, Prefix="tree/")["KeyCount"] == len(files)
    # a second sync finds nothing to do (sizes and times match what ListObjects reports)
    assert proxy.aws("s3", "sync", str(local), f"s3://{bucket}/tree").stdout.strip() == b""
    proxy.aws("s3", "rm", "--recursive", f"s3://{bucket}/tree")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
