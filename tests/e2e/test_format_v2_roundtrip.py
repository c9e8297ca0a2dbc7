"""Format version 2 end to end over moto: the trailer (what a PUT learns after its body) is checked
by every whole read and resists edits, and every way the proxy writes metadata without new data
(copy into each mode, metadata-only copy, UpdateObjectEncryption) seals it again for the object it
writes: a proxy that has cached nothing reads each result back, in every mode."""

from __future__ import annotations

import hashlib
import os

import pytest
from botocore.config import Config

from .v2_helpers import COPY_SOURCE_KEY, MODES, fetch, make_rig, new_bucket, once, put_with_trailer, refused, rewrite, store

MB = 1024 * 1024


@pytest.fixture(scope="module")
def rig(tmp_path_factory, moto_server):
    yield from make_rig(tmp_path_factory, moto_server, "format-v2-roundtrip")


def _plain_client(rig):
    """boto3 sending no checksum of its own: a large SSE-S3 PUT then has its MD5 only in the trailer."""
    import boto3

    e = rig.endpoint
    return boto3.client("s3", endpoint_url=e.url, region_name="us-east-1", aws_access_key_id=e.access_key,
                        aws_secret_access_key=e.secret_key,
                        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1},
                                      request_checksum_calculation="when_required"))


def _whole_read_fails(s3, bucket: str, key: str, data: bytes) -> None:
    try:
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception:  # noqa: BLE001 - an error document, or a transfer broken mid-body
        return
    raise AssertionError(f"a whole read of an object with a bad trailer completed ({len(got)} of {len(data)} bytes)")


@pytest.mark.parametrize("edit", ["trailer flipped", "trailer cut off", "trailer of another object", "trailer flag removed"])
def test_the_trailer_is_checked_by_every_whole_read_and_by_a_cold_head(rig, edit):
    s3, backend = _plain_client(rig), rig.backend()
    bucket = new_bucket(s3)
    data, other = os.urandom(3 * MB + 5), os.urandom(3 * MB + 5)
    s3.put_object(Bucket=bucket, Key="k", Body=data)
    s3.put_object(Bucket=bucket, Key="other", Body=other)
    raw = fetch(backend, bucket, "k")
    assert raw.metadata["s3proxy-tr"] == "1" and "s3proxy-setag" not in raw.metadata  # the ETag is in the trailer
    if edit == "trailer flipped":
        store(backend, bucket, "k", raw.edited(body=raw.body[:-30] + bytes([raw.body[-30] ^ 1]) + raw.body[-29:]))
    elif edit == "trailer cut off":
        store(backend, bucket, "k", raw.edited(body=raw.body[:-84]))
    elif edit == "trailer of another object":
        store(backend, bucket, "k", raw.edited(body=raw.body[:-84] + fetch(backend, bucket, "other").body[-84:]))
    else:
        store(backend, bucket, "k", raw.edited(metadata={"s3proxy-tr": None}))
    _whole_read_fails(once(rig.endpoint), bucket, "k", data)
    with rig.fresh() as another:  # its ETag is not cached: HEAD reads the trailer
        refused(lambda: once(another).head_object(Bucket=bucket, Key="k"))
        refused(lambda: once(another).list_objects_v2(Bucket=bucket, Prefix="k"))
    # a ranged read opens only its chunks, but shows the ETag, which is in the trailer: refused too
    refused(lambda: once(rig.endpoint).get_object(Bucket=bucket, Key="k", Range="bytes=0-99"))


