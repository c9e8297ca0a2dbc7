"""SSE-C: the customer key is checked before anything else is said about the object.

A request for an SSE-C object without its key (400 InvalidRequest) or with another key (403
AccessDenied) gets that answer and nothing else: not a 416 that tells the size or the part count,
not a 304/412 that confirms an ETag or a date, not a copy-source-range error that names the size.
Every case is a raw signed request over a real socket (all response headers visible), on both
backends. Tags are object metadata, not encrypted content: GetObjectTagging needs no key, as in S3.
"""

from __future__ import annotations

import email.utils
import time
import urllib.parse
from dataclasses import dataclass

import pytest

from tests.hardening.harness import error_code, raw_request, sigv4_headers

from .sse_helpers import PART, CustomerKey, body_of, unique

SSEC = "x-amz-server-side-encryption-customer-"
CPSRC = "x-amz-copy-source-server-side-encryption-customer-"
SIZE = PART + 1000  # a two-part object: 5 MiB + 1000 bytes
# what an answer about the object would reveal; none of it may appear in an SSE-C refusal
REVEALING = ("etag", "content-range", "x-amz-mp-parts-count", "last-modified", "x-amz-version-id", "accept-ranges")


@dataclass
class World:
    url: str
    bucket: str
    key: CustomerKey
    other: CustomerKey
    multipart: str
    single: str
    etag: str  # the multipart object's ETag, as the right key sees it
    target_upload: str  # an upload (SSE-S3) to copy parts into


@pytest.fixture(scope="module")
def world(proxy) -> World:
    s3 = proxy.client()
    w = World(proxy.url, unique("keyfirst"), CustomerKey.new(), CustomerKey.new(), "mp", "single", "", "")
    s3.create_bucket(Bucket=w.bucket)
    upload = s3.create_multipart_upload(Bucket=w.bucket, Key=w.multipart, **w.key.args())["UploadId"]
    data = body_of(SIZE, "key-first")
    parts = []
    for number, piece in ((1, data[:PART]), (2, data[PART:])):
        got = s3.upload_part(Bucket=w.bucket, Key=w.multipart, UploadId=upload, PartNumber=number, Body=piece, **w.key.args())
        parts.append({"PartNumber": number, "ETag": got["ETag"]})
    s3.complete_multipart_upload(Bucket=w.bucket, Key=w.multipart, UploadId=upload, MultipartUpload={"Parts": parts})
    s3.put_object(Bucket=w.bucket, Key=w.single, Body=b"twelve bytes", Tagging="team=blue", **w.key.args())
    w.etag = s3.head_object(Bucket=w.bucket, Key=w.multipart, **w.key.args())["ETag"]
    w.target_upload = s3.create_multipart_upload(Bucket=w.bucket, Key="target")["UploadId"]
    return w


def send(w: World, method: str, key: str, query: str = "", headers: dict[str, str] | None = None):
    target = f"/{w.bucket}/{urllib.parse.quote(key)}" + (f"?{query}" if query else "")
    signed = sigv4_headers(method, w.url + target, headers=headers or {})
    return raw_request(w.url, method, target, headers=signed)


def http_date(offset: float) -> str:
    return email.utils.formatdate(time.time() + offset, usegmt=True)


def key_headers(w: World, which: str, prefix: str = SSEC) -> dict[str, str]:
    return {} if which == "none" else (w.key if which == "right" else w.other).headers(prefix)


# (id, method, object, query, extra headers, what the right key gets)
CASES = [
    ("part-beyond", "GET", "mp", "partNumber=3", {}, 416),
    ("part-1", "GET", "mp", "partNumber=1", {}, 206),
    ("part-2-of-single", "GET", "single", "partNumber=2", {}, 416),
    ("head-part-beyond", "HEAD", "mp", "partNumber=3", {}, 416),
    ("head-part-2", "HEAD", "mp", "partNumber=2", {}, 206),
    ("range-beyond", "GET", "mp", "", {"Range": f"bytes={SIZE + 10}-"}, 416),
    ("head-range-beyond", "HEAD", "mp", "", {"Range": f"bytes={SIZE + 10}-"}, 416),
    ("if-none-match", "GET", "mp", "", {"If-None-Match": "ETAG"}, 304),
    ("head-if-none-match", "HEAD", "mp", "", {"If-None-Match": "ETAG"}, 304),
    ("if-match-other", "GET", "mp", "", {"If-Match": '"0123456789abcdef0123456789abcdef"'}, 412),
    ("head-if-match-other", "HEAD", "mp", "", {"If-Match": '"0123456789abcdef0123456789abcdef"'}, 412),
    ("if-modified-since-future", "GET", "mp", "", {"If-Modified-Since": "FUTURE"}, 304),
    ("if-unmodified-since-past", "GET", "mp", "", {"If-Unmodified-Since": "PAST"}, 412),
    ("head-if-unmodified-since-past", "HEAD", "mp", "", {"If-Unmodified-Since": "PAST"}, 412),
]


