"""No version banner: every kind of response says `Server: s3proxy` and names neither Python nor aiohttp.

Raw requests over real sockets, one per kind of response the listener gives: streamed object bodies
(whole, ranged, HEAD), operation results, S3 error documents, 304, the operational endpoints, the KMS
API (result and error), and the answers aiohttp gives by itself (a request its parser refuses, odd
request targets).
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import start_proxy

from .harness import raw_request, sigv4_headers

BANNER = ("python", "aiohttp", "/3.")


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    thread, endpoint = start_proxy(tmp_path_factory.mktemp("banner"), "fs", None)
    s3 = endpoint.client()
    s3.create_bucket(Bucket="banner")
    s3.put_object(Bucket="banner", Key="obj", Body=b"0123456789" * 1000)
    yield endpoint.url
    thread.stop()


def signed(url: str, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""):
    return raw_request(url, method, target, headers=sigv4_headers(method, url + target, headers=headers, body=body), body=body)


def kms_call(url: str, target: str, payload: dict, *, sign: bool = True):
    body = json.dumps(payload).encode()
    headers = {"x-amz-target": f"TrentService.{target}", "content-type": "application/x-amz-json-1.1"}
    if sign:
        headers = sigv4_headers("POST", url + "/", headers=headers, body=body, service="kms")
    return raw_request(url, "POST", "/", headers=headers, body=body)


KINDS = {
    "get-streamed": lambda u: signed(u, "GET", "/banner/obj"),
    "get-range": lambda u: signed(u, "GET", "/banner/obj", {"range": "bytes=0-9"}),
    "head": lambda u: signed(u, "HEAD", "/banner/obj"),
    "put": lambda u: signed(u, "PUT", "/banner/new", body=b"abc"),
    "list-buckets": lambda u: signed(u, "GET", "/"),
    "delete": lambda u: signed(u, "DELETE", "/banner/new"),
    "not-modified": lambda u: signed(u, "GET", "/banner/obj", {"if-modified-since": "Fri, 01 Jan 2100 00:00:00 GMT"}),
    "no-such-key": lambda u: signed(u, "GET", "/banner/missing"),
    "head-error": lambda u: signed(u, "HEAD", "/banner/missing"),
    "unauthenticated": lambda u: raw_request(u, "GET", "/banner/obj"),
    "not-implemented": lambda u: signed(u, "GET", "/banner?cors"),
    "healthz": lambda u: raw_request(u, "GET", "/healthz"),
    "readyz": lambda u: raw_request(u, "GET", "/readyz"),
    "metrics": lambda u: raw_request(u, "GET", "/metrics"),
    "kms-result": lambda u: kms_call(u, "ListKeys", {}),
    "kms-error": lambda u: kms_call(u, "ListKeys", {}, sign=False),
    "parser-error": lambda u: raw_request(u, "GET", "/banner/obj", headers=[("x-bad", b"a\x01b")]),
    "bad-request-line": lambda u: raw_request(u, "GET", "/banner/obj HTTP/1.1 extra"),
    "asterisk-target": lambda u: raw_request(u, "OPTIONS", "*"),
    "absolute-target": lambda u: raw_request(u, "GET", "http://elsewhere.example/banner/obj"),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_server_header_names_no_versions(url, kind):
    status, headers, _ = KINDS[kind](url)
    assert headers.get("server") == "s3proxy", (kind, status, headers)
    for name, value in headers.items():
        assert not any(mark in value.lower() for mark in BANNER), (kind, name, value)


def test_the_kinds_are_what_they_claim(url):
    """The requests above reach the answers they are named after (so each kind really is covered)."""
    expected = {"get-streamed": 200, "get-range": 206, "head": 200, "put": 200, "not-modified": 304,
                "no-such-key": 404, "head-error": 404, "unauthenticated": 403, "not-implemented": 501,
                "healthz": 200, "kms-result": 200, "kms-error": 400, "parser-error": 400}
    got = {kind: KINDS[kind](url)[0] for kind in expected}
    assert got == expected
