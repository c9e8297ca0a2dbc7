"""Nothing about the ciphertext reaches the client: not the backend's ETag (moto's is the MD5 of the
ciphertext), not the ciphertext length, not the envelope's `s3proxy-*` fields, in headers or listings;
and no client can write an envelope field.

Contract: the issue's "nothing about ciphertext leaks", §1.3 (ETags the client sees), store.py
(client keys starting with s3proxy- are escaped)."""

from __future__ import annotations

import pytest

from s3proxy.format.sizes import ciphertext_size

from .sse_helpers import PART, CustomerKey, at_rest, body_of

KEY = CustomerKey.new()
MODES = {
    "sse-s3": ({"ServerSideEncryption": "AES256"}, {}),
    "sse-kms": ({"ServerSideEncryption": "aws:kms"}, {}),
    "sse-c": (KEY.args(), KEY.args()),
}
moto_only = pytest.mark.parametrize("proxy", ["s3"], indirect=True, ids=["moto-backend"])


@moto_only
@pytest.mark.parametrize("mode", list(MODES))
def test_single_part_etag_is_not_the_backends_md5_of_ciphertext(proxy, s3, bucket, mode):
    """SSE-KMS and SSE-C objects answer with the backend's ETag today: on an S3 backend that is
    MD5(ciphertext), a fingerprint of the stored bytes handed to every reader."""
    put_args, read_args = MODES[mode]
    put = s3.put_object(Bucket=bucket, Key="obj", Body=body_of(1000), **put_args)
    backend_etag = at_rest(proxy, bucket, "obj").etag
    for etag in (put["ETag"], s3.head_object(Bucket=bucket, Key="obj", **read_args)["ETag"],
                 s3.list_objects_v2(Bucket=bucket)["Contents"][0]["ETag"]):
        assert etag.strip('"') != backend_etag


@moto_only
@pytest.mark.parametrize("mode", list(MODES))
def test_multipart_etags_are_not_the_backends(proxy, s3, bucket, mode):
    """The part ETags and the completed object's `-N` ETag come from the backend's MD5s of ciphertext parts."""
    put_args, read_args = MODES[mode]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mpu", **put_args)["UploadId"]
    backend = proxy.backend_client()
    parts = []
    for n, size in ((1, PART), (2, 10)):
        etag = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=upload, PartNumber=n, Body=body_of(size, str(n)), **read_args)[
            "ETag"
        ]
        parts.append({"PartNumber": n, "ETag": etag})
    backend_parts = backend.list_parts(Bucket=bucket, Key="mpu", UploadId=upload)["Parts"]
    assert {p["ETag"] for p in parts}.isdisjoint({p["ETag"] for p in backend_parts})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mpu", UploadId=upload, MultipartUpload={"Parts": parts}, **read_args)
    assert done["ETag"].strip('"') != at_rest(proxy, bucket, "mpu").etag


@pytest.mark.parametrize("mode", list(MODES))
def test_listings_and_headers_show_plaintext_only(proxy, s3, bucket, mode):
    put_args, read_args = MODES[mode]
    data = body_of(70000)
    s3.put_object(Bucket=bucket, Key="obj", Body=data, Metadata={"colour": "blue"}, **put_args)
    stored = at_rest(proxy, bucket, "obj")
    assert len(stored.body) == ciphertext_size(len(data)) != len(data)
    head = s3.head_object(Bucket=bucket, Key="obj", **read_args)
    assert head["Metadata"] == {"colour": "blue"}  # the envelope is not user metadata
    assert head["ContentLength"] == len(data)
    for listing in (s3.list_objects_v2(Bucket=bucket)["Contents"], s3.list_objects(Bucket=bucket)["Contents"]):
        assert [(o["Key"], o["Size"]) for o in listing] == [("obj", len(data))]


def test_client_metadata_cannot_forge_envelope_fields(proxy, s3, bucket):
    """A client's own `s3proxy-*` metadata is stored escaped and returned as sent; the object still opens."""
    forged = {"s3proxy-mode": "SSE-C", "s3proxy-size": "1", "s3proxy-key": "AAAA"}
    s3.put_object(Bucket=bucket, Key="obj", Body=b"genuine", Metadata=forged)
    assert s3.head_object(Bucket=bucket, Key="obj")["Metadata"] == forged
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"genuine"
    stored = at_rest(proxy, bucket, "obj").metadata
    assert stored["s3proxy-mode"] == "AES256" and stored["s3proxy-size"] == "7"