def _headers(w: World, extra: dict[str, str]) -> dict[str, str]:
    values = {"ETAG": w.etag, "FUTURE": http_date(86400), "PAST": http_date(-10 * 365 * 86400)}
    return {k: values.get(v, v) for k, v in extra.items()}


def assert_refused(w: World, status: int, headers: dict[str, str], body: bytes, which: str, method: str) -> None:
    want_status, want_code = (400, "InvalidRequest") if which == "none" else (403, "AccessDenied")
    assert status == want_status, (status, headers, body[:300])
    if method != "HEAD":
        assert error_code(body) == want_code, body[:300]
    leaked = [h for h in REVEALING if h in headers]
    assert not leaked, (leaked, headers)
    text = body.decode("utf-8", "replace")
    for fact in (w.etag.strip('"'), str(SIZE), "PartCount", "ActualObjectSize", "RangeRequested"):
        assert fact not in text, (fact, text)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("which", ["none", "wrong"])
def test_ssec_refusal_comes_before_any_answer_about_the_object(world, case, which):
    _, method, key, query, extra, _ = case
    status, headers, body = send(world, method, key, query, {**_headers(world, extra), **key_headers(world, which)})
    assert_refused(world, status, headers, body, which, method)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_right_key_gets_the_answer_about_the_object(world, case):
    """The same requests with the right key get what S3 answers: the refusals above are not blanket."""
    _, method, key, query, extra, expected = case
    status, headers, _ = send(world, method, key, query, {**_headers(world, extra), **key_headers(world, "right")})
    assert status == expected, (status, headers)
    if expected == 206 and "partNumber" in query and key == "mp":
        assert headers["x-amz-mp-parts-count"] == "2"


@pytest.mark.parametrize("which", ["none", "wrong"])
def test_copy_source_precondition_waits_for_the_source_key(world, which):
    """CopyObject from an SSE-C source: a failing x-amz-copy-source-if-match is 412 only with the key."""
    copy = {
        "x-amz-copy-source": f"/{world.bucket}/{world.multipart}",
        "x-amz-copy-source-if-match": '"0123456789abcdef0123456789abcdef"',
    }
    status, headers, body = send(world, "PUT", unique("copy"), "", {**copy, **key_headers(world, which, CPSRC)})
    assert_refused(world, status, headers, body, which, "PUT")
    status, _, body = send(world, "PUT", unique("copy"), "", {**copy, **key_headers(world, "right", CPSRC)})
    assert (status, error_code(body)) == (412, "PreconditionFailed")


@pytest.mark.parametrize("which", ["none", "wrong"])
def test_upload_part_copy_range_waits_for_the_source_key(world, which):
    """UploadPartCopy: a copy-source-range past the end names the source's size, so only with the key."""
    copy = {"x-amz-copy-source": f"/{world.bucket}/{world.multipart}", "x-amz-copy-source-range": f"bytes=0-{SIZE + 5}"}
    query = f"partNumber=1&uploadId={world.target_upload}"
    status, headers, body = send(world, "PUT", "target", query, {**copy, **key_headers(world, which, CPSRC)})
    assert_refused(world, status, headers, body, which, "PUT")
    status, _, body = send(world, "PUT", "target", query, {**copy, **key_headers(world, "right", CPSRC)})
    assert (status, error_code(body)) == (400, "InvalidArgument")
    assert str(SIZE) in body.decode()


def test_tags_are_metadata_and_need_no_key(world):
    """S3 encrypts object data, not metadata: GetObjectTagging takes no SSE-C headers and answers without them."""
    status, _, body = send(world, "GET", world.single, "tagging")
    assert status == 200, body[:300]
    assert b"<Key>team</Key>" in body and b"<Value>blue</Value>" in body


def _decrypts(proxy) -> int:
    path = proxy.data_dir / "kms" / "audit.log"
    return sum(1 for line in path.read_text().splitlines() if '"eventName":"Decrypt"' in line)


def test_sse_kms_not_modified_costs_no_kms_call(proxy, world):
    """The SSE-C check moved ahead of the preconditions; for SSE-KMS objects they still come first, so a
    304 or 412 answers without a kms:Decrypt (the audit log counts them)."""
    s3 = proxy.client()
    s3.put_object(Bucket=world.bucket, Key="kms", Body=b"kms object", ServerSideEncryption="aws:kms")
    etag = s3.head_object(Bucket=world.bucket, Key="kms")["ETag"]
    before = _decrypts(proxy)
    assert send(world, "GET", "kms", "", {"If-None-Match": etag})[0] == 304
    assert send(world, "GET", "kms", "", {"If-Match": '"0123456789abcdef0123456789abcdef"'})[0] == 412
    assert _decrypts(proxy) == before
    status, _, body = send(world, "GET", "kms")
    assert (status, body) == (200, b"kms object")
    assert _decrypts(proxy) > before  # the counter does see a read that unwraps the key