def test_a_checksum_trailer_that_fails_breaks_the_transfer_after_the_headers_never_completes_it(rig):
    """SSE-KMS, its CRC32 delivered in an aws-chunked trailer, so kept in the object's trailer: GET and
    HEAD need not read it, a whole GET checks it after the last chunk. The body is larger than what
    the proxy hands on at once, so the headers are out when the check fails: the connection is
    aborted, and the last piece was held back, so the body is never complete."""
    s3, backend = rig.client(), rig.backend()
    bucket = new_bucket(s3)
    data = os.urandom(5 * MB)
    put_with_trailer(rig.endpoint.url, bucket, "k", data, {"x-amz-server-side-encryption": "aws:kms"})
    raw = fetch(backend, bucket, "k")
    assert raw.metadata["s3proxy-tr"] == "2" and "s3proxy-cks" not in raw.metadata
    assert s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")["ChecksumCRC32"]
    store(backend, bucket, "k", raw.edited(body=raw.body[:-30] + bytes([raw.body[-30] ^ 1]) + raw.body[-29:]))
    status, received = _raw_get(rig.endpoint.url, bucket, "k")  # no ChecksumMode: the trailer is met at the end
    assert status == 200 and len(received) < len(data) and data.startswith(received)
    _whole_read_fails(s3, bucket, "k", data)  # boto3 asks for the checksum: refused before the headers
    assert s3.head_object(Bucket=bucket, Key="k")["ContentLength"] == len(data)  # HEAD reads no trailer
    assert s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-99")["Body"].read() == data[:100]  # nor does a range
    refused(lambda: s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED"))


def _raw_get(url: str, bucket: str, key: str) -> tuple[int, bytes]:
    """A plain signed GET: (status, the body bytes that arrived before the connection ended)."""
    import http.client
    import urllib.parse

    from tests.hardening.harness import sigv4_headers

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("GET", f"/{bucket}/{key}", headers=sigv4_headers("GET", f"{url}/{bucket}/{key}"))
        response = conn.getresponse()
        try:
            return response.status, response.read()
        except http.client.IncompleteRead as cut:
            return response.status, cut.partial
    finally:
        conn.close()


def _sources(rig, bucket: str) -> dict[str, tuple[bytes, dict, str]]:
    """One object per mode and shape: (data, read args, ETag)."""
    s3 = _plain_client(rig)
    out = {}
    for mode, (put_args, read_args) in MODES.items():
        for shape, data in (("small", os.urandom(1000)), ("trailer", os.urandom(MB))):
            key = f"{mode}-{shape}"
            out[key] = (
                data,
                read_args,
                s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata={"m": key}, **put_args)["ETag"],
            )
        key = f"{mode}-multipart"
        up = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata={"m": key}, **put_args)["UploadId"]
        parts = [os.urandom(5 * MB), os.urandom(100)]
        etags = [s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=p, **read_args)["ETag"]
                 for n, p in enumerate(parts, 1)]
        done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
        out[key] = (b"".join(parts), read_args, done["ETag"])
    return out


def test_every_mode_round_trips_and_every_copy_reseals_for_its_target(rig):
    s3, backend = rig.client(), rig.backend()
    bucket = new_bucket(s3)
    sources = _sources(rig, bucket)
    expected: dict[str, tuple[bytes, dict, str | None]] = dict(sources)
    for name, (data, read_args, _) in sources.items():
        copy_args = COPY_SOURCE_KEY if name.startswith("sse-c") else {}
        for target, (put_args, target_read) in MODES.items():
            dst = f"copy/{name}/to-{target}"
            etag = s3.copy_object(Bucket=bucket, Key=dst, CopySource={"Bucket": bucket, "Key": name}, **copy_args,
                                  **put_args)["CopyObjectResult"]["ETag"]
            md5 = f'"{hashlib.md5(data).hexdigest()}"'
            assert (etag == md5) == (target == "sse-s3"), (dst, etag)  # S3: a copy's ETag is the MD5 under SSE-S3 only
            expected[dst] = (data, target_read, etag)
        if not name.startswith("sse-c"):  # metadata-only copy onto itself, and a re-wrap
            s3.copy_object(Bucket=bucket, Key=name, CopySource={"Bucket": bucket, "Key": name}, MetadataDirective="REPLACE",
                           Metadata={"m": "replaced"}, ContentType="text/html", **MODES[name.rsplit("-", 1)[0]][0])
            expected[name] = (data, read_args, None)
    kms_key = rig.client("kms").create_key()["KeyMetadata"]["Arn"]
    for name in ("sse-s3-trailer", "sse-kms-multipart"):
        before = s3.head_object(Bucket=bucket, Key=name)["ETag"]
        s3.update_object_encryption(Bucket=bucket, Key=name, ObjectEncryption={"SSEKMS": {"KMSKeyArn": kms_key}})
        expected[name] = (expected[name][0], {}, before)
    with rig.fresh() as another:
        s3b = once(another)
        for key, (data, read_args, etag) in expected.items():
            stored = fetch(backend, bucket, key).metadata
            assert stored["s3proxy-v"] == "2" and "s3proxy-mm" in stored, key
            head = s3b.head_object(Bucket=bucket, Key=key, **read_args)
            got = s3b.get_object(Bucket=bucket, Key=key, **read_args)
            assert got["Body"].read() == data and head["ContentLength"] == len(data), key
            if etag is not None:
                assert head["ETag"] == got["ETag"] == etag, key
        assert s3b.head_object(Bucket=bucket, Key="sse-kms-small")["Metadata"] == {"m": "replaced"}
        assert s3b.head_object(Bucket=bucket, Key="sse-kms-small")["ContentType"] == "text/html"
        assert s3b.head_object(Bucket=bucket, Key="sse-s3-trailer")["SSEKMSKeyId"] == kms_key


def test_a_copy_keeps_no_seal_of_its_source(rig):
    """The copy's metadata MAC and sealed ETag are its own: its source's, put back under the copy's
    name, do not verify."""
    s3, backend = rig.client(), rig.backend()
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    source = fetch(backend, bucket, "src").metadata
    rewrite(backend, bucket, "dst", lambda raw: raw.edited(metadata={"s3proxy-setag": source["s3proxy-setag"]}))
    refused(lambda: s3.head_object(Bucket=bucket, Key="dst"))
