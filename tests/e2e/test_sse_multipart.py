"""Multipart uploads in every mode: Create with the mode, UploadPart and UploadPartCopy with the
matching SSE-C key, ListParts with plaintext sizes, Complete, reads across parts, and the error rows
for parts.

Contract: reference s3-sse-and-kms.md §1.1 (UploadPart/UploadPartCopy take cust only; Complete has
no SSE-C echo), §1.2 (multipart rows), §1.3 (multipart ETag is `-N`, never MD5)."""

from __future__ import annotations

import hashlib

import pytest

from s3proxy.format.sizes import ciphertext_size

from .sse_helpers import PART, C, CustomerKey, add_headers, assert_sealed, body_of, expect_error, unique

UPLOAD_KEY, SOURCE_KEY, OTHER_KEY = CustomerKey.new(), CustomerKey.new(), CustomerKey.new()

# (Create args, args every part and every read needs, stored mode, Create's echo)
MODES = {
    # (no header → SSE-S3 is the matrix's and test_sse_bucket_default's business)
    "sse-s3": ({"ServerSideEncryption": "AES256"}, {}, "AES256", "AES256"),
    "sse-kms": ({"ServerSideEncryption": "aws:kms"}, {}, "aws:kms", "aws:kms"),
    "sse-c": (UPLOAD_KEY.args(), UPLOAD_KEY.args(), "SSE-C", None),
}


@pytest.fixture(scope="module")
def mpu_bucket(proxy):
    name = unique("mpu")
    s3 = proxy.client()
    s3.create_bucket(Bucket=name)
    # an SSE-C source for UploadPartCopy: its own key, given as the copy-source key
    s3.put_object(Bucket=name, Key="ssec-source", Body=body_of(3 * C + 5, "source"), **SOURCE_KEY.args())
    return name


@pytest.mark.parametrize("mode", list(MODES))
def test_multipart_in_every_mode(proxy, mpu_bucket, mode):
    s3 = proxy.client()
    create_args, part_args, stored_mode, echo = MODES[mode]
    key = unique(f"mpu-{mode}")
    created = s3.create_multipart_upload(Bucket=mpu_bucket, Key=key, **create_args)
    if echo is None:
        assert created["SSECustomerKeyMD5"] == UPLOAD_KEY.md5
    else:
        assert created["ServerSideEncryption"] == echo
    upload = created["UploadId"]
    part1 = body_of(PART + 3, key)  # a part just over the minimum, not a multiple of the chunk size
    source = body_of(3 * C + 5, "source")
    first, last = C - 2, 2 * C + 1  # the last part: a source range crossing two chunk boundaries
    p1 = s3.upload_part(Bucket=mpu_bucket, Key=key, UploadId=upload, PartNumber=1, Body=part1, **part_args)
    p2 = s3.upload_part_copy(Bucket=mpu_bucket, Key=key, UploadId=upload, PartNumber=2,
                             CopySource={"Bucket": mpu_bucket, "Key": "ssec-source"}, CopySourceRange=f"bytes={first}-{last}",
                             **SOURCE_KEY.copy_source_args(), **part_args)
    for p in (p1, p2):
        if echo is None:
            assert p["SSECustomerKeyMD5"] == UPLOAD_KEY.md5
        else:
            assert p["ServerSideEncryption"] == echo
    sizes = (len(part1), last - first + 1)
    listed = s3.list_parts(Bucket=mpu_bucket, Key=key, UploadId=upload)
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [(1, sizes[0]), (2, sizes[1])]  # plaintext sizes

    etags = [p1["ETag"], p2["CopyPartResult"]["ETag"]]
    done = s3.complete_multipart_upload(
        Bucket=mpu_bucket,
        Key=key,
        UploadId=upload,
        **part_args,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
    )
    assert done["ETag"].strip('"').endswith("-2")  # §1.3: multipart ETags are `-N`
    headers = done["ResponseMetadata"]["HTTPHeaders"]
    assert not any("customer" in h for h in headers)  # §1.1: Complete does not echo SSE-C [L]
    if echo is not None:
        assert done["ServerSideEncryption"] == echo

    data = part1 + source[first : last + 1]
    head = s3.head_object(Bucket=mpu_bucket, Key=key, **part_args)
    assert head["ContentLength"] == len(data) and head["ETag"] == done["ETag"]
    assert s3.get_object(Bucket=mpu_bucket, Key=key, **part_args)["Body"].read() == data
    a, b = len(part1) - 10, len(part1) + 20  # across the part boundary
    ranged = s3.get_object(Bucket=mpu_bucket, Key=key, Range=f"bytes={a}-{b}", **part_args)
    assert ranged["Body"].read() == data[a : b + 1]
    listed_obj = s3.list_objects_v2(Bucket=mpu_bucket, Prefix=key)["Contents"][0]
    assert listed_obj["Size"] == len(data) and listed_obj["ETag"] == done["ETag"]
    assert done["ETag"].strip('"') != hashlib.md5(data).hexdigest()
    stored = assert_sealed(proxy, mpu_bucket, key, data, stored_mode, secrets=(UPLOAD_KEY.raw, SOURCE_KEY.raw), multipart=True)
    assert len(stored.body) == sum(ciphertext_size(n) for n in sizes)


