"""The S3 backend's SigV4 signer (s3proxy.backends.signer) against AWS's documented examples, against
botocore's own S3 signer on the same requests, and against the proxy's strict SigV4 verifier on the wire."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from s3proxy.backends import http1
from s3proxy.backends.signer import EMPTY_SHA256, UNSIGNED_PAYLOAD, Signer, query_strings, quote_path
from tests.auth.helpers import AKID, EXAMPLE_NOW, SECRET
from tests.auth.test_sigv4 import AWS_EXAMPLES

AUTO = ("authorization", "x-amz-date", "x-amz-content-sha256")


@pytest.mark.parametrize("method,path,query,hdrs", AWS_EXAMPLES)
def test_aws_documented_examples_sign_to_the_documented_signature(method: str, path: str, query: str,
                                                                  hdrs: dict[str, str]) -> None:
    documented = hdrs["Authorization"]
    signed_names = documented.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    given = {n: v for n, v in hdrs.items() if n.lower() in signed_names and n.lower() not in AUTO}
    pairs = [tuple((p + "=").split("=")[:2]) for p in query.split("&") if p]
    _, canonical = query_strings(pairs)
    out = Signer(AKID, SECRET, "us-east-1", clock=lambda: EXAMPLE_NOW).sign(
        method, path, canonical, given, hdrs["x-amz-content-sha256"])
    assert out["x-amz-date"] == hdrs["x-amz-date"]
    # AWS's documents separate the parts with "," (botocore, and so this signer, with ", "); both are accepted
    assert out["authorization"].replace(", ", ",") == documented


def test_keys_are_encoded_as_the_documented_examples_send_them() -> None:
    assert quote_path("/test$file.text") == "/test%24file.text"
    assert quote_path("a b+c%d~e/ü") == "a%20b%2Bc%25d~e/%C3%BC"
    assert query_strings([("prefix", "J"), ("max-keys", "2"), ("lifecycle", "")]) == (
        "prefix=J&max-keys=2&lifecycle=", "lifecycle=&max-keys=2&prefix=J")
    # sorted by name, then value; a name that begins another sorts first (pairs, not "n=v" strings)
    assert query_strings([("a-b", "1"), ("a", "2"), ("a", "1")])[1] == "a=1&a=2&a-b=1"


# (method, host, key or None, query pairs, headers, payload: bytes (hashed) | None (none) | "stream")
BOTOCORE_CASES: list[tuple[str, str, str | None, list[tuple[str, str]], dict[str, str], Any]] = [
    ("GET", "127.0.0.1:9000", "plain.txt", [], {}, None),
    (
        "PUT",
        "127.0.0.1:9000",
        "with space/and+plus%and%25.txt",
        [],
        {"content-length": "11", "x-amz-meta-note": "  two   spaces "},
        "stream",
    ),
    (
        "PUT",
        "s3.example.com",
        "ünïcödé/ключ/鍵",
        [],
        {"content-length": "5", "content-type": "text/plain; charset=utf-8", "x-amz-meta-ключ": "значение"},
        "stream",
    ),
    ("GET", "127.0.0.1:9000", "dots/../and/./slashes//x", [("versionId", "a=b/c+d")], {"range": "bytes=0-9"}, None),
    ("HEAD", "[::1]:9000", "~tilde~!$'()*,;:@", [], {}, None),
    ("DELETE", "127.0.0.1:9000", "k", [("uploadId", "2~u/+=")], {}, None),
    ("POST", "127.0.0.1:9000", "k", [("uploads", "")], {"content-length": "0", "x-amz-tagging": "a=b&c=d%20e"}, None),
    ("POST", "127.0.0.1:9000", "k", [("uploadId", "u")], {"content-length": "20", "content-md5": "x"}, b"<Complete></Complete>"),
    ("PUT", "127.0.0.1:9000", "k", [("tagging", ""), ("versionId", "v1")], {"content-length": "9"}, b"<Tagging/>"),
    (
        "GET",
        "127.0.0.1:9000",
        None,
        [("list-type", "2"), ("encoding-type", "url"), ("prefix", "a b/✓"), ("delimiter", "/"), ("start-after", "x\U0010ffff")],
        {},
        None,
    ),
    (
        "PUT",
        "127.0.0.1:9000",
        "dst",
        [],
        {
            "content-length": "0",
            "x-amz-copy-source": "/b/src%20key?versionId=v",
            "x-amz-metadata-directive": "REPLACE",
            "x-amz-copy-source-if-match": '"etag"',
        },
        None,
    ),
]


def _botocore_authorization(method: str, url: str, headers: dict[str, str], body: bytes, unsigned: bool, amz_date: str) -> str:
    """botocore's S3SigV4Auth.add_auth, step by step, at the time `amz_date` (add_auth reads the clock itself)."""
    request = AWSRequest(method=method, url=url, headers=headers, data=body)
    request.context["timestamp"] = amz_date
    request.context["client_config"] = Config(s3={"payload_signing_enabled": not unsigned})
    auth = S3SigV4Auth(Credentials("AKIDEXAMPLE", "secret/key+example"), "s3", "eu-west-1")
    auth._modify_request_before_signing(request)
    canonical = auth.canonical_request(request)
    auth._inject_signature_to_request(request, auth.signature(auth.string_to_sign(request, canonical), request))
    return request.headers["Authorization"]


