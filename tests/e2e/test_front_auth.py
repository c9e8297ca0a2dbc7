"""Authentication and body-integrity failures at the front door: each gets AWS's code and status.

Codes and statuses: S3 API reference, "Error responses" (List of error codes) and
"Authenticating Requests (AWS Signature Version 4)"; the proxy runs in front of both backends.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import zlib

import boto3
import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from tests.auth.helpers import signed_chunks, signing_key

from .conftest import REGION, SECRET_KEY
from .front_helpers import (
    expect_error,
    seed_signature,
    send,
    send_short_body,
    shift_signing_clock,
    signed_headers,
)


@pytest.fixture
def obj(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello")
    return bucket, "k"


def test_anonymous_request_is_access_denied(proxy, obj):
    # unsigned requests are anonymous; an anonymous caller has no access to a private bucket
    anon = proxy.client(signature_version=UNSIGNED)
    expect_error("AccessDenied", 403, anon.get_object, Bucket=obj[0], Key=obj[1])
    expect_error("AccessDenied", 403, anon.list_buckets)


def test_unknown_access_key_is_invalid_access_key_id(proxy, obj):
    stranger = proxy.client(access_key="AKIANOBODYKNOWSTHIS1", secret_key="whatever")
    expect_error("InvalidAccessKeyId", 403, stranger.get_object, Bucket=obj[0], Key=obj[1])


def test_wrong_secret_is_signature_does_not_match(proxy, obj):
    liar = proxy.client(secret_key=SECRET_KEY + "x")
    expect_error("SignatureDoesNotMatch", 403, liar.get_object, Bucket=obj[0], Key=obj[1])
    expect_error("SignatureDoesNotMatch", 403, liar.put_object, Bucket=obj[0], Key="new", Body=b"x")


# "RequestTimeTooSkewed: The difference between the request time and the server's time is too large"
# (403); SigV4 allows 15 minutes either way.
@pytest.mark.parametrize(
    "skew",
    [
        dt.timedelta(minutes=16),  # just past the 15-minute window, in the future
        -dt.timedelta(minutes=16),  # and in the past
        -dt.timedelta(days=2),  # a stale replayed request
    ],
    ids=["future-16m", "past-16m", "past-2d"],
)
def test_clock_skew_beyond_15_minutes_is_request_time_too_skewed(proxy, obj, monkeypatch, skew):
    shift_signing_clock(monkeypatch, skew)
    expect_error("RequestTimeTooSkewed", 403, proxy.client().get_object, Bucket=obj[0], Key=obj[1])


def test_clock_skew_within_15_minutes_is_accepted(proxy, obj, monkeypatch):
    # 14 minutes is inside the window: the request is served
    shift_signing_clock(monkeypatch, -dt.timedelta(minutes=14))
    assert proxy.client().get_object(Bucket=obj[0], Key=obj[1])["Body"].read() == b"hello"


def _presigner(proxy):
    # boto3 presigns with SigV2 unless told s3v4
    return proxy.client(signature_version="s3v4")


def test_presigned_get_works_with_plain_urllib(proxy, obj):
    url = _presigner(proxy).generate_presigned_url("get_object", Params={"Bucket": obj[0], "Key": obj[1]}, ExpiresIn=300)
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        assert resp.read() == b"hello"
        assert resp.headers["x-amz-request-id"]


def test_presigned_url_with_a_tampered_key_is_signature_does_not_match(proxy, obj):
    url = _presigner(proxy).generate_presigned_url("get_object", Params={"Bucket": obj[0], "Key": obj[1]}, ExpiresIn=300)
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(url.replace(f"/{obj[1]}?", "/other?"), timeout=30)
    assert excinfo.value.code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in excinfo.value.read()


def test_expired_presigned_url_is_access_denied(proxy, obj, monkeypatch):
    # signed two hours ago for one hour: "Request has expired" is AccessDenied (403)
    shift_signing_clock(monkeypatch, -dt.timedelta(hours=2))
    url = _presigner(proxy).generate_presigned_url("get_object", Params={"Bucket": obj[0], "Key": obj[1]}, ExpiresIn=3600)
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(url, timeout=30)
    assert excinfo.value.code == 403
    assert b"<Code>AccessDenied</Code>" in excinfo.value.read()


def test_wrong_x_amz_content_sha256_is_mismatch(proxy, bucket):
    signed_for, sent = b"A" * 64, b"B" * 64
    path = f"/{bucket}/sha"
    headers = signed_headers(proxy.url, "PUT", path, payload_hash=hashlib.sha256(signed_for).hexdigest(),
                             headers={"Content-Length": str(len(sent))})
    resp = send(proxy.url, "PUT", path, headers, sent)
    assert (resp.status, resp.code) == (400, "XAmzContentSHA256Mismatch")
    assert resp.headers["x-amz-request-id"]
    expect_error("NoSuchKey", 404, proxy.client().get_object, Bucket=bucket, Key="sha")


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


# Content-MD5 (RFC 1864): a well-formed digest that does not match is BadDigest; one that is not a
# base64 128-bit digest is InvalidDigest (S3 error codes table).
@pytest.mark.parametrize(
    "content_md5, code",
    [
        (_md5_b64(b"something else"), "BadDigest"),  # well formed, wrong value
        ("not-base64!!", "InvalidDigest"),  # not base64 at all
        (base64.b64encode(b"short").decode(), "InvalidDigest"),  # base64, but not 16 bytes
    ],
    ids=["mismatch", "not-base64", "wrong-length"],
)
def test_content_md5_failures(proxy, bucket, content_md5, code):
    s3 = proxy.client()
    expect_error(code, 400, s3.put_object, Bucket=bucket, Key="md5", Body=b"payload", ContentMD5=content_md5)
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="md5")


def test_correct_content_md5_is_accepted(proxy, bucket):
    s3 = proxy.client()
    s3.put_object(Bucket=bucket, Key="md5ok", Body=b"payload", ContentMD5=_md5_b64(b"payload"))
    assert s3.get_object(Bucket=bucket, Key="md5ok")["Body"].read() == b"payload"


def test_wrong_checksum_crc32_is_bad_digest(proxy, bucket):
    body = b"checksummed body"
    wrong = base64.b64encode((zlib.crc32(body) ^ 1).to_bytes(4, "big")).decode()
    path = f"/{bucket}/crc"
    headers = signed_headers(proxy.url, "PUT", path, payload_hash=hashlib.sha256(body).hexdigest(),
                             headers={"Content-Length": str(len(body)), "x-amz-checksum-crc32": wrong})
    resp = send(proxy.url, "PUT", path, headers, body)
    assert (resp.status, resp.code) == (400, "BadDigest")
    expect_error("NoSuchKey", 404, proxy.client().get_object, Bucket=bucket, Key="crc")


def test_put_without_content_length_is_missing_content_length(proxy, bucket):
    # Transfer-Encoding: chunked without Content-Length: S3 answers 411 MissingContentLength
    path = f"/{bucket}/chunked"
    headers = signed_headers(proxy.url, "PUT", path)
    resp = send(proxy.url, "PUT", path, headers, [b"abc", b"def"], chunked=True)
    assert (resp.status, resp.code) == (411, "MissingContentLength")


@pytest.mark.xfail(
    strict=True,
    reason="known deviation: aiohttp's server closes a connection whose client half-closes (FIN) mid-body "
    "before the handler can answer, so the client sees the connection close instead of 400 IncompleteBody. "
    "Nothing is stored (asserted below once it passes); a client that keeps the socket open gets the answer.",
)
def test_body_shorter_than_content_length_is_incomplete_body(proxy, bucket):
    # the client promises 100 bytes, sends 40 and stops: IncompleteBody (400), and an answer, not a hang
    path = f"/{bucket}/short"
    headers = signed_headers(proxy.url, "PUT", path, headers={"Content-Length": "100"})
    resp = send_short_body(proxy.url, path, headers, b"x" * 40)
    assert (resp.status, resp.code) == (400, "IncompleteBody")
    expect_error("NoSuchKey", 404, proxy.client().get_object, Bucket=bucket, Key="short")


def _chunked_upload(proxy, bucket: str, key: str, pieces: list[bytes], *, corrupt: bool) -> object:
    when = dt.datetime.now(dt.UTC)
    amz_date, day = when.strftime("%Y%m%dT%H%M%SZ"), when.strftime("%Y%m%d")
    scope = f"{day}/{REGION}/s3/aws4_request"
    decoded = sum(map(len, pieces))
    # the encoded length depends only on the sizes, so sign the headers with a throwaway body first
    body_len = len(signed_chunks(b"k" * 32, "0" * 64, pieces, amz_date=amz_date, scope=scope))
    path = f"/{bucket}/{key}"
    headers = signed_headers(
        proxy.url,
        "PUT",
        path,
        payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        when=when,
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(decoded),
            "Content-Length": str(body_len),
        },
    )
    key_bytes = signing_key(SECRET_KEY + ("-wrong" if corrupt else ""), day)
    body = signed_chunks(key_bytes, seed_signature(headers), pieces, amz_date=amz_date, scope=scope)
    assert len(body) == body_len
    return send(proxy.url, "PUT", path, headers, body)


def test_aws_chunked_with_good_chunk_signatures_is_stored(proxy, bucket):
    pieces = [b"a" * 65536, b"b" * 1000]
    resp = _chunked_upload(proxy, bucket, "streamed", pieces, corrupt=False)
    assert resp.status == 200, resp.body
    assert proxy.client().get_object(Bucket=bucket, Key="streamed")["Body"].read() == b"".join(pieces)


def test_aws_chunked_with_a_bad_chunk_signature_is_signature_does_not_match(proxy, bucket):
    resp = _chunked_upload(proxy, bucket, "forged", [b"a" * 65536, b"b" * 1000], corrupt=True)
    assert (resp.status, resp.code) == (403, "SignatureDoesNotMatch")
    expect_error("NoSuchKey", 404, proxy.client().get_object, Bucket=bucket, Key="forged")


def test_every_error_carries_a_request_id(proxy, bucket):
    # an unsigned request for a private bucket: AccessDenied, with x-amz-request-id like every response
    resp = send(proxy.url, "GET", f"/{bucket}", {"Host": proxy.url.split("//")[1]})
    assert (resp.status, resp.code) == (403, "AccessDenied")
    assert resp.headers.get("x-amz-request-id")
    assert ET.fromstring(resp.body).findtext("RequestId") == resp.headers["x-amz-request-id"]


def test_body_cut_short_by_a_half_closing_client_stores_nothing(proxy, bucket):
    # whatever the client is told (see the xfail above), a short body never becomes an object
    path = f"/{bucket}/short-nothing-stored"
    headers = signed_headers(proxy.url, "PUT", path, headers={"Content-Length": "100"})
    send_short_body(proxy.url, path, headers, b"x" * 40)
    expect_error("NoSuchKey", 404, proxy.client().get_object, Bucket=bucket, Key="short-nothing-stored")


# --- SigV2, as S3's pre-2014 regions (us-east-1 among them) still accept it ------------------------


def test_boto3_default_presigned_url_sigv2_works_with_plain_urllib(proxy, obj):
    plain = boto3.client("s3", endpoint_url=proxy.url, aws_access_key_id=proxy.access_key,
                         aws_secret_access_key=proxy.secret_key, region_name="us-east-1")
    url = plain.generate_presigned_url("get_object", Params={"Bucket": obj[0], "Key": obj[1]}, ExpiresIn=300)
    assert "AWSAccessKeyId=" in url  # what boto3 makes unless told s3v4
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200 and resp.read() == b"hello"


def test_sigv2_presigned_url_expired_or_tampered(proxy, obj):
    plain = boto3.client("s3", endpoint_url=proxy.url, aws_access_key_id=proxy.access_key,
                         aws_secret_access_key=proxy.secret_key, region_name="us-east-1")
    url = plain.generate_presigned_url("get_object", Params={"Bucket": obj[0], "Key": obj[1]}, ExpiresIn=300)
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url.replace(f"/{obj[1]}?", f"/{obj[1]}x?"), timeout=30)
    assert exc.value.code == 403 and b"SignatureDoesNotMatch" in exc.value.read()
    expired = plain.generate_presigned_url("get_object", Params={"Bucket": obj[0], "Key": obj[1]}, ExpiresIn=-1)
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(expired, timeout=30)
    assert exc.value.code == 403 and b"Request has expired" in exc.value.read()


def test_sigv2_header_signed_client_works_and_never_echoes_an_sse_c_key(proxy, bucket):
    v2 = proxy.client(signature_version="s3")
    v2.put_object(Bucket=bucket, Key="k", Body=b"via sigv2", Metadata={"m": "1"})
    assert v2.get_object(Bucket=bucket, Key="k")["Body"].read() == b"via sigv2"
    assert [o["Key"] for o in v2.list_objects(Bucket=bucket)["Contents"]] == ["k"]
    wrong = proxy.client(signature_version="s3", secret_key="wrong-secret")
    key = b"k" * 32
    with pytest.raises(ClientError) as exc:
        wrong.put_object(Bucket=bucket, Key="c", Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    error = exc.value.response["Error"]
    assert error["Code"] == "SignatureDoesNotMatch"
    assert base64.b64encode(key).decode() not in error.get("StringToSign", "")
