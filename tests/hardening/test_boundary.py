"""The request boundary: nothing a signature does not cover changes what a request does.

Each test is one attack from the hostile review of issue 14, driven over real sockets against a
real `python -m s3proxy serve` process. Requests are signed here, byte by byte from the AWS
rules (`_sign`), so a test can leave exactly one thing unsigned the way an attacker would, or
sign a presigned URL exactly as boto3 does and then tamper with the request it allows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import socket
import time
import urllib.parse
import uuid

import boto3
import pytest
from botocore.config import Config

from tests.e2e.conftest import ACCESS_KEY, REGION, SECRET_KEY

from .harness import ProxyProcess, error_code, raw_request


def _enc(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def _sign(method: str, url: str, *, headers: dict[str, str] | None = None, signed: tuple[str, ...] | None = None,
          service: str = "s3", region: str = REGION, payload: str = "UNSIGNED-PAYLOAD", presign: bool = False,
          query_as_signed: str | None = None, body: bytes | None = None) -> tuple[str, dict[str, str]]:
    """(request target, headers) of a SigV4 request. `signed` names the headers the signature
    covers (default: all given plus host); `query_as_signed` is the canonical query to sign when
    a test sends the query in another spelling; presign puts the signature in the query."""
    parts = urllib.parse.urlsplit(url)
    now = dt.datetime.now(dt.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    hdrs["host"] = parts.netloc
    if body is not None:
        payload = hashlib.sha256(body).hexdigest()
    if not presign:
        hdrs["x-amz-date"] = amz_date
        if service == "s3":
            hdrs["x-amz-content-sha256"] = payload
    names = sorted(signed if signed is not None else hdrs)
    query = parts.query
    if presign:
        extra = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Credential", f"{ACCESS_KEY}/{scope}"),
                 ("X-Amz-Date", amz_date), ("X-Amz-Expires", "300"), ("X-Amz-SignedHeaders", ";".join(names))]
        query = "&".join(p for p in [query, "&".join(f"{n}={_enc(v)}" for n, v in extra)] if p)
    signed_query = query_as_signed if query_as_signed is not None else query
    pairs = sorted(
        (_enc(urllib.parse.unquote(n)), _enc(urllib.parse.unquote(v)))
        for n, _, v in (p.partition("=") for p in signed_query.split("&") if p)
    )
    canonical = "\n".join([
        method, parts.path or "/", "&".join(f"{n}={v}" for n, v in pairs),
        "".join(f"{h}:{hdrs.get(h, '').strip()}\n" for h in names), ";".join(names), payload,
    ])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + SECRET_KEY).encode()
    for piece in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, piece.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    if presign:
        return f"{parts.path}?{query}&X-Amz-Signature={signature}", hdrs
    hdrs["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={';'.join(names)}, "
                             f"Signature={signature}")
    return f"{parts.path}?{query}" if query else parts.path, hdrs


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    p = ProxyProcess(tmp_path_factory.mktemp("boundary"), extra=["--virtual-host-domains", "s3.test"]).start()
    yield p
    p.stop()


def _client(url: str, **config):
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        region_name=REGION, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                                          **config))


@pytest.fixture
def bucket(proxy):
    name = f"b-{uuid.uuid4().hex[:12]}"
    _client(proxy.url).create_bucket(Bucket=name)
    return name


def _presigned(proxy, method: str, params: dict, *, version: str = "s3v4") -> str:
    client = _client(proxy.url, signature_version=version)
    return client.generate_presigned_url(method, Params=params, ExpiresIn=300)


def _send(url: str, method: str, headers: dict[str, str] | None = None, body: bytes = b""):
    parts = urllib.parse.urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return raw_request(url, method, target, headers=headers or {}, body=body)


def _exists(proxy, bucket: str, key: str) -> bool:
    try:
        _client(proxy.url).head_object(Bucket=bucket, Key=key)
        return True
    except _client(proxy.url).exceptions.ClientError:
        return False


# --- presigned URLs cannot be repurposed -------------------------------------------------------------


def test_presigned_put_plus_unsigned_copy_source_is_refused_not_run_as_a_copy_by_the_signer(proxy, bucket):
    s3 = _client(proxy.url)
    s3.put_object(Bucket=bucket, Key="private/secret", Body=b"the signer's secret")
    url = _presigned(proxy, "put_object", {"Bucket": bucket, "Key": "drop/upload"})
    status, _, body = _send(url, "PUT", {"x-amz-copy-source": f"/{bucket}/private/secret"})
    assert (status, error_code(body)) == (403, "AccessDenied")
    assert b"<HeadersNotSigned>x-amz-copy-source</HeadersNotSigned>" in body
    assert not _exists(proxy, bucket, "drop/upload")
    # the URL still does what it was signed for
    status, _, _ = _send(url, "PUT", body=b"what the signer allowed")
    assert status == 200 and s3.get_object(Bucket=bucket, Key="drop/upload")["Body"].read() == b"what the signer allowed"


def test_presigned_upload_part_plus_unsigned_copy_source_is_refused_not_run_as_upload_part_copy(proxy, bucket):
    s3 = _client(proxy.url)
    s3.put_object(Bucket=bucket, Key="private/secret", Body=b"x" * 6_000_000)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    url = _presigned(proxy, "upload_part", {"Bucket": bucket, "Key": "mp", "UploadId": upload, "PartNumber": 1})
    status, _, body = _send(url, "PUT", {"x-amz-copy-source": f"/{bucket}/private/secret"})
    assert (status, error_code(body)) == (403, "AccessDenied")
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload).get("Parts", []) == []


@pytest.mark.parametrize("extra", [
    # why each row: each header changes what the signer's PUT stores, and none was signed
    {"x-amz-server-side-encryption-customer-algorithm": "AES256",
     "x-amz-server-side-encryption-customer-key": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
     "x-amz-server-side-encryption-customer-key-md5": "jB8ab8bS1PRYqSe2YHJcmw=="},
    {"x-amz-meta-injected": "by someone else"},
    {"x-amz-tagging": "owner=attacker"},
    {"x-amz-server-side-encryption": "aws:kms"},
], ids=["sse-c", "metadata", "tagging", "sse-kms"])
def test_presigned_put_refuses_every_unsigned_amz_header(proxy, bucket, extra):
    url = _presigned(proxy, "put_object", {"Bucket": bucket, "Key": "k"})
    status, _, body = _send(url, "PUT", extra, body=b"data")
    assert (status, error_code(body)) == (403, "AccessDenied")
    assert not _exists(proxy, bucket, "k")


def test_presigned_put_may_carry_an_unsigned_content_sha256_which_the_payload_line_binds(proxy, bucket):
    url = _presigned(proxy, "put_object", {"Bucket": bucket, "Key": "k"})
    status, _, _ = _send(url, "PUT", {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}, body=b"data")
    assert status == 200
    # any other value changes the canonical request the signature covers
    status, _, body = _send(url, "PUT", {"x-amz-content-sha256": hashlib.sha256(b"data").hexdigest()}, body=b"data")
    assert (status, error_code(body)) == (403, "SignatureDoesNotMatch")


def test_query_signed_kms_request_cannot_be_resent_with_another_target(proxy):
    kms = boto3.client("kms", endpoint_url=proxy.url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                       region_name=REGION)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    body = json.dumps({"KeyId": key_id}).encode()
    target, hdrs = _sign("POST", f"{proxy.url}/", service="kms", presign=True, body=body,
                         headers={"content-type": "application/x-amz-json-1.1"}, signed=("host",))
    for name in ("TrentService.DisableKey", "TrentService.ScheduleKeyDeletion"):
        status, _, answer = raw_request(proxy.url, "POST", target, headers={**hdrs, "X-Amz-Target": name}, body=body)
        assert status == 400 and json.loads(answer)["__type"] == "IncompleteSignatureException", answer
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    # signed with the target among its headers, the same request is accepted
    target, hdrs = _sign("POST", f"{proxy.url}/", service="kms", presign=True, body=body,
                         headers={"content-type": "application/x-amz-json-1.1", "x-amz-target": "TrentService.DescribeKey"})
    status, _, answer = raw_request(proxy.url, "POST", target, headers=hdrs, body=body)
    assert status == 200 and json.loads(answer)["KeyMetadata"]["KeyId"] == key_id


# --- SigV2 signs every sub-resource the proxy routes on ------------------------------------------------


def test_sigv2_presigned_put_plus_encryption_does_not_become_update_object_encryption(proxy, bucket):
    s3 = _client(proxy.url)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data", ServerSideEncryption="AES256")
    url = _presigned(proxy, "put_object", {"Bucket": bucket, "Key": "k"}, version="s3")
    assert "AWSAccessKeyId=" in url
    kms = boto3.client("kms", endpoint_url=proxy.url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                       region_name=REGION)
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    rewrap = f"<ObjectEncryption><SSE-KMS><KMSKeyArn>{arn}</KMSKeyArn></SSE-KMS></ObjectEncryption>".encode()
    status, _, body = _send(url + "&encryption", "PUT", body=rewrap)
    assert (status, error_code(body)) == (400, "InvalidRequest"), body
    assert s3.head_object(Bucket=bucket, Key="k")["ServerSideEncryption"] == "AES256"


@pytest.mark.parametrize("added", [
    # why each row: the sub-resource turns the signed GET into another operation, and SigV2 does not sign it
    "attributes",  # GetObject -> GetObjectAttributes
    "list-type=2",  # ListObjects -> ListObjectsV2
])
def test_sigv2_presigned_get_plus_an_unsigned_subresource_is_refused(proxy, bucket, added):
    _client(proxy.url).put_object(Bucket=bucket, Key="k", Body=b"data")
    method, params = ("get_object", {"Bucket": bucket, "Key": "k"}) if added == "attributes" else (
        "list_objects", {"Bucket": bucket})
    url = _presigned(proxy, method, params, version="s3")
    assert _send(url, "GET")[0] == 200
    status, _, body = _send(url + "&" + added, "GET")
    assert (status, error_code(body)) == (400, "InvalidRequest"), body


def test_sigv2_can_be_turned_off(tmp_path):
    proxy = ProxyProcess(tmp_path, extra=["--sigv2", "false"]).start()
    try:
        _client(proxy.url).create_bucket(Bucket="bkt")
        url = _presigned(proxy, "list_objects", {"Bucket": "bkt"}, version="s3")
        status, _, body = _send(url, "GET")
        assert (status, error_code(body)) == (400, "InvalidRequest")
        assert b"Please use AWS4-HMAC-SHA256" in body
        assert _send(_presigned(proxy, "list_objects", {"Bucket": "bkt"}), "GET")[0] == 200  # SigV4 still works
    finally:
        proxy.stop()


# --- SigV4: what is signed is what runs ----------------------------------------------------------------


def test_plus_in_a_query_value_runs_as_the_plus_it_was_signed_as(proxy, bucket):
    s3 = _client(proxy.url)
    s3.put_object(Bucket=bucket, Key="a+b/plus", Body=b"1")
    s3.put_object(Bucket=bucket, Key="a b/space", Body=b"2")
    url = f"{proxy.url}/{bucket}?list-type=2&prefix=a+b"
    # signed as a literal plus (%2B), sent as "+": the listing is of "a+b"
    target, hdrs = _sign("GET", url, query_as_signed="list-type=2&prefix=a%2Bb")
    status, _, body = raw_request(proxy.url, "GET", target, headers=hdrs)
    assert status == 200 and b"<Key>a+b/plus</Key>" in body and b"a b/space" not in body
    # signed as a form-encoded space (%20), sent as "+": the listing is of "a b"
    target, hdrs = _sign("GET", url, query_as_signed="list-type=2&prefix=a%20b")
    status, _, body = raw_request(proxy.url, "GET", target, headers=hdrs)
    assert status == 200 and b"<Key>a b/space</Key>" in body and b"a+b/plus" not in body


def test_host_must_be_signed_so_a_changed_host_cannot_reroute_to_another_bucket(proxy):
    s3 = _client(proxy.url)
    mine, theirs = f"m-{uuid.uuid4().hex[:10]}", f"t-{uuid.uuid4().hex[:10]}"
    for name in (mine, theirs):
        s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=theirs, Key="k", Body=b"not yours to read")
    port = urllib.parse.urlsplit(proxy.url).port
    target, hdrs = _sign("GET", f"http://{mine}.s3.test:{port}/k", signed=("x-amz-content-sha256", "x-amz-date"))
    hdrs["host"] = f"{theirs}.s3.test:{port}"
    status, _, body = raw_request(proxy.url, "GET", target, headers=hdrs)
    assert (status, error_code(body)) == (403, "AccessDenied") and b"<HeadersNotSigned>host</HeadersNotSigned>" in body
    # with host signed, virtual-hosted style works
    target, hdrs = _sign("GET", f"http://{theirs}.s3.test:{port}/k")
    status, _, body = raw_request(proxy.url, "GET", target, headers=hdrs)
    assert status == 200 and body == b"not yours to read"


def test_presigned_url_without_host_signed_is_refused(proxy, bucket):
    _client(proxy.url).put_object(Bucket=bucket, Key="k", Body=b"x")
    target, hdrs = _sign("GET", f"{proxy.url}/{bucket}/k", presign=True, signed=())
    status, _, body = raw_request(proxy.url, "GET", target, headers=hdrs)
    assert (status, error_code(body)) == (403, "AccessDenied")


@pytest.mark.parametrize("service,region,field", [
    # why each row: a signature scoped to another service or region is no signature for this endpoint
    ("kms", REGION, b"incorrect service"),
    ("s3", "eu-west-3", b"<Region>us-east-1</Region>"),
])
def test_credential_scope_must_name_this_endpoint_and_s3(proxy, bucket, service, region, field):
    _client(proxy.url).put_object(Bucket=bucket, Key="k", Body=b"x")
    target, hdrs = _sign("GET", f"{proxy.url}/{bucket}/k", service=service, region=region)
    hdrs["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    status, _, body = raw_request(proxy.url, "GET", target, headers=hdrs)
    assert (status, error_code(body)) == (400, "AuthorizationHeaderMalformed") and field in body


def test_s3_scoped_signature_is_refused_by_the_kms_api(proxy):
    body = b"{}"
    target, hdrs = _sign("POST", f"{proxy.url}/", service="s3", body=body,
                         headers={"x-amz-target": "TrentService.ListKeys", "content-type": "application/x-amz-json-1.1"})
    status, _, answer = raw_request(proxy.url, "POST", target, headers=hdrs, body=body)
    assert status == 400 and json.loads(answer)["__type"] == "InvalidSignatureException"


def test_auth_parameter_given_twice_is_refused(proxy, bucket):
    url = _presigned(proxy, "list_objects", {"Bucket": bucket})
    extra = "&X-Amz-Signature=" + "0" * 64
    status, _, body = _send(url + extra, "GET")
    assert (status, error_code(body)) == (400, "AuthorizationQueryParametersError")


# --- the KMS API reads its body to Content-Length -------------------------------------------------------


def test_kms_body_split_across_tcp_segments_is_read_whole(proxy):
    body = json.dumps({"Description": "split " * 200}).encode()
    target, hdrs = _sign("POST", f"{proxy.url}/", service="kms", body=body,
                         headers={"x-amz-target": "TrentService.CreateKey", "content-type": "application/x-amz-json-1.1"})
    parts = urllib.parse.urlsplit(proxy.url)
    head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head.encode() + body[:10])
        time.sleep(0.3)  # the handler runs with only the first segment in hand
        sock.sendall(body[10:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 200 " in status_line, answer[:400]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["KeyMetadata"]["Description"].startswith("split ")
