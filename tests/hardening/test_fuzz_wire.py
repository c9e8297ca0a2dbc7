"""Hostile requests over real sockets against a running proxy (issue 9.3): keys with control
characters, `..` and great length; headers of odd size, count and encoding; Range values; XML and
aws-chunked bodies; signed and unsigned. Every request gets an answer (no hang: the socket has a
timeout), the answer is a 4xx (or 501 NotImplemented for what S3 has and we do not), and the proxy
keeps serving. Memory stays bounded when a body is far larger than what the operation accepts.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import urllib.parse
import uuid

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3proxy.ops import xml
from tests.e2e.conftest import start_proxy

from .harness import error_code, raw_request, s3_client, sigv4_headers

EXAMPLES = int(os.environ.get("S3PROXY_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """A proxy on the fs backend with one bucket holding one object of a few chunks."""
    thread, ep = start_proxy(tmp_path_factory.mktemp("fuzz"), "fs", None)
    s3 = s3_client(ep.url)
    bucket = f"fz-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="obj", Body=os.urandom(200_000))
    yield ep, bucket
    thread.stop()


def _fine(status: int, body: bytes, method: str = "GET") -> bool:
    """A proper refusal (4xx), a success, or 501 NotImplemented; never another 5xx (HEAD: no body to show the code)."""
    return status < 500 or (status == 501 and (method == "HEAD" or error_code(body) == "NotImplemented"))


def _alive(url: str) -> bool:
    return s3_client(url).list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200


KEY_PIECES = st.sampled_from(["..", ".", "", "a", "%00", "%01", "%7f", "%0d%0a", "%2e%2e", "%2f", "%ff", "%", "%C3%A9",
                              "obj", "s3proxy-internal", "~", "%20", "+", "?", "#"])
KEYS = st.one_of(
    st.lists(KEY_PIECES, min_size=1, max_size=8).map("/".join),
    st.integers(1000, 1100).map(lambda n: "k" * n),  # around S3's 1024-byte key limit
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).map(lambda t: urllib.parse.quote(t, safe="")),
)
ASCII_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=200)
HEADERS = st.lists(
    st.tuples(st.one_of(st.sampled_from(["range", "x-amz-meta-a", "content-type", "content-md5", "x-amz-checksum-crc32",
                                         "x-amz-server-side-encryption", "x-amz-server-side-encryption-customer-algorithm",
                                         "x-amz-copy-source", "if-match", "if-none-match", "if-modified-since",
                                         "x-amz-tagging", "x-amz-storage-class", "content-encoding", "expect",
                                         "x-amz-decoded-content-length", "x-amz-trailer"]),
                        st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20)),
              st.one_of(ASCII_VALUE, st.sampled_from(["bytes=0-0", "bytes=-1", "bytes=199999-", "bytes=5-1", "bytes=0-0,2-3",
                                                      "AES256", "aws:kms", "/fz/obj", "*", "aws-chunked", "100-continue"]))),
    max_size=12,
)
BODIES = st.one_of(
    st.just(b""),
    st.binary(max_size=2000),
    st.sampled_from(
        [
            b"<Delete><Object><Key>obj</Key></Object></Delete>",
            b"<Delete>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</Delete>",
            b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Delete><Object><Key>&x;</Key></Object></Delete>',
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
        ]
    ),
)
QUERIES = st.sampled_from(["", "?delete", "?uploads", "?uploadId=nope", "?partNumber=1&uploadId=nope", "?tagging", "?list-type=2",
                           "?list-type=2&max-keys=-1", "?list-type=2&max-keys=99999999999999999999", "?versions", "?acl",
                           "?list-type=2&continuation-token=%ff", "?encoding-type=bogus", "?versionId=", "?partNumber=0",
                           "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=99999999"])


@FUZZ
@given(
    st.sampled_from(["GET", "PUT", "POST", "HEAD", "DELETE", "OPTIONS", "PATCH"]), KEYS, QUERIES, HEADERS, BODIES, st.booleans()
)
def test_any_request_gets_a_4xx_or_success_and_the_proxy_keeps_serving(target, method, key, query, headers, body, signed):
    ep, bucket = target
    path = f"/{bucket}/{key}{query}"
    extra = dict(headers)
    if "content-md5" in extra and body and extra["content-md5"] == "md5":
        extra["content-md5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    sent = sigv4_headers(method, ep.url + path, body=body, headers=extra) if signed else extra
    status, _, answer = raw_request(ep.url, method, path, headers=list(sent.items()), body=body)
    assert _fine(status, answer, method), (status, answer[:300])


# (request line target, headers, why: each must be a 4xx, the proxy must go on)
RAW_HOSTILE = [
    (b"/b/a\x01b", [], "a control byte in the request line"),
    (b"/b/a\xffb", [], "a non-UTF-8 byte in the request line"),
    (b"/b/" + b"k" * 70_000, [], "a request line far over any limit"),
    (b"/b/k", [(f"x-h{i}", "v") for i in range(400)], "400 headers"),
    (b"/b/k", [("x-big", "v" * 70_000)], "one 70 KB header"),
    (b"/b/k", [("x-amz-meta-a", b"\xff\xfe")], "non-UTF-8 header bytes (unsigned)"),
    (b"/b/k", [("Content-Length", "-1")], "negative Content-Length"),
    (b"/b/k", [("Content-Length", "1"), ("Transfer-Encoding", "chunked")], "both framings: request smuggling shape"),
    (b"/b/k", [("Transfer-Encoding", "gzip, chunked")], "a transfer coding the server does not do"),
]


@pytest.mark.parametrize("line,headers,why", RAW_HOSTILE, ids=[w for *_, w in RAW_HOSTILE])
def test_malformed_http_is_refused_with_a_4xx(target, line, headers, why):
    ep, _ = target
    status, _, answer = raw_request(ep.url, "GET", line, headers=headers)
    assert 400 <= status < 500, (why, status, answer[:200])
    assert _alive(ep.url)


def test_regression_signed_header_with_non_utf8_bytes_is_a_4xx_not_internal_error(target):
    """Over the wire: see test_fuzz_parsers::test_regression_non_utf8_bytes_in_a_signed_header_are_a_4xx_not_an_internal_error."""
    ep, bucket = target
    headers = sigv4_headers("GET", f"{ep.url}/{bucket}/obj", headers={"x-amz-meta-a": "\xff\xfe"})
    status, _, answer = raw_request(ep.url, "GET", f"/{bucket}/obj", headers=list(headers.items()))
    assert 400 <= status < 500, (status, answer[:300])


def test_keys_with_dot_segments_stay_inside_the_bucket(target):
    """S3 keys are opaque: `../x` is a key, not a path; it never names another bucket or a file."""
    ep, bucket = target
    s3 = s3_client(ep.url)
    other = f"fz-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=other)
    s3.put_object(Bucket=other, Key="secret", Body=b"other bucket")
    path = f"/{bucket}/../{other}/secret"
    status, _, answer = raw_request(ep.url, "GET", path, headers=sigv4_headers("GET", ep.url + path))
    assert status == 404 and error_code(answer) == "NoSuchKey"
    s3.put_object(Bucket=bucket, Key="../../etc/x", Body=b"just a key")
    assert s3.get_object(Bucket=bucket, Key="../../etc/x")["Body"].read() == b"just a key"
    assert not (ep.data_dir / "etc").exists() and not (ep.data_dir.parent / "etc" / "x").exists()


def _stream_huge(url: str, path: str, headers: dict[str, str], total: int) -> tuple[int | None, bytes]:
    """Send `total` body bytes 1 MiB at a time (never held here), stop when the server stops reading."""
    parts = urllib.parse.urlsplit(url)
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    block = b"<" * (1 << 20)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode())
        sent = 0
        try:
            while sent < total:
                sock.sendall(block)
                sent += len(block)
        except OSError:
            pass
        from http.client import HTTPResponse

        resp = HTTPResponse(sock, method="POST")
        try:
            resp.begin()
            return resp.status, resp.read()
        except OSError:
            return None, b""


def test_an_xml_body_far_over_the_limit_is_refused_without_buffering_it(target):
    ep, bucket = target
    total = 256 * 1024 * 1024
    path = f"/{bucket}?delete"
    headers = sigv4_headers("POST", ep.url + path, payload_hash="UNSIGNED-PAYLOAD",
                            headers={"content-length": str(total), "content-md5": "1B2M2Y8AsgTpgAmY7PhCfg=="})
    rss_before = psutil.Process().memory_info().rss
    status, answer = _stream_huge(ep.url, path, headers, total)
    growth = psutil.Process().memory_info().rss - rss_before
    # S3 refuses a DeleteObjects document over its limit with 400 MalformedXML; the connection may
    # also just be closed once the server stops reading. Either way nothing near 256 MiB was kept.
    assert status is None or (status == 400 and error_code(answer) == "MalformedXML"), (status, answer[:200])
    assert growth < 4 * xml.MAX_XML_BODY + (32 << 20), growth
    assert _alive(ep.url)