@pytest.fixture
def ssec_upload(proxy, mpu_bucket):
    s3 = proxy.client()
    key = unique("ssec-mpu")
    upload = s3.create_multipart_upload(Bucket=mpu_bucket, Key=key, **UPLOAD_KEY.args())["UploadId"]
    yield key, upload
    s3.abort_multipart_upload(Bucket=mpu_bucket, Key=key, UploadId=upload)


INITIATE = "The multipart upload initiate requested encryption"
MISMATCH = "The provided encryption parameters did not match the ones used originally"


def test_ssec_part_without_key(proxy, mpu_bucket, ssec_upload):
    """§1.2 [L]: an SSE-C upload's part without the SSE-C headers → 400 InvalidRequest."""
    key, upload = ssec_upload
    s3 = proxy.client()
    expect_error(lambda: s3.upload_part(Bucket=mpu_bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x"),
                 400, "InvalidRequest", INITIATE)
    expect_error(
        lambda: s3.upload_part_copy(
            Bucket=mpu_bucket,
            Key=key,
            UploadId=upload,
            PartNumber=1,
            CopySource={"Bucket": mpu_bucket, "Key": "ssec-source"},
            **SOURCE_KEY.copy_source_args(),
        ),
        400,
        "InvalidRequest",
        INITIATE,
    )


def test_ssec_part_with_a_different_key(proxy, mpu_bucket, ssec_upload):
    """§1.2 [L]: a part with another SSE-C key → 400 InvalidRequest (not 403: the upload's key is known)."""
    key, upload = ssec_upload
    s3 = proxy.client()
    expect_error(lambda: s3.upload_part(Bucket=mpu_bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x", **OTHER_KEY.args()),
                 400, "InvalidRequest", MISMATCH)
    expect_error(lambda: s3.upload_part_copy(Bucket=mpu_bucket, Key=key, UploadId=upload, PartNumber=1,
                                             CopySource={"Bucket": mpu_bucket, "Key": "ssec-source"},
                                             **SOURCE_KEY.copy_source_args(), **OTHER_KEY.args()),
                 400, "InvalidRequest", MISMATCH)


def test_part_with_key_on_an_upload_without_ssec(proxy, mpu_bucket):
    """§1.2 [L] "(or the reverse)": SSE-C headers on a part of a non-SSE-C upload → 400 InvalidRequest."""
    s3 = proxy.client()
    key = unique("plain-mpu")
    upload = s3.create_multipart_upload(Bucket=mpu_bucket, Key=key)["UploadId"]
    try:
        expect_error(
            lambda: s3.upload_part(Bucket=mpu_bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x", **UPLOAD_KEY.args()),
            400,
            "InvalidRequest",
            INITIATE,
        )
    finally:
        s3.abort_multipart_upload(Bucket=mpu_bucket, Key=key, UploadId=upload)


def test_upload_part_copy_source_key_is_checked(proxy, mpu_bucket, ssec_upload):
    """An SSE-C copy source needs its copy-source key: none → 400 InvalidRequest, wrong → 403 AccessDenied [L]."""
    key, upload = ssec_upload
    s3 = proxy.client()
    src = {"Bucket": mpu_bucket, "Key": "ssec-source"}
    expect_error(lambda: s3.upload_part_copy(Bucket=mpu_bucket, Key=key, UploadId=upload, PartNumber=1, CopySource=src,
                                             **UPLOAD_KEY.args()), 400, "InvalidRequest", "correct parameters must be provided")
    expect_error(lambda: s3.upload_part_copy(Bucket=mpu_bucket, Key=key, UploadId=upload, PartNumber=1, CopySource=src,
                                             **OTHER_KEY.copy_source_args(), **UPLOAD_KEY.args()), 403, "AccessDenied")


@pytest.mark.parametrize("op", ["UploadPart", "UploadPartCopy"])
def test_sse_header_on_part_requests(proxy, mpu_bucket, op):
    """x-amz-server-side-encryption on UploadPart/UploadPartCopy → 400 InvalidArgument (boto3 #3943)."""
    s3 = proxy.client()
    key = unique("hdr")
    upload = s3.create_multipart_upload(Bucket=mpu_bucket, Key=key)["UploadId"]
    s3.put_object(Bucket=mpu_bucket, Key="plain-source", Body=b"p")
    add_headers(s3, f"before-sign.s3.{op}", {"x-amz-server-side-encryption": "AES256"})
    try:
        if op == "UploadPart":
            call = lambda: s3.upload_part(Bucket=mpu_bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x")  # noqa: E731
        else:
            call = lambda: s3.upload_part_copy(Bucket=mpu_bucket, Key=key, UploadId=upload, PartNumber=1,  # noqa: E731
                                               CopySource={"Bucket": mpu_bucket, "Key": "plain-source"})
        expect_error(call, 400, "InvalidArgument", "not supported for this operation")
    finally:
        proxy.client().abort_multipart_upload(Bucket=mpu_bucket, Key=key, UploadId=upload)


def test_ssec_complete_without_the_key_succeeds_as_s3_did_before_sdks_sent_it(proxy, mpu_bucket):
    """CompleteMultipartUpload's SSE-C parameters are "required only when the object was created using a
    checksum algorithm" (S3 API reference, CompleteMultipartUpload): an SSE-C upload created without
    one completes without the key (older SDKs and tools send none)."""
    s3 = proxy.client(request_checksum_calculation="when_required")
    key = unique("ssec-complete")
    upload = s3.create_multipart_upload(Bucket=mpu_bucket, Key=key, **UPLOAD_KEY.args())["UploadId"]
    etag = s3.upload_part(Bucket=mpu_bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"only part", **UPLOAD_KEY.args())[
        "ETag"
    ]
    s3.complete_multipart_upload(Bucket=mpu_bucket, Key=key, UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object(Bucket=mpu_bucket, Key=key, **UPLOAD_KEY.args())["Body"].read() == b"only part"


def test_multipart_with_bucket_key(proxy, mpu_bucket):
    """Create with BucketKeyEnabled echoes it, and the completed object echoes it on HEAD (§1.1, §1.6)."""
    s3 = proxy.client()
    key = unique("bk-mpu")
    created = s3.create_multipart_upload(Bucket=mpu_bucket, Key=key, ServerSideEncryption="aws:kms", BucketKeyEnabled=True)
    assert created["BucketKeyEnabled"] is True
    upload = created["UploadId"]
    etag = s3.upload_part(Bucket=mpu_bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"bucket key part")["ETag"]
    done = s3.complete_multipart_upload(Bucket=mpu_bucket, Key=key, UploadId=upload,
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert done["BucketKeyEnabled"] is True
    assert s3.head_object(Bucket=mpu_bucket, Key=key)["BucketKeyEnabled"] is True
    assert s3.get_object(Bucket=mpu_bucket, Key=key)["Body"].read() == b"bucket key part"

