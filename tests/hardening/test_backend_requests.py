"""Issue 17: backend requests per PUT, GET and HEAD, counted on the wire by a hop between the proxy
and a real moto server (harness.FaultHop records every request it forwards).

Every PUT is one backend write in every mode, with or without a flexible checksum, whether the
checksum comes in a header or in an aws-chunked trailer, and whatever the size: what is known only
after the body goes into the sealed trailer (FORMAT.md §9), never into a second write (today: a
server-side self-copy after the upload, which doubles the cost, fails above 5 GiB and briefly
shows another ETag). GET and HEAD of SSE-KMS and SSE-C objects are one request, a ranged GET too
(issue 21: the stored range comes with the metadata, no HEAD first); an SSE-S3 object whose ETag is
in its trailer costs one ranged read of the trailer the first time a proxy shows it.
The table of counts is printed (pytest -s) for the report.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
import zlib
from collections import Counter

import pytest

from tests.e2e.conftest import start_peer, start_proxy
from tests.e2e.v2_helpers import put_with_trailer

from .harness import s3_client

SSE_C_KEY = os.urandom(32)
SSE_C = {
    "x-amz-server-side-encryption-customer-algorithm": "AES256",
    "x-amz-server-side-encryption-customer-key": base64.b64encode(SSE_C_KEY).decode(),
    "x-amz-server-side-encryption-customer-key-md5": base64.b64encode(hashlib.md5(SSE_C_KEY).digest()).decode(),
}
MODES = {
    "sse-s3": ({"x-amz-server-side-encryption": "AES256"}, {}),
    "sse-kms": ({"x-amz-server-side-encryption": "aws:kms"}, {}),
    "sse-c": (SSE_C, SSE_C),
}
BOTO_ARGS = {
    "sse-s3": {"ServerSideEncryption": "AES256"},
    "sse-kms": {"ServerSideEncryption": "aws:kms"},
    "sse-c": {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSE_C_KEY},
}
READ_ARGS = {"sse-s3": {}, "sse-kms": {}, "sse-c": {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSE_C_KEY}}
SIZES = {"1KiB": 1024, "1MiB": 1024 * 1024}
TABLE: list[tuple[str, ...]] = []


@pytest.fixture(scope="module")
def counted(hop, tmp_path_factory):
    """A proxy whose backend is reached only through the counting hop; and its data dir, for fresh ones."""
    data_dir = tmp_path_factory.mktemp("counted")
    thread, endpoint = start_proxy(data_dir, "s3", hop.url)
    yield endpoint, data_dir
    thread.stop()
    if TABLE:
        width = max(len(r[0]) for r in TABLE)
        print("\nbackend requests (writes / other) per operation, counted at the hop:")
        for row in TABLE:
            print(f"  {row[0]:<{width}}  {row[1]}")


ACCESS_RECORDS = ("/s3proxy-internal/bucket-owner/", "/s3proxy-internal/bucket-policy/")


def _counts(hop, bucket: str, key: str) -> tuple[int, int, Counter]:
    """(writes of the object, every other request, all by method+target) since the last clear. The
    bucket's owner and policy records, which authorization reads once per bucket and caches (5 s),
    are in the Counter but not in the counts: `_access_reads` checks them on their own."""
    seen = [(m, p) for m, p in hop.seen if p != "/"]  # not the readiness probe's ListBuckets (on its own timer)
    hop.seen.clear()
    seen = [(m, p) for m, p in seen if not p.startswith(ACCESS_RECORDS)] + [("ACCESS", p) for m, p in seen
                                                                           if p.startswith(ACCESS_RECORDS)]
    target = f"/{bucket}/{key}"
    writes = sum(1 for m, p in seen if m in ("PUT", "POST") and p.split("?")[0] == target)
    access = sum(1 for m, _ in seen if m == "ACCESS")
    return writes, len(seen) - writes - access, Counter(f"{m} {p.split('?')[0]}" for m, p in seen)


def _access_reads(seen: Counter) -> int:
    return sum(n for k, n in seen.items() if k.startswith("ACCESS "))


def _put(endpoint, bucket: str, key: str, data: bytes, mode: str, checksum: str) -> None:
    if checksum == "trailer":  # aws-chunked with the CRC32 in a trailer, as boto3 sends over HTTPS
        put_with_trailer(endpoint.url, bucket, key, data, MODES[mode][0])
        return
    s3 = s3_client(endpoint.url, request_checksum_calculation="when_required")
    extra = {"ChecksumAlgorithm": "SHA256"} if checksum == "header" else {}
    s3.put_object(Bucket=bucket, Key=key, Body=data, **BOTO_ARGS[mode], **extra)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("checksum", ["none", "header", "trailer"])
@pytest.mark.parametrize("mode", list(MODES))
def test_every_put_is_one_backend_write(counted, hop_clean, mode, checksum, size):
    endpoint, _ = counted
    bucket = f"n-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint.url).create_bucket(Bucket=bucket)
    data = os.urandom(SIZES[size])
    _put(endpoint, bucket, "warm", data, mode, checksum)  # the bucket's default encryption record is cached now
    hop_clean.seen.clear()
    _put(endpoint, bucket, "k", data, mode, checksum)
    writes, other, seen = _counts(hop_clean, bucket, "k")
    TABLE.append((f"PUT {mode} {size} checksum={checksum}", f"{writes} / {other}  {dict(seen)}"))
    assert writes == 1 and other == 0, seen
    got = s3_client(endpoint.url).get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED", **READ_ARGS[mode])
    assert got["Body"].read() == data
    if checksum != "none":
        assert ("ChecksumCRC32" in got) == (checksum == "trailer") and ("ChecksumSHA256" in got) == (checksum == "header")


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("mode", list(MODES))
def test_get_and_head_are_one_request_and_a_trailer_etag_is_read_once(counted, hop_clean, mode, size):
    endpoint, data_dir = counted
    bucket = f"g-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint.url).create_bucket(Bucket=bucket)
    data = os.urandom(SIZES[size])
    _put(endpoint, bucket, "k", data, mode, "none")
    thread, fresh = start_peer(data_dir, "s3", hop_clean.url)  # a proxy that has cached nothing about it
    try:
        rows = []
        for who, endpoint_ in (("cold", fresh), ("warm", fresh), ("writer", endpoint)):
            s3 = s3_client(
                endpoint_.url, request_checksum_calculation="when_required", response_checksum_validation="when_required"
            )
            hop_clean.seen.clear()
            head = s3.head_object(Bucket=bucket, Key="k", **READ_ARGS[mode])
            _, head_n, head_seen = _counts(hop_clean, bucket, "k")
            assert s3.get_object(Bucket=bucket, Key="k", **READ_ARGS[mode])["Body"].read() == data
            _, get_n, get_seen = _counts(hop_clean, bucket, "k")
            ranged = s3.get_object(Bucket=bucket, Key="k", Range="bytes=10-19", **READ_ARGS[mode])["Body"].read()
            _, range_n, range_seen = _counts(hop_clean, bucket, "k")
            assert ranged == data[10:20] and head["ContentLength"] == len(data)
            rows.append((who, head_n, get_n, range_n))
            # a proxy that never saw the bucket reads its owner and policy records once, then caches them
            assert _access_reads(head_seen) == (2 if who == "cold" else 0), head_seen
            assert _access_reads(get_seen) == _access_reads(range_seen) == 0
            TABLE.append((f"{mode} {size} HEAD/GET/range ({who})", f"{head_n} / {get_n} / {range_n}  "
                          f"{dict(head_seen)} {dict(get_seen)} {dict(range_seen)}"))
        late_etag = mode == "sse-s3" and SIZES[size] > 256 * 1024  # no Content-MD5 on a large body: the MD5 is in the trailer
        for who, head_n, get_n, range_n in rows:
            first = who == "cold"
            extra = 1 if (late_etag and first) else 0
            assert (head_n, get_n, range_n) == (1 + extra, 1, 1), (who, head_n, get_n, range_n)
    finally:
        thread.stop()


def test_checksum_mode_reads_the_trailer_only_when_the_checksum_is_there(counted, hop_clean):
    endpoint, _ = counted
    bucket = f"c-{uuid.uuid4().hex[:16]}"
    s3 = s3_client(endpoint.url, request_checksum_calculation="when_required", response_checksum_validation="when_required")
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(SIZES["1MiB"])
    _put(endpoint, bucket, "k", data, "sse-kms", "trailer")
    hop_clean.seen.clear()
    head = s3.head_object(Bucket=bucket, Key="k")
    assert "ChecksumCRC32" not in head and _counts(hop_clean, bucket, "k")[1] == 1
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    _, n, seen = _counts(hop_clean, bucket, "k")
    TABLE.append(("sse-kms 1MiB HEAD ChecksumMode=ENABLED, checksum in the trailer", f"0 / {n}  {dict(seen)}"))
    assert head["ChecksumCRC32"] == base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode() and n == 2



def test_a_cold_whole_get_of_a_trailer_etag_reads_the_trailer_once_beside_the_body(counted, hop_clean):
    """The ETag goes out in the headers, before the body whose end holds it: one ranged read first."""
    endpoint, data_dir = counted
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint.url).create_bucket(Bucket=bucket)
    data = os.urandom(SIZES["1MiB"])
    _put(endpoint, bucket, "k", data, "sse-s3", "none")
    thread, fresh = start_peer(data_dir, "s3", hop_clean.url)
    try:
        s3 = s3_client(fresh.url, response_checksum_validation="when_required")
        hop_clean.seen.clear()
        got = s3.get_object(Bucket=bucket, Key="k")
        assert got["Body"].read() == data and got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        _, cold, seen = _counts(hop_clean, bucket, "k")
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data
        _, warm, _ = _counts(hop_clean, bucket, "k")
        TABLE.append(("sse-s3 1MiB GET whole, ETag in the trailer (cold, then warm)", f"{cold}, {warm}  {dict(seen)}"))
        assert (cold, warm) == (2, 1)
    finally:
        thread.stop()


RANGES = {  # Range header -> the plaintext slice S3 returns, None for 416 (of a 1 MiB + 17 byte object)
    "bytes=10-19": slice(10, 20),
    "bytes=65530-131080": slice(65530, 131081),  # across two chunk edges
    "bytes=-5": slice(-5, None),  # a suffix
    "bytes=-70000": slice(-70000, None),  # a suffix longer than a chunk
    "bytes=1048570-": slice(1048570, None),  # open-ended, into the short final chunk
    "bytes=0-99999999": slice(0, None),  # past the end: clipped
    "bytes=1048593-": None,  # starts at the size: 416, the guessed stored bytes lie inside the trailer
    "bytes=99999999-": None,  # starts far past the stored end: the backend's 416, then a HEAD for the size
}


@pytest.mark.parametrize("mode", list(MODES))
def test_a_ranged_get_of_a_single_part_object_is_one_request(counted, hop_clean, mode):
    """Issue 21: the stored range a single-part object's plaintext range needs is arithmetic once the
    chunk size is known, so it comes with the metadata in one GET, verified before any byte."""
    endpoint, _ = counted
    bucket = f"r-{uuid.uuid4().hex[:16]}"
    s3 = s3_client(endpoint.url, request_checksum_calculation="when_required", response_checksum_validation="when_required")
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(1024 * 1024 + 17)
    _put(endpoint, bucket, "k", data, mode, "none")
    s3.head_object(Bucket=bucket, Key="k", **READ_ARGS[mode])  # a trailer ETag (SSE-S3) is cached from here on
    for header, want in RANGES.items():
        hop_clean.seen.clear()
        if want is None:
            with pytest.raises(s3.exceptions.ClientError) as caught:
                s3.get_object(Bucket=bucket, Key="k", Range=header, **READ_ARGS[mode])
            assert caught.value.response["Error"]["Code"] == "InvalidRange"
            assert caught.value.response["Error"]["ActualObjectSize"] == str(len(data))
        else:
            got = s3.get_object(Bucket=bucket, Key="k", Range=header, **READ_ARGS[mode])
            assert got["Body"].read() == data[want]
            assert got["ContentRange"].endswith(f"/{len(data)}")
        _, n, seen = _counts(hop_clean, bucket, "k")
        TABLE.append((f"{mode} 1MiB+17 GET Range: {header}", f"{n}  {dict(seen)}"))
        assert n == (2 if header == "bytes=99999999-" else 1), (header, seen)


def test_a_ranged_get_of_a_multipart_object_is_two_requests_only_when_it_ends_past_the_first_part(counted, hop_clean):
    """Parts after the first start 16 bytes later per part before them than a single-part layout
    would put them (each part ends with its own final chunk): a range ending there needs a second GET
    of the planned bytes; a range in the first part, a suffix or an open end does not."""
    endpoint, _ = counted
    bucket = f"m-{uuid.uuid4().hex[:16]}"
    s3 = s3_client(endpoint.url)
    s3.create_bucket(Bucket=bucket)
    part1, part2 = os.urandom(5 * 1024 * 1024), os.urandom(1024 * 1024)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k", ServerSideEncryption="aws:kms")["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key="k", UploadId=upload, PartNumber=i, Body=body)["ETag"]
             for i, body in ((1, part1), (2, part2))]
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    data, n = part1 + part2, len(part1)
    s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-0")["Body"].read()  # the part list record is cached now
    cases = {"bytes=10-19": 1, f"bytes=0-{n - 1}": 1, "bytes=-100": 1, f"bytes={n + 5}-": 1,
             f"bytes={n - 10}-{n + 20}": 2, f"bytes={n + 5}-{n + 100000}": 2}
    for header, requests in cases.items():
        hop_clean.seen.clear()
        first, _, last = header[6:].partition("-")
        want = data[-int(last):] if not first else data[int(first):int(last) + 1 if last else None]
        assert s3.get_object(Bucket=bucket, Key="k", Range=header)["Body"].read() == want
        _, got, seen = _counts(hop_clean, bucket, "k")
        TABLE.append((f"sse-kms multipart 5MiB+1MiB GET Range: {header}", f"{got}  {dict(seen)}"))
        assert got == requests, (header, seen)