@pytest.mark.parametrize("method,host,key,query,headers,payload", BOTOCORE_CASES)
def test_signatures_equal_botocores_for_the_same_request(
    method: str, host: str, key: str | None, query: list[tuple[str, str]], headers: dict[str, str], payload: Any
) -> None:
    path = "/bucket" + ("" if key is None else "/" + quote_path(key))
    sent, canonical = query_strings(query)
    body = payload if isinstance(payload, bytes) else b""
    payload_hash = UNSIGNED_PAYLOAD if payload == "stream" else hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    signer = Signer("AKIDEXAMPLE", "secret/key+example", "eu-west-1", clock=lambda: 1_700_000_000.0)
    out = signer.sign(method, path, canonical, {"host": host, **headers}, payload_hash)
    url = f"http://{host}{path}" + (f"?{sent}" if sent else "")
    theirs = _botocore_authorization(method, url, dict(headers), body, payload == "stream", out["x-amz-date"])
    assert out["authorization"] == theirs
    assert out["x-amz-content-sha256"] == payload_hash


def test_the_signing_key_is_derived_once_per_day() -> None:
    now = [1_700_000_000.0]
    signer = Signer("AK", "SK", "eu-west-1", clock=lambda: now[0])
    first = signer.signing_key("20231114")
    assert signer.signing_key("20231114") is first
    assert signer.signing_key("20231115") != first
    headers = {"host": "h"}
    a = signer.sign("GET", "/", "", headers, EMPTY_SHA256)["authorization"]
    now[0] += 86_400
    b = signer.sign("GET", "/", "", headers, EMPTY_SHA256)["authorization"]
    assert "/20231114/eu-west-1/s3/aws4_request" in a and "/20231115/eu-west-1/s3/aws4_request" in b


def test_a_header_named_twice_or_no_host_is_refused_and_the_secret_never_shows() -> None:
    signer = Signer("AK", "TOPSECRET", "r")
    with pytest.raises(ValueError):
        signer.sign("GET", "/", "", {"host": "h", "X-Amz-Meta-A": "1", "x-amz-meta-a": "2"}, EMPTY_SHA256)
    with pytest.raises(ValueError):
        signer.sign("GET", "/", "", {"x-amz-meta-a": "2"}, EMPTY_SHA256)
    assert "TOPSECRET" not in repr(signer)
    assert not hasattr(signer, "__dict__")  # nothing but its slots: no stray copy of the key


def test_every_header_sent_is_signed() -> None:
    out = Signer("AK", "SK", "r").sign(
        "PUT", "/b/k", "", {"Host": "h", "Content-Length": "3", "x-amz-meta-m": "v"}, UNSIGNED_PAYLOAD
    )
    signed = out["authorization"].split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    assert sorted(n for n in out if n != "authorization") == signed


async def test_backend_requests_verify_at_a_strict_sigv4_server(tmp_path: Any) -> None:
    """The S3 backend in front of the proxy itself (fs backend): its verifier refuses any signature
    that does not match, any unsigned x-amz-* header and any other scope."""
    import asyncio

    from s3proxy.backends.base import ObjectMeta
    from s3proxy.backends.s3 import S3Backend
    from tests.e2e.conftest import ACCESS_KEY, SECRET_KEY, start_proxy

    thread, ep = await asyncio.to_thread(start_proxy, tmp_path, "fs", None)
    backend = S3Backend(ep.url, region="us-east-1", access_key=ACCESS_KEY, secret_key=SECRET_KEY, retries=0)
    try:
        await backend.create_bucket("signed")
        keys = ["plain", "with space", "a+b=c&d", "100%25 and %", "ünïcödé/ключ", "~tilde~!$'()*,;:@"]
        meta = ObjectMeta({"note": "two  spaces"}, {"content-type": "text/plain"}, "a=b&c=d", None)
        for key in keys:
            await backend.put_object("signed", key, _body(b"hello"), 5, meta)
            info = await backend.head_object("signed", key)
            assert info.size == 5 and info.meta.metadata["note"] == "two  spaces"
            got = await backend.get_object("signed", key, range=(1, 3))
            assert b"".join([bytes(p) async for p in got.body]) == b"ell"
            assert await backend.get_object_tagging("signed", key) == [("a", "b"), ("c", "d")]
        listed = await backend.list_objects("signed", prefix="", delimiter="/")
        assert sorted([o.key for o in listed.objects] + listed.common_prefixes) == sorted(
            ["plain", "with space", "a+b=c&d", "100%25 and %", "ünïcödé/", "~tilde~!$'()*,;:@"]
        )
        await backend.copy_object("signed", "a+b=c&d", "signed", "copy of +", ObjectMeta())
        upload = await backend.create_multipart("signed", "multi part", ObjectMeta())
        etag = await backend.upload_part("signed", "multi part", upload, 1, _body(b"part"), 4)
        assert [p.part_number for p in await backend.list_parts("signed", "multi part", upload)] == [1]
        await backend.complete_multipart("signed", "multi part", upload, [(1, etag)])
        for key in [*keys, "copy of +", "multi part"]:
            await backend.delete_object("signed", key)
        await backend.delete_bucket("signed")
    finally:
        await backend.close()
        await asyncio.to_thread(thread.stop)


async def _body(data: bytes):  # type: ignore[no-untyped-def]
    yield data


def test_host_header_leaves_out_default_ports() -> None:
    assert http1.host_header("http", "h", 80) == "h" and http1.host_header("https", "h", 443) == "h"
    assert http1.host_header("http", "h", 443) == "h:443" and http1.host_header("http", "::1", 9000) == "[::1]:9000"
